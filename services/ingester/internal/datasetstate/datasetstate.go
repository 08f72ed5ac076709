// Package datasetstate reads what the writer says about a dataset: the
// schema.DatasetState it keeps in the key-value bucket schema.StateBucket,
// key = dataset. The ingester learns from it whether its source is
// unchanged, whether an interrupted sync can be resumed, and (--wait) how
// its own sync ended. It only ever reads.
package datasetstate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Get returns dataset's state; ok is false when the writer has published
// none yet. A value that does not decode is reported as an error.
func Get(ctx context.Context, kv jetstream.KeyValue, dataset string) (st schema.DatasetState, ok bool, err error) {
	e, err := kv.Get(ctx, dataset)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("read the state of dataset %s: %w", dataset, err)
	}
	st, err = schema.DecodeState(e.Value())
	if err != nil {
		return st, false, fmt.Errorf("dataset %s: %w", dataset, err)
	}
	return st, true, nil
}

// pollEvery is how often Wait also reads the key's history, in case the
// watch missed an update (a watch that broke with the connection).
const pollEvery = 2 * time.Second

// Waiter waits for the outcome of a sync. Start it (Watch) before the sync's
// begin is published, so no update can slip between.
type Waiter struct {
	kv      jetstream.KeyValue
	dataset string
	w       jetstream.KeyWatcher
	log     *slog.Logger
}

// Watch starts watching dataset's state for new values.
func Watch(ctx context.Context, kv jetstream.KeyValue, dataset string, log *slog.Logger) (*Waiter, error) {
	w, err := kv.Watch(ctx, dataset, jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("watch the state of dataset %s: %w", dataset, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Waiter{kv: kv, dataset: dataset, w: w, log: log}, nil
}

// ErrTimeout is returned by Wait when no outcome came in time.
var ErrTimeout = errors.New("no outcome from the writer")

// Wait returns the outcome the writer published for sync. timeout 0 waits
// until ctx ends.
func (wt *Waiter) Wait(ctx context.Context, sync string, timeout time.Duration) (schema.SyncOutcome, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	updates := wt.w.Updates()
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	for {
		select {
		case e, ok := <-updates:
			if !ok {
				updates = nil // the watch ended; polling goes on
				continue
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			if out, ok := wt.match(e.Value(), sync); ok {
				return out, nil
			}
		case <-poll.C:
			if out, ok := wt.history(ctx, sync); ok {
				return out, nil
			}
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return schema.SyncOutcome{}, fmt.Errorf("%w for sync %s of dataset %s within %s: is a writer running on this stream?", ErrTimeout, sync, wt.dataset, timeout)
			}
			return schema.SyncOutcome{}, ctx.Err()
		}
	}
}

func (wt *Waiter) match(value []byte, sync string) (schema.SyncOutcome, bool) {
	st, err := schema.DecodeState(value)
	if err != nil {
		wt.log.Warn("undecodable dataset state", "dataset", wt.dataset, "err", err)
		return schema.SyncOutcome{}, false
	}
	if st.Last != nil && st.Last.Sync == sync {
		return *st.Last, true
	}
	return schema.SyncOutcome{}, false
}

func (wt *Waiter) history(ctx context.Context, sync string) (schema.SyncOutcome, bool) {
	hist, err := wt.kv.History(ctx, wt.dataset)
	if err != nil {
		return schema.SyncOutcome{}, false
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].Operation() != jetstream.KeyValuePut {
			continue
		}
		if out, ok := wt.match(hist[i].Value(), sync); ok {
			return out, true
		}
	}
	return schema.SyncOutcome{}, false
}

// Stop ends the watch.
func (wt *Waiter) Stop() {
	if err := wt.w.Stop(); err != nil {
		wt.log.Debug("stop watching dataset state", "dataset", wt.dataset, "err", err)
	}
}
