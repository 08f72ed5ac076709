package dataset

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/generation"
)

// Apply applies one message of the dataset's subject, in stream order. A
// *schema.Refusal means the message was refused and nothing changed; any
// other error means nothing changed either and the message must be applied
// again (after a pause: the disk may be full).
func (d *Dataset) Apply(ctx context.Context, m Msg) error {
	switch m.Env.Event {
	case schema.EventRow, schema.EventReject:
		if m.Seq <= d.rowApplied {
			return nil // applied before a restart
		}
		return d.applyRow(ctx, m)
	}
	if m.Seq <= d.st.Seq {
		return nil
	}
	var err error
	switch m.Env.Event {
	case schema.EventBegin:
		err = d.applyBegin(ctx, m)
	case schema.EventEnd:
		err = d.applyEnd(ctx, m)
	case schema.EventAbort:
		err = d.applyAbort(ctx, m)
	default:
		err = schema.Refuse(schema.ReasonBadBody, "unknown event %q", m.Env.Event)
	}
	return err
}

// target is the generation the rows of sync go to, and how many records
// and rejects it had before the sync.
func (d *Dataset) target(sync string) (g *generation.Gen, base, baseRejects uint64, shape *schema.RecordDecoder, open bool) {
	if b := d.st.Building; b != nil && b.Sync == sync {
		return d.building, 0, 0, d.bShape, true
	}
	if a := d.st.Append; a != nil && a.Sync == sync {
		return d.current, a.Header.Count, a.Header.Rejected, d.curShape, true
	}
	return nil, 0, 0, nil, false
}

func (d *Dataset) applyRow(ctx context.Context, m Msg) error {
	g, base, baseRejects, shape, open := d.target(m.Env.Sync)
	if !open {
		if m.Env.Sync == d.st.Ignore {
			return nil
		}
		return schema.Refuse(schema.ReasonOutsideSync, "%s of sync %s, which is not open on dataset %s", m.Env.Event, m.Env.Sync, d.cfg.Name)
	}
	if g == nil {
		return d.fail(ctx, m, "the generation's files were lost while it was being built (a crash while discarding it?); run the sync again")
	}
	if m.Env.Event == schema.EventReject {
		return d.applyReject(g, baseRejects, m)
	}
	if len(m.Body) > schema.MaxRecordBytes {
		return schema.Refuse(schema.ReasonOversize, "row body of %d bytes, at most %d allowed", len(m.Body), schema.MaxRecordBytes)
	}
	n := g.Records() - base
	switch {
	case m.Env.Row <= n:
		// Already written (an ingester that resumed, a re-run past the
		// de-duplication window). The header still moves to this message,
		// as it would on any replay of the same stream.
		d.nDups++
		g.Touch(m.Seq, m.Time)
		d.rowApplied = m.Seq
		return nil
	case m.Env.Row > n+1:
		return d.fail(ctx, m, fmt.Sprintf("row %d arrived after row %d: rows %d to %d are missing", m.Env.Row, n, n+1, m.Env.Row-1))
	}
	if err := shape.Check(m.Body); err != nil {
		return &schema.Refusal{Reason: schema.ReasonBadBody, Err: err}
	}
	if g.PendingBytes() >= d.cfg.MaxPending {
		if err := d.Flush(ctx); err != nil {
			return err
		}
	}
	g.Append(m.Body, m.Seq, m.Time)
	d.nRecords++
	d.nBytes += uint64(len(m.Body)) + 1
	d.rowApplied = m.Seq
	return nil
}

func (d *Dataset) applyReject(g *generation.Gen, baseRejects uint64, m Msg) error {
	// Rejects come in line order within a sync: one at or before the last
	// line this sync recorded was recorded already.
	last := g.LastRejectLine()
	if g.Rejects() == baseRejects {
		last = 0 // none of this sync yet (an append's generation has older ones)
	}
	if m.Env.Row <= last {
		g.Touch(m.Seq, m.Time) // already recorded
		d.rowApplied = m.Seq
		return nil
	}
	if len(m.Body) > schema.MaxMessageBytes {
		return schema.Refuse(schema.ReasonOversize, "reject body of %d bytes", len(m.Body))
	}
	d.scratch = d.scratch[:0]
	buf := bytes.NewBuffer(d.scratch)
	if err := json.Compact(buf, m.Body); err != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return schema.Refuse(schema.ReasonBadBody, "reject body is not a JSON object")
	}
	d.scratch = buf.Bytes()
	g.AppendReject(d.scratch, m.Env.Row, m.Seq, m.Time)
	d.nRejects++
	d.rowApplied = m.Seq
	return nil
}

// Flush writes the batches of the dataset's open generations.
func (d *Dataset) Flush(ctx context.Context) error {
	for _, g := range []*generation.Gen{d.building, d.current} {
		if g != nil {
			if err := g.Flush(); err != nil {
				return fmt.Errorf("dataset %s: generation %d: %w", d.cfg.Name, g.Generation(), err)
			}
		}
	}
	mt := d.cfg.Metrics
	if d.nRecords > 0 {
		mt.Records.WithLabelValues(d.cfg.Name).Add(float64(d.nRecords))
		mt.Bytes.WithLabelValues(d.cfg.Name).Add(float64(d.nBytes))
	}
	if d.nRejects > 0 {
		mt.Rejects.WithLabelValues(d.cfg.Name).Add(float64(d.nRejects))
	}
	if d.nDups > 0 {
		mt.Duplicates.WithLabelValues(d.cfg.Name).Add(float64(d.nDups))
	}
	d.nRecords, d.nBytes, d.nRejects, d.nDups = 0, 0, 0, 0
	return nil
}
