package dataset

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
	"github.com/rowpipe/rowpipe/services/writer/internal/generation"
)

func (d *Dataset) recover(ctx context.Context) error {
	var curGen, buildGen uint64
	if d.st.Current != nil {
		curGen = d.st.Current.Generation
		g, rec, err := generation.Open(d.files, curGen, generation.Recovery{Base: d.st.Current, TimeOf: d.timeOf(ctx)})
		if err != nil {
			return fmt.Errorf("dataset %s: current generation %d: %w (the stream can rebuild it: writer --rebuild)", d.cfg.Name, curGen, err)
		}
		d.noteRecovery(g, rec)
		if d.curShape, err = schema.NewRecordDecoder(g.Header().Fields); err != nil {
			g.Close()
			return err
		}
		d.current = g
		if d.st.Append != nil {
			d.rowApplied = max(d.rowApplied, g.Header().LastSeq)
		}
	}
	if b := d.st.Building; b != nil {
		buildGen = b.Begin
		g, rec, err := generation.Open(d.files, buildGen, generation.Recovery{Base: &b.Header, TimeOf: d.timeOf(ctx)})
		switch {
		case err == nil:
			d.noteRecovery(g, rec)
			d.building = g
			d.rowApplied = max(d.rowApplied, g.Header().LastSeq)
			if d.bShape, err = schema.NewRecordDecoder(g.Header().Fields); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrNotExist):
			// Removed by a framing message that did not finish: applying
			// it again finds nothing to remove.
			d.log.Warn("the building generation's files are gone; the sync will fail if more rows come", "generation", buildGen, "sync", b.Sync)
		default:
			d.log.Error("the building generation is damaged; discarding it, the sync will fail if more rows come", "generation", buildGen, "sync", b.Sync, "err", err)
			if err := generation.Remove(d.files, buildGen); err != nil {
				return err
			}
		}
	}
	d.rowApplied = max(d.rowApplied, d.st.Seq)
	if d.replayFrom > 0 {
		d.rowApplied = min(d.rowApplied, d.replayFrom-1)
		d.rowApplied = max(d.rowApplied, d.st.Seq)
	}
	fileCur, _ := d.readCurrentFile()
	return d.tidy(curGen, buildGen, fileCur)
}

func (d *Dataset) noteRecovery(g *generation.Gen, rec generation.Recovered) {
	if rec.TornHeader {
		d.log.Warn("rebuilt a torn header from the index", "generation", g.Generation(), "count", g.Header().Count, "last_seq", g.Header().LastSeq)
		from := g.Header().LastSeq + 1
		if d.replayFrom == 0 || from < d.replayFrom {
			d.replayFrom = from
		}
	}
	if rec.DataTruncated > 0 || rec.IndexTruncated > 0 || rec.RejectsTruncated > 0 {
		d.log.Info("cut a torn tail", "generation", g.Generation(), "count", g.Header().Count,
			"data_bytes", rec.DataTruncated, "index_bytes", rec.IndexTruncated, "rejects_bytes", rec.RejectsTruncated)
	}
}

// tidy removes the files of generations that are neither current,
// building, named by CURRENT, nor among the older complete ones kept, and
// prunes those beyond KEEP_GENERATIONS.
func (d *Dataset) tidy(curGen, buildGen, fileCur uint64) error {
	gens, err := generation.List(d.cfg.FS, d.cfg.Dir)
	if err != nil {
		return err
	}
	d.kept = d.kept[:0]
	for _, g := range gens {
		switch {
		case g == curGen || g == buildGen || g == fileCur:
		case g < curGen:
			if h, err := generation.ReadHeader(d.files, g); err == nil && h.State == schema.StateComplete {
				d.kept = append(d.kept, g)
				continue
			}
			d.log.Warn("removing an older generation that cannot be read", "generation", g)
			fallthrough
		default:
			d.log.Info("removing the files of an abandoned generation", "generation", g)
			if err := generation.Remove(d.files, g); err != nil {
				return err
			}
		}
	}
	for _, path := range []string{filepath.Join(d.cfg.Dir, schema.CurrentFile+".tmp"), d.cfg.StatePath + ".tmp"} {
		if err := disk.RemoveIfExists(d.cfg.FS, path); err != nil {
			return err
		}
	}
	kept, drop := d.splitOld(d.kept)
	d.kept = kept
	d.doom(drop...) // the state on disk names none of them
	d.removeDoomed()
	return nil
}

// splitOld splits older into the generations to keep (the Keep-1 newest)
// and those past KEEP_GENERATIONS.
func (d *Dataset) splitOld(older []uint64) (keep, drop []uint64) {
	older = slices.Clone(older)
	slices.Sort(older)
	older = slices.Compact(older)
	n := max(len(older)-max(d.cfg.Keep-1, 0), 0)
	return older[n:], older[:n]
}

