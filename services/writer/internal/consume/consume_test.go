package consume

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rowpipe/rowpipe/pkg/schema"
)

// TestEveryMessageInOrderWhileTheStreamGrows publishes more than the head
// allowance and a block while the consumer reads, so it follows the head,
// trails it, then catches up once the publisher stops.
func TestEveryMessageInOrderWhileTheStreamGrows(t *testing.T) {
	ctx, js, _ := rowsStream(t, time.Minute)
	const total = 40_000 // 40 MiB: past the allowance and a block behind
	body := make([]byte, 1024)
	published := make(chan error, 1)
	go func() {
		for i := 1; i <= total; i++ {
			if _, err := js.PublishAsync(schema.Subject("products"), body); err != nil {
				published <- err
				return
			}
			if i%256 == 0 || i == total {
				select {
				case <-js.PublishAsyncComplete():
				case <-ctx.Done():
					published <- ctx.Err()
					return
				}
			}
		}
		published <- nil
	}()

	c, err := Start(ctx, js, Config{Stream: schema.DefaultStream, BatchMax: 500, PullMaxBytes: 2 << 20, BudgetBytes: 2 << 20},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var batch []Msg
	next := uint64(1)
	for next <= total {
		select {
		case err := <-published:
			if err != nil {
				c.Stop()
				t.Fatalf("publishing: %v", err)
			}
			published <- nil
		default:
		}
		batch, err = c.Next(ctx, batch[:0])
		if err != nil {
			c.Stop()
			t.Fatalf("after sequence %d: %v", next-1, err)
		}
		for _, m := range batch {
			if m.Seq != next {
				t.Fatalf("got sequence %d, want %d", m.Seq, next)
			}
			if len(m.Data) != len(body) {
				t.Fatalf("sequence %d: %d bytes, want %d", m.Seq, len(m.Data), len(body))
			}
			next++
		}
		c.Release(batch)
	}
	c.Stop()
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if c.trail.behind != 0 {
		t.Errorf("caught up, yet %d messages behind", c.trail.behind)
	}
}

// TestStartFromASequenceAndStop starts past the first messages and stops
// while a fetch waits at the head.
func TestStartFromASequenceAndStop(t *testing.T) {
	ctx, js, _ := rowsStream(t, 30*time.Second)
	for i := 0; i < 10; i++ {
		if _, err := js.Publish(ctx, schema.Subject("orders"), []byte{byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Start(ctx, js, Config{Stream: schema.DefaultStream, StartSeq: 8, BatchMax: 500, PullMaxBytes: 2 << 20, BudgetBytes: 2 << 20},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for len(got) < 3 {
		batch, err := c.Next(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range batch {
			got = append(got, m.Seq)
		}
		c.Release(batch)
	}
	if got[0] != 8 || got[1] != 9 || got[2] != 10 || len(got) != 3 {
		t.Fatalf("got sequences %v, want [8 9 10]", got)
	}
	stopped := make(chan struct{})
	go func() { c.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(idleFetch):
		t.Fatal("Stop did not return while a fetch waited at the head")
	}
	if _, err := c.Next(ctx, nil); err == nil {
		t.Error("Next after Stop returned no error")
	}
}

// TestTheBudgetCountsHeaders publishes messages of large headers and empty
// bodies: the bytes handed out and not released stay within the budget,
// counted as subject, headers and body (as one message alone may exceed it).
func TestTheBudgetCountsHeaders(t *testing.T) {
	ctx, js, _ := rowsStream(t, 30*time.Second)
	const n, headerBytes = 40, 60 << 10 // JetStream takes at most 64 KiB of headers
	for i := 0; i < n; i++ {
		m := nats.NewMsg(schema.Subject("products"))
		m.Header.Set("X-Junk", strings.Repeat("h", headerBytes))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	const budget = 256 << 10
	c, err := Start(ctx, js, Config{Stream: schema.DefaultStream, BatchMax: 500, PullMaxBytes: 2 << 20, BudgetBytes: budget},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	got := 0
	for got < n {
		batch, err := c.Next(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		held := 0
		for _, m := range batch {
			if m.Size < headerBytes {
				t.Fatalf("sequence %d: Size %d, its headers alone are %d bytes", m.Seq, m.Size, headerBytes)
			}
			held += m.Size
		}
		// Let the reader fill the budget, then count what is out: the
		// batch and the messages waiting in the channel.
		time.Sleep(20 * time.Millisecond)
		out := held + len(c.ch)*batch[0].Size
		if out > budget+batch[0].Size {
			t.Fatalf("%d bytes handed out and not released (a batch of %d messages and %d waiting), budget %d", out, len(batch), len(c.ch), budget)
		}
		got += len(batch)
		c.Release(batch)
	}
}
