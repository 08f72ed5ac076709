package consume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// cursor reads a stream in order through an ephemeral pull consumer that
// it creates again where it stopped when the consumer is lost or a message
// goes missing in transit: what the client's ordered consumer does, except
// that the ordered consumer creates its server-side consumer again on every
// Fetch, a request and a consumer set up on the broker per batch.
//
// The consumer has no subject filter: the stream holds only rows.> (a
// message on any other subject is refused by the writer, not hidden from
// it), and without a filter the broker hands out the next message without
// matching its subject against a wildcard, one cost less per row.
type cursor struct {
	stream  jetstream.Stream
	cons    jetstream.Consumer // nil: create one at next
	next    uint64             // the stream sequence to read next
	consSeq uint64             // the consumer sequence of the last message read
}

// consumerGone is how long the broker keeps a consumer nobody fetches from
// (a writer that died without deleting its own).
const consumerGone = 5 * time.Minute

// fetch asks for at most batch messages and maxBytes, waiting at most
// until ctx's deadline, and calls each for every message in order as it
// arrives. A timeout with nothing to read is not an error.
func (k *cursor) fetch(ctx context.Context, batch, maxBytes int, each func(jetstream.Msg, *jetstream.MsgMetadata)) error {
	if k.cons == nil {
		cons, err := k.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
			DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:       k.next,
			AckPolicy:         jetstream.AckNonePolicy,
			MemoryStorage:     true,
			Replicas:          1,
			InactiveThreshold: consumerGone,
		})
		if err != nil {
			return fmt.Errorf("create a consumer from sequence %d: %w", k.next, err)
		}
		k.cons, k.consSeq = cons, 0
	}
	b, err := k.cons.Fetch(batch, jetstream.FetchMaxBytes(maxBytes), jetstream.FetchContext(ctx))
	if err != nil {
		k.drop()
		return fmt.Errorf("fetch: %w", err)
	}
	for m := range b.Messages() {
		meta, err := m.Metadata()
		if err != nil {
			k.drop()
			return fmt.Errorf("a message without JetStream metadata on %s: %w", m.Subject(), err)
		}
		if meta.Sequence.Consumer != k.consSeq+1 {
			k.drop()
			return fmt.Errorf("consumer sequence %d after %d: messages lost in transit, reading again from stream sequence %d",
				meta.Sequence.Consumer, k.consSeq, k.next)
		}
		k.consSeq, k.next = meta.Sequence.Consumer, meta.Sequence.Stream+1
		each(m, meta)
	}
	err = b.Error()
	if err == nil || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	k.drop()
	return fmt.Errorf("fetch: %w", err)
}

// drop forgets the consumer, so the next fetch creates one at next, and
// deletes it on the broker without waiting (it goes by itself after
// consumerGone if the broker cannot be reached).
func (k *cursor) drop() {
	if k.cons == nil {
		return
	}
	name := k.cons.CachedInfo().Name
	k.cons = nil
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = k.stream.DeleteConsumer(ctx, name)
	}()
}
