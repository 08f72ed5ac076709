package dataset

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
	"github.com/rowpipe/rowpipe/services/writer/internal/generation"
)

// record makes next the dataset's state: it computes the state to publish,
// saves the state file, removes the generations doomed by the message
// (which next no longer names), then publishes. Only then does it become
// d.st.
func (d *Dataset) record(ctx context.Context, next persisted, out *schema.SyncOutcome) error {
	next.State = d.stateFor(next, next.Seq, out)
	if err := d.cfg.FS.MkdirAll(d.cfg.Dir, 0o755); err != nil {
		return err
	}
	if err := saveState(d.cfg.FS, d.cfg.StatePath, next, d.durable()); err != nil {
		return err
	}
	d.removeDoomed()
	if err := d.cfg.Effects.PublishState(ctx, next.State); err != nil {
		return fmt.Errorf("publish the state of %s: %w", d.cfg.Name, err)
	}
	d.st = next
	d.closeUnnamed()
	if out != nil {
		d.cfg.Metrics.Syncs.WithLabelValues(out.Outcome).Inc()
	}
	return nil
}

func (d *Dataset) stateFor(p persisted, seq uint64, out *schema.SyncOutcome) schema.DatasetState {
	s := schema.DatasetState{Dataset: d.cfg.Name, Seq: seq, Last: d.st.State.Last}
	if out != nil {
		s.Last = out
	}
	if c := p.Current; c != nil {
		s.Current = &schema.GenerationState{Generation: c.Generation, Sync: c.Sync, Count: c.Count, Rejected: c.Rejected, SHA256: c.Source.SHA256, UpdatedAt: c.UpdatedAt}
	}
	if b := p.Building; b != nil {
		gs := &schema.GenerationState{Generation: b.Begin, Sync: b.Sync, SHA256: b.Source.SHA256, UpdatedAt: b.Header.UpdatedAt}
		if d.building != nil && d.building.Generation() == b.Begin {
			h := d.building.Header()
			gs.Count, gs.Rejected, gs.UpdatedAt = h.Count, h.Rejected, h.UpdatedAt
		}
		s.Building = gs
	}
	if a := p.Append; a != nil {
		gs := &schema.GenerationState{Generation: a.Header.Generation, Sync: a.Sync, SHA256: a.Source.SHA256, UpdatedAt: a.Header.UpdatedAt}
		if d.current != nil && d.current.Generation() == a.Header.Generation {
			h := d.current.Header()
			gs.Count, gs.Rejected, gs.UpdatedAt = h.Count-a.Header.Count, h.Rejected-a.Header.Rejected, h.UpdatedAt
		}
		s.Building = gs
	}
	return s
}

// writeCurrent makes CURRENT name gen.
func (d *Dataset) writeCurrent(gen uint64) error {
	return disk.WriteFileAtomic(d.cfg.FS, filepath.Join(d.cfg.Dir, schema.CurrentFile), schema.FormatCurrent(gen), d.durable())
}

// purge removes from the stream the dataset's messages older than the
// oldest generation kept: nothing on disk can need them again. A failure
// is only logged; the next commit purges again.
func (d *Dataset) purge(ctx context.Context) {
	if d.current == nil {
		return
	}
	oldest := d.current.Generation()
	if len(d.kept) > 0 {
		oldest = min(oldest, d.kept[0])
	}
	if d.st.Building != nil {
		oldest = min(oldest, d.st.Building.Begin)
	}
	if err := d.cfg.Effects.Purge(ctx, d.cfg.Name, oldest); err != nil {
		d.log.Warn("could not purge the stream of superseded syncs; will retry at the next commit", "before", oldest, "err", err)
		return
	}
	d.cfg.Metrics.Purges.Inc()
}

// doom schedules the removal of generations at the next record, once a
// state that does not name them is saved: a crash in between leaves files
// that the next start removes (they are neither current, building, named
// by CURRENT nor kept), never a state that names missing files.
func (d *Dataset) doom(gens ...uint64) {
	for _, g := range gens {
		if !slices.Contains(d.doomed, g) {
			d.doomed = append(d.doomed, g)
		}
	}
}

// removeDoomed removes the doomed generations' files. One that cannot be
// removed stays doomed, and is tried again at the next record.
func (d *Dataset) removeDoomed() {
	left := d.doomed[:0]
	for _, g := range d.doomed {
		if err := generation.Remove(d.files, g); err != nil {
			d.log.Warn("could not remove a generation's files; will retry at the next commit", "generation", g, "err", err)
			left = append(left, g)
			continue
		}
		d.log.Info("removed a generation's files", "generation", g)
	}
	d.doomed = left
}

// closeUnnamed closes the building generation once the state names it
// neither building nor current (its sync was closed, or another began).
func (d *Dataset) closeUnnamed() {
	if d.building == nil {
		return
	}
	g := d.building.Generation()
	named := d.st.Building != nil && d.st.Building.Begin == g || d.st.Current != nil && d.st.Current.Generation == g
	if !named {
		d.building.Close()
		d.building, d.bShape = nil, nil
	}
}
