package dataset

import (
	"context"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

func (d *Dataset) applyAbort(ctx context.Context, m Msg) error {
	a, err := schema.DecodeAbort(m.Body)
	if err != nil {
		return err
	}
	reason := a.Code
	if a.Reason != "" {
		reason += ": " + a.Reason
	}
	open := d.st.Building != nil && d.st.Building.Sync == m.Env.Sync || d.st.Append != nil && d.st.Append.Sync == m.Env.Sync
	if !open && m.Env.Sync == d.st.Ignore {
		return nil
	}
	next := d.st
	next.Seq = m.Seq
	var out *schema.SyncOutcome
	if open {
		var err error
		if out, err = d.closeOpen(ctx, &next, schema.OutcomeAborted, reason); err != nil {
			return err
		}
	} else {
		// Nothing open (an ingester that found its source unchanged only
		// at the end, after a crash of ours...): still answer it.
		out = &schema.SyncOutcome{Sync: m.Env.Sync, Outcome: schema.OutcomeAborted, Reason: reason}
		next.Ignore = m.Env.Sync
	}
	if err := d.record(ctx, next, out); err != nil {
		return err
	}
	d.rowApplied = max(d.rowApplied, m.Seq)
	d.log.Info("sync aborted", "sync", m.Env.Sync, "reason", reason, "seq", m.Seq)
	return nil
}

// fail refuses the open sync loudly (a gap, a count that does not match):
// its generation is removed or its append rolled back, and the outcome
// says why. Its later messages are ignored.
func (d *Dataset) fail(ctx context.Context, m Msg, reason string) error {
	next := d.st
	next.Seq = m.Seq
	out, err := d.closeOpen(ctx, &next, schema.OutcomeFailed, reason)
	if err != nil {
		return err
	}
	if out == nil {
		out = &schema.SyncOutcome{Sync: m.Env.Sync, Outcome: schema.OutcomeFailed, Reason: reason}
	}
	next.Ignore = m.Env.Sync
	if err := d.record(ctx, next, out); err != nil {
		return err
	}
	d.rowApplied = max(d.rowApplied, m.Seq)
	d.log.Error("sync failed: the previous generation stays current", "sync", m.Env.Sync, "reason", reason, "seq", m.Seq)
	return nil
}
