package dataset

import (
	"context"
	"fmt"
	"slices"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/generation"
)

func (d *Dataset) applyBegin(ctx context.Context, m Msg) error {
	b, err := schema.DecodeBegin(m.Body)
	if err != nil {
		return err
	}
	if b.Dataset != d.cfg.Name || b.Sync != m.Env.Sync {
		return schema.Refuse(schema.ReasonBadBegin, "begin for dataset %q sync %q on the subject of %q with sync header %q", b.Dataset, b.Sync, d.cfg.Name, m.Env.Sync)
	}
	mode := b.Mode
	shape, err := schema.NewRecordDecoder(b.Fields)
	if err != nil {
		return schema.Refuse(schema.ReasonBadBegin, "begin fields: %v", err)
	}

	// A late copy of the begin of a sync that is over (a publish retried
	// past the broker's de-duplication window): nothing to do.
	if b.Sync == d.st.Ignore {
		return nil
	}
	// The same sync again: the ingester resumed it. Keep going.
	if mode == schema.ModeReplace && d.st.Building != nil && d.st.Building.Sync == b.Sync ||
		mode == schema.ModeAppend && d.st.Append != nil && d.st.Append.Sync == b.Sync {
		if err := d.Flush(ctx); err != nil {
			return err
		}
		next := d.st
		next.Seq = m.Seq
		if err := d.record(ctx, next, nil); err != nil {
			return err
		}
		d.log.Info("sync resumed", "sync", b.Sync, "seq", m.Seq)
		return nil
	}

	next := d.st
	next.Seq = m.Seq
	last, err := d.closeOpen(ctx, &next, schema.OutcomeDiscarded, fmt.Sprintf("sync %s began (stream sequence %d) before this one ended", b.Sync, m.Seq))
	if err != nil {
		return err
	}
	if err := d.cfg.FS.MkdirAll(d.cfg.Dir, 0o755); err != nil {
		return err
	}
	open := &openSync{Sync: b.Sync, Begin: m.Seq, Source: b.Source, Index: b.Index}
	h := schema.Header{
		Dataset: d.cfg.Name, Generation: m.Seq, State: schema.StateBuilding, Mode: mode, Sync: b.Sync,
		Fields: b.Fields, Source: b.Source, CreatedAt: m.Time, UpdatedAt: m.Time, LastSeq: m.Seq,
	}
	switch {
	case mode == schema.ModeReplace:
		g, err := generation.Create(d.files, h)
		if err != nil {
			return err
		}
		open.Header = g.Header()
		next.Building = open
		if err := d.record(ctx, next, last); err != nil {
			g.Close()
			return err
		}
		d.building, d.bShape = g, shape
		d.rowApplied = max(d.rowApplied, m.Seq)
		d.log.Info("sync began", "sync", b.Sync, "mode", mode, "generation", m.Seq, "source", b.Source.Name)
		return nil

	case d.current == nil:
		// The first append makes a generation: complete and current at once.
		h.State = schema.StateComplete
		g, err := generation.Create(d.files, h)
		if err != nil {
			return err
		}
		if err := d.writeCurrent(m.Seq); err != nil {
			g.Close()
			return err
		}
		ch := g.Header()
		next.Current, open.Header = &ch, ch
		next.Append = open
		if err := d.record(ctx, next, last); err != nil {
			g.Close()
			return err
		}
		d.current, d.curShape = g, shape
		d.cfg.Metrics.Generations.WithLabelValues(d.cfg.Name).Inc()
		d.log.Info("sync began", "sync", b.Sync, "mode", mode, "generation", m.Seq, "source", b.Source.Name)
		return nil

	default:
		ch := d.current.Header()
		if !slices.Equal(ch.Fields, b.Fields) {
			next.Ignore = b.Sync
			out := &schema.SyncOutcome{Sync: b.Sync, Outcome: schema.OutcomeFailed, Generation: ch.Generation,
				Reason: fmt.Sprintf("an append must have the fields of generation %d (%d fields), this sync has %d different ones", ch.Generation, len(ch.Fields), len(b.Fields))}
			if err := d.record(ctx, next, out); err != nil {
				return err
			}
			d.log.Error("append refused", "sync", b.Sync, "reason", out.Reason, "seq", m.Seq)
			return nil
		}
		cur := ch
		next.Current, open.Header = &cur, cur
		next.Append = open
		if err := d.record(ctx, next, last); err != nil {
			return err
		}
		d.log.Info("sync began", "sync", b.Sync, "mode", mode, "generation", ch.Generation, "source", b.Source.Name)
		return nil
	}
}

// closeOpen ends the sync that is open, if any, with outcome: a replace
// sync's generation is removed, an append sync is rolled back. It updates
// next and returns the outcome to publish (nil if nothing was open).
func (d *Dataset) closeOpen(ctx context.Context, next *persisted, outcome, reason string) (*schema.SyncOutcome, error) {
	if err := d.Flush(ctx); err != nil {
		return nil, err
	}
	var out *schema.SyncOutcome
	if b := d.st.Building; b != nil {
		out = &schema.SyncOutcome{Sync: b.Sync, Outcome: outcome, Generation: b.Begin, Reason: reason}
		if d.building != nil { // closed by record, once next is the state
			out.Rows, out.Rejected = d.building.Records(), d.building.Rejects()
		}
		d.doom(b.Begin) // once the state that no longer names it is saved
		next.Building, next.Ignore = nil, b.Sync
	}
	if a := d.st.Append; a != nil {
		out = &schema.SyncOutcome{Sync: a.Sync, Outcome: outcome, Generation: a.Header.Generation, Reason: reason}
		if d.current != nil {
			out.Rows = d.current.Records() - a.Header.Count
			out.Rejected = d.current.Rejects() - a.Header.Rejected
			back := a.Header
			back.LastSeq = max(next.Seq, d.current.Header().LastSeq)
			if err := d.current.RollBack(back); err != nil {
				return nil, err
			}
			h := d.current.Header()
			next.Current = &h
		}
		next.Append, next.Ignore = nil, a.Sync
	}
	if out != nil {
		d.log.Warn("sync closed without becoming current", "sync", out.Sync, "outcome", outcome, "rows", out.Rows, "reason", reason)
	}
	return out, nil
}
