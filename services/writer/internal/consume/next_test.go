package consume

import (
	"context"
	"testing"
	"time"
)

// nextOver is a Consumer whose messages come from the test, not a broker:
// Next is tested on its own. It lingers a whole second, so that a test
// feeding messages a little apart never depends on the machine's speed.
func nextOver(batchMax, budgetBytes int) *Consumer {
	return &Consumer{
		cfg:       Config{BatchMax: batchMax, BudgetBytes: budgetBytes},
		ch:        make(chan Msg, batchMax),
		done:      make(chan struct{}),
		lingerFor: time.Second,
	}
}

// TestNextWaitsForABacklogToFillTheBatch feeds messages one at a time, as
// a fetch crossing the socket does: while each says more is pending, Next
// waits for the next one instead of applying a slice of the backlog.
func TestNextWaitsForABacklogToFillTheBatch(t *testing.T) {
	c := nextOver(50, 1<<20)
	const total = 120
	go func() {
		for seq := uint64(1); seq <= total; seq++ {
			c.ch <- Msg{Seq: seq, Data: make([]byte, 100), Pending: total - seq}
			time.Sleep(50 * time.Microsecond)
		}
	}()
	ctx := context.Background()
	var sizes []int
	var next uint64 = 1
	for next <= total {
		batch, err := c.Next(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range batch {
			if m.Seq != next {
				t.Fatalf("message %d after %d", m.Seq, next-1)
			}
			next++
		}
		sizes = append(sizes, len(batch))
	}
	if want := []int{50, 50, 20}; !equal(sizes, want) {
		t.Errorf("batches of %v, want %v: full while more is pending, the rest once the stream is read", sizes, want)
	}
}

// TestNextDoesNotWaitAtTheHead: a message with nothing pending after it is
// the head of the stream; the batch goes at once.
func TestNextDoesNotWaitAtTheHead(t *testing.T) {
	c := nextOver(50, 1<<20)
	c.ch <- Msg{Seq: 1, Pending: 1}
	c.ch <- Msg{Seq: 2, Pending: 0}
	// A message that comes later, while Next would still be lingering.
	time.AfterFunc(500*time.Millisecond, func() { c.ch <- Msg{Seq: 3, Pending: 0} })
	batch, err := c.Next(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(batch) != 2 {
		t.Errorf("a batch of %d at the head, want the 2 already there", len(batch))
	}
}

// TestNextStopsAtHalfTheBudget: the reader blocks on a full budget, so a
// batch holding half of it does not wait for more.
func TestNextStopsAtHalfTheBudget(t *testing.T) {
	c := nextOver(50, 1000)
	for seq := uint64(1); seq <= 3; seq++ {
		c.ch <- Msg{Seq: seq, Data: make([]byte, 200), Size: 200, Pending: 100}
	}
	// A message that comes later, while Next would still be lingering.
	time.AfterFunc(500*time.Millisecond, func() { c.ch <- Msg{Seq: 4, Data: make([]byte, 200), Size: 200, Pending: 99} })
	batch, err := c.Next(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(batch) != 3 {
		t.Errorf("a batch of %d messages: with 600 bytes of a 1000-byte budget, want the 3 already there", len(batch))
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