func (d *Dataset) readCurrentFile() (uint64, bool) { return readCurrent(d.cfg.FS, d.cfg.Dir) }

// readCurrent returns the generation the CURRENT file in dir names, if it
// names one.
func readCurrent(fsys disk.FS, dir string) (uint64, bool) {
	b, err := fsys.ReadFile(filepath.Join(dir, schema.CurrentFile))
	if err != nil {
		return 0, false
	}
	return schema.ParseCurrent(b)
}

// derive builds the state of a folder that has no state file: nothing at
// all (a new dataset), or files whose state file was lost. CURRENT names
// the current generation; the newest generation after it is the one being
// built, or, if it is complete, the one whose commit was interrupted.
func (d *Dataset) derive(ctx context.Context) error {
	gens, err := generation.List(d.cfg.FS, d.cfg.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	fileCur, _ := d.readCurrentFile()
	if len(gens) == 0 && fileCur == 0 {
		return nil
	}
	d.log.Warn("no writer state file: rebuilding the writer's state from the files", "path", d.cfg.StatePath)
	var newest uint64
	var newestHdr schema.Header
	for _, g := range gens {
		if g <= fileCur {
			continue
		}
		if h, err := generation.ReadHeader(d.files, g); err == nil {
			newest, newestHdr = g, h
		}
	}
	if newest != 0 && newestHdr.State == schema.StateComplete {
		// Complete: its commit (or the first append's begin) was cut
		// short, unless a crash cut its creation short.
		if g, _, err := generation.Open(d.files, newest, generation.Recovery{}); err != nil {
			d.log.Warn("discarding a generation whose creation was cut short", "generation", newest, "err", err)
			newest = 0
		} else {
			g.Close()
			if err := d.writeCurrent(newest); err != nil {
				return err
			}
			fileCur, newest = newest, 0
		}
	}
	if fileCur != 0 {
		g, rec, err := generation.Open(d.files, fileCur, generation.Recovery{})
		if err != nil {
			return fmt.Errorf("dataset %s: current generation %d: %w (the stream can rebuild it: writer --rebuild)", d.cfg.Name, fileCur, err)
		}
		d.noteRecovery(g, rec)
		h := g.Header()
		d.current, d.st.Current = g, &h
		if d.curShape, err = schema.NewRecordDecoder(h.Fields); err != nil {
			return err
		}
		d.st.Seq = max(d.st.Seq, derivedSeq(h))
	}
	if newest != 0 {
		g, rec, err := generation.Open(d.files, newest, generation.Recovery{})
		if err == nil {
			d.noteRecovery(g, rec)
			h := g.Header()
			d.building = g
			d.st.Building = &openSync{Sync: h.Sync, Begin: newest, Source: h.Source, Header: h}
			if d.bShape, err = schema.NewRecordDecoder(h.Fields); err != nil {
				return err
			}
			d.st.Seq = max(d.st.Seq, derivedSeq(h))
		} else {
			newest = 0
		}
	}
	d.rowApplied = d.st.Seq
	var curGen uint64
	if d.st.Current != nil {
		curGen = d.st.Current.Generation
	}
	if err := d.tidy(curGen, newest, fileCur); err != nil {
		return err
	}
	d.st.State = d.stateFor(d.st, d.st.Seq, nil)
	return saveState(d.cfg.FS, d.cfg.StatePath, d.st, d.durable())
}

// derivedSeq is the last message a generation found without a state file
// has applied: its header's LastSeq, or the message before its begin when
// the begin is all it holds, so that the begin, whose record a crash may
// have cut short, is applied again.
func derivedSeq(h schema.Header) uint64 {
	if h.LastSeq == h.Generation {
		return h.Generation - 1
	}
	return h.LastSeq
}

// Repair publishes the state the writer recorded last, in case a crash
// came between recording and publishing it, and purges the stream of what
// the kept generations no longer need.
func (d *Dataset) Repair(ctx context.Context) error {
	if d.st.State.Seq == 0 {
		return nil
	}
	if l := d.st.State.Last; l != nil && len(l.Reason) > schema.MaxReasonBytes+schema.MaxAbortCodeBytes+2 {
		// Recorded by a writer that did not bound abort reasons: as it
		// is, the state may not fit in a message.
		cut := *l
		cut.Reason = l.Reason[:schema.MaxReasonBytes] + "…"
		d.st.State.Last = &cut
	}
	if err := d.cfg.Effects.PublishState(ctx, d.st.State); err != nil {
		return err
	}
	d.purge(ctx)
	return nil
}
