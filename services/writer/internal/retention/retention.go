// Package retention decides what the rows stream keeps of a dataset and
// purges the rest, right after the writer records a new current
// generation.
//
// # What the stream keeps
//
// The stream is kept for what only it can give: rebuilding the files
// (writer --rebuild, a new replica with an empty DATA_DIR) and finishing a
// sync in flight. Both need every message of the dataset's subject from
// the begin of the current generation on: its rows, the appends made to
// it since, and any sync building after it. Nothing older: an older
// generation kept on disk (KEEP_GENERATIONS, pinned pages) is served from
// its own files, which a rebuild does not bring back. So after each
// commit the stream holds one generation of each dataset, two while a
// sync runs, and any number of re-syncs of a dataset fit a stream limit
// of twice its size (docs/messages.md#retention).
package retention

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// purgeTimeout bounds one purge request.
const purgeTimeout = 10 * time.Second

// KeepFrom is the lowest stream sequence of s's dataset the stream must
// keep: the begin of the current generation, or of the building one when
// it is older; 0 when nothing may be purged yet (no current generation).
func KeepFrom(s schema.DatasetState) uint64 {
	if s.Current == nil || s.Current.Generation == 0 {
		return 0
	}
	keep := s.Current.Generation
	if b := s.Building; b != nil && b.Generation != 0 {
		keep = min(keep, b.Generation)
	}
	return keep
}

// Purger purges each dataset's subject below KeepFrom of its state. It is
// safe for concurrent use.
type Purger struct {
	stream func() jetstream.Stream
	log    *slog.Logger

	mu   sync.Mutex
	done map[string]uint64 // dataset -> the KeepFrom last purged to
}

// New returns a Purger of the stream that stream returns when called (the
// writer binds it again after the stream is replaced). log may be nil.
func New(stream func() jetstream.Stream, log *slog.Logger) *Purger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Purger{stream: stream, log: log, done: map[string]uint64{}}
}

// Apply purges s's dataset below KeepFrom(s), unless it already did for
// that point: the writer calls it with every state it publishes, and only
// a new current generation moves the point. A failure is returned and
// tried again with the next state.
func (p *Purger) Apply(ctx context.Context, s schema.DatasetState) error {
	keep := KeepFrom(s)
	if keep <= 1 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done[s.Dataset] >= keep {
		return nil
	}
	st := p.stream()
	if st == nil {
		return fmt.Errorf("purge %s below %d: not bound to the stream", s.Dataset, keep)
	}
	ctx, cancel := context.WithTimeout(ctx, purgeTimeout)
	defer cancel()
	err := st.Purge(ctx, jetstream.WithPurgeSubject(schema.Subject(s.Dataset)), jetstream.WithPurgeSequence(keep))
	if err != nil {
		return fmt.Errorf("purge %s below %d: %w", s.Dataset, keep, err)
	}
	p.done[s.Dataset] = keep
	p.log.Info("stream purged of what the current generation does not need", "dataset", s.Dataset, "before_seq", keep)
	return nil
}
