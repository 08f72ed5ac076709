package consume

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// TestCursorReadsOnWhereItStoppedWhenItsConsumerIsLost deletes the
// cursor's consumer on the broker between fetches: the next fetch creates
// one where the last stopped, with nothing missed or repeated.
func TestCursorReadsOnWhereItStoppedWhenItsConsumerIsLost(t *testing.T) {
	ctx, js, stream := rowsStream(t, 30*time.Second)
	for i := 0; i < 30; i++ {
		if _, err := js.Publish(ctx, schema.Subject("orders"), []byte("row")); err != nil {
			t.Fatal(err)
		}
	}
	k := &cursor{stream: stream, next: 1}
	var got []uint64
	collect := func(_ jetstream.Msg, meta *jetstream.MsgMetadata) { got = append(got, meta.Sequence.Stream) }
	fetch := func() error {
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return k.fetch(fctx, 10, 1<<20, collect)
	}
	if err := fetch(); err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteConsumer(ctx, k.cons.CachedInfo().Name); err != nil {
		t.Fatal(err)
	}
	for i := 0; len(got) < 30 && i < 10; i++ {
		_ = fetch() // the fetch on the deleted consumer fails; the next goes on
	}
	if len(got) != 30 {
		t.Fatalf("read %d messages, want 30: %v", len(got), got)
	}
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("message %d has sequence %d: %v", i, seq, got)
		}
	}
}
