package dataset

import (
	"context"
	"fmt"
	"slices"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

func (d *Dataset) applyEnd(ctx context.Context, m Msg) error {
	e, err := schema.DecodeEnd(m.Body)
	if err != nil {
		return err
	}
	switch {
	case d.st.Building != nil && d.st.Building.Sync == m.Env.Sync:
		return d.endReplace(ctx, m, e)
	case d.st.Append != nil && d.st.Append.Sync == m.Env.Sync:
		return d.endAppend(ctx, m, e)
	case m.Env.Sync == d.st.Ignore:
		return nil
	}
	// An end with no begin the writer accepted (refused as hostile, or
	// never sent): say so to whoever waits for this sync.
	next := d.st
	next.Seq, next.Ignore = m.Seq, m.Env.Sync
	out := &schema.SyncOutcome{Sync: m.Env.Sync, Outcome: schema.OutcomeFailed, Rows: e.Rows, Rejected: e.Rejected,
		Reason: "end of a sync whose begin the writer did not accept"}
	if err := d.record(ctx, next, out); err != nil {
		return err
	}
	return schema.Refuse(schema.ReasonOutsideSync, "end of sync %s, which is not open on dataset %s", m.Env.Sync, d.cfg.Name)
}

func mergeSource(base, end schema.Source) schema.Source {
	if end.Name != "" {
		base.Name = end.Name
	}
	if end.Size != 0 {
		base.Size = end.Size
	}
	if end.SHA256 != "" {
		base.SHA256 = end.SHA256
	}
	return base
}

// fitSource returns src, or src with the name h already has if src's name
// would not fit in the header's fixed size (an append from a source with
// a much longer name than the one that sized the header).
func (d *Dataset) fitSource(h schema.Header, src schema.Source) schema.Source {
	named := src
	named.Name = h.Source.Name
	for _, s := range []schema.Source{src, named} {
		try := h
		try.Source = s
		if _, err := schema.EncodeHeader(try); err == nil {
			if s != src {
				d.log.Warn("the source name does not fit in the header; keeping the previous one", "source", src.Name)
			}
			return s
		}
	}
	return h.Source
}

func (d *Dataset) endReplace(ctx context.Context, m Msg, e schema.End) error {
	g := d.building
	if g == nil {
		return d.fail(ctx, m, "the generation's files were lost while it was being built; run the sync again")
	}
	if err := d.Flush(ctx); err != nil {
		return err
	}
	if g.Records() != e.Rows {
		return d.fail(ctx, m, fmt.Sprintf("end says %d rows, %d were written", e.Rows, g.Records()))
	}
	if e.Rejected != g.Rejects() {
		d.log.Warn("end and rejects file disagree; the header counts the rejects file", "end_rejected", e.Rejected, "rejects", g.Rejects())
	}
	h := g.Header()
	h.State = schema.StateComplete
	h.Source = d.fitSource(h, mergeSource(d.st.Building.Source, e.Source))
	h.LastSeq, h.UpdatedAt = m.Seq, m.Time
	if err := g.SetHeader(h); err != nil {
		return err
	}
	if err := d.buildIndexes(ctx, g, d.st.Building.Index); err != nil {
		return err
	}
	if err := d.writeCurrent(h.Generation); err != nil {
		return err
	}
	older := slices.Clone(d.kept)
	if d.current != nil && d.current.Generation() != h.Generation {
		older = append(older, d.current.Generation())
	}
	kept, drop := d.splitOld(older)
	d.doom(drop...) // once the state that no longer names them is saved

	next := d.st
	next.Seq, next.Building, next.Append, next.Ignore = m.Seq, nil, nil, h.Sync
	hh := g.Header()
	next.Current = &hh
	out := &schema.SyncOutcome{Sync: h.Sync, Outcome: schema.OutcomeCommitted, Generation: h.Generation, Rows: h.Count, Rejected: h.Rejected}
	if err := d.record(ctx, next, out); err != nil {
		return err
	}
	if d.current != nil {
		d.current.Close()
	}
	d.current, d.curShape, d.building, d.bShape, d.kept = g, d.bShape, nil, nil, kept
	d.rowApplied = max(d.rowApplied, m.Seq)
	d.purge(ctx)
	d.cfg.Metrics.Generations.WithLabelValues(d.cfg.Name).Inc()
	d.log.Info("generation is current", "sync", h.Sync, "generation", h.Generation, "rows", h.Count, "rejected", h.Rejected, "seq", m.Seq)
	return nil
}

func (d *Dataset) endAppend(ctx context.Context, m Msg, e schema.End) error {
	g, a := d.current, d.st.Append
	if err := d.Flush(ctx); err != nil {
		return err
	}
	rows := g.Records() - a.Header.Count
	if rows != e.Rows {
		return d.fail(ctx, m, fmt.Sprintf("end says %d rows, %d were appended", e.Rows, rows))
	}
	h := g.Header()
	h.Sync = a.Sync
	h.Source = d.fitSource(h, mergeSource(a.Source, e.Source))
	h.LastSeq, h.UpdatedAt = m.Seq, m.Time
	// The indexes first: a reader that sees the final header finds them
	// rebuilt.
	if err := d.rebuildIndexes(ctx, g, a.Index); err != nil {
		return err
	}
	if err := g.SetHeader(h); err != nil {
		return err
	}
	next := d.st
	next.Seq, next.Append, next.Ignore = m.Seq, nil, a.Sync
	hh := g.Header()
	next.Current = &hh
	out := &schema.SyncOutcome{Sync: a.Sync, Outcome: schema.OutcomeCommitted, Generation: h.Generation, Rows: rows, Rejected: h.Rejected - a.Header.Rejected}
	if err := d.record(ctx, next, out); err != nil {
		return err
	}
	d.rowApplied = max(d.rowApplied, m.Seq)
	d.log.Info("append committed", "sync", a.Sync, "generation", h.Generation, "rows", rows, "count", h.Count, "seq", m.Seq)
	return nil
}
