// Package dataset applies the messages of one dataset's subject to its
// folder, DATA_DIR/<dataset>/: the state machine of the protocol in the
// design document. A replace sync builds a new generation and makes it
// current at its end; an append sync grows the current generation and is
// rolled back if it does not end well; a new begin, an abort or a gap in
// the row indexes closes the sync that was open; rows already written are
// skipped by their row index.
//
// Apply never leaves a half-applied message behind in memory: on error
// (a full disk, a broker that is away) the dataset is as it was before the
// call, and the same message can be applied again. Effects on the files
// are made so that doing them twice is the same as doing them once, which
// is also how a restart after a crash finishes a message it had started.
package dataset

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
	"github.com/rowpipe/rowpipe/services/writer/internal/generation"
	"github.com/rowpipe/rowpipe/services/writer/internal/metrics"
	"github.com/rowpipe/rowpipe/services/writer/internal/record"
)

// Msg is one message of the dataset's subject.
type Msg struct {
	Seq  uint64    // stream sequence
	Time time.Time // stream timestamp
	Env  schema.Envelope
	// Body is not copied: a row's body is written from these bytes at the
	// next Flush, so they must not change until then.
	Body []byte
}

// Effects are what a dataset does outside its folder, through the broker.
type Effects interface {
	// PublishState stores s under its dataset's key unless the stored
	// state has a Seq at least as high.
	PublishState(ctx context.Context, s schema.DatasetState) error
	// Purge removes the dataset's messages with a sequence below before.
	Purge(ctx context.Context, dataset string, before uint64) error
	// MessageTime is the stream timestamp of message seq.
	MessageTime(ctx context.Context, seq uint64) (time.Time, error)
}

// Hostile reasons, the label of the rejected-messages metric.
const (
	ReasonOutsideSync = "outside_sync"
	ReasonBadBody     = "bad_body"
	ReasonBadBegin    = "bad_begin"
	ReasonVersion     = "unknown_version"
	ReasonOversize    = "oversize"
)

// HostileError says a message was refused: it is not one the protocol
// allows here. It was not applied and never will be; the caller logs it
// with its sequence and counts it.
type HostileError struct {
	Reason string // one of the Reason constants
	Err    error
}

func (e *HostileError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *HostileError) Unwrap() error { return e.Err }

func hostile(reason, format string, args ...any) error {
	return &HostileError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Config is what a dataset needs.
type Config struct {
	Name string
	Dir  string // DATA_DIR/<Name>
	// StatePath is the writer's record of the dataset (see StatePath).
	StatePath string
	FS        disk.FS
	Policy    generation.Policy
	Keep      int // KEEP_GENERATIONS, at least 1
	Log       *slog.Logger
	Metrics   *metrics.Metrics
	Effects   Effects
	// MaxPending is the batch size in bytes past which Apply writes a
	// batch out on its own.
	MaxPending int
}

// Dataset is one dataset's state machine. It is not safe for concurrent use.
type Dataset struct {
	cfg   Config
	files generation.Files
	log   *slog.Logger

	st       persisted       // as of the last framing message
	current  *generation.Gen // nil: no current generation
	curShape *record.Shape
	building *generation.Gen // nil: no replace sync, or its files were lost
	bShape   *record.Shape
	kept     []uint64 // older complete generations still on disk, ascending

	rowApplied uint64 // every row and reject up to here is in the files
	replayFrom uint64 // > 0: a torn header was rebuilt, replay from here
	scratch    []byte

	// counted since the last flush
	nRecords, nBytes, nRejects, nDups uint64
}

// Open loads (or recovers) the dataset in cfg.Dir: it reads the state
// file, reopens the current and the building generation (cutting torn
// tails, rebuilding a torn header from the index), removes the files of
// syncs that were abandoned, and prunes old generations. A folder without
// rowpipe files is a dataset with nothing yet.
func Open(ctx context.Context, cfg Config) (*Dataset, error) {
	d := newDataset(cfg)
	p, ok, err := loadState(cfg.FS, cfg.StatePath)
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := d.derive(ctx); err != nil {
			d.Close()
			return nil, err
		}
		return d, nil
	}
	d.st = p
	if err := d.recover(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func newDataset(cfg Config) *Dataset {
	if cfg.Keep < 1 {
		cfg.Keep = 1
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 4 << 20
	}
	d := &Dataset{cfg: cfg, log: cfg.Log.With("dataset", cfg.Name)}
	d.files = generation.Files{FS: cfg.FS, Dir: cfg.Dir, Policy: cfg.Policy, OnSync: func(t time.Duration) {
		cfg.Metrics.Fsync.Observe(t.Seconds())
	}}
	d.st.Dataset = cfg.Name
	d.st.State.Dataset = cfg.Name
	return d
}

func (d *Dataset) timeOf(ctx context.Context) func(uint64) (time.Time, error) {
	return func(seq uint64) (time.Time, error) { return d.cfg.Effects.MessageTime(ctx, seq) }
}

func (d *Dataset) recover(ctx context.Context) error {
	var curGen, buildGen uint64
	if d.st.Current != nil {
		curGen = d.st.Current.Generation
		g, rec, err := generation.Open(d.files, curGen, generation.Recovery{Base: d.st.Current, TimeOf: d.timeOf(ctx)})
		if err != nil {
			return fmt.Errorf("dataset %s: current generation %d: %w (the stream can rebuild it: writer --rebuild)", d.cfg.Name, curGen, err)
		}
		d.noteRecovery(g, rec)
		if d.curShape, err = record.NewShape(g.Header().Fields); err != nil {
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
			if d.bShape, err = record.NewShape(g.Header().Fields); err != nil {
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
	d.kept = d.pruneList(d.kept)
	return nil
}

// pruneList removes the generations of older beyond the Keep-1 newest and
// returns those kept.
func (d *Dataset) pruneList(older []uint64) []uint64 {
	slices.Sort(older)
	older = slices.Compact(older)
	keep := max(d.cfg.Keep-1, 0)
	for len(older) > keep {
		g := older[0]
		if err := generation.Remove(d.files, g); err != nil {
			d.log.Warn("could not remove an old generation; will retry at the next commit", "generation", g, "err", err)
			break
		}
		d.log.Info("removed an old generation", "generation", g)
		older = older[1:]
	}
	return slices.Clone(older)
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
		if err := d.writeCurrent(newest); err != nil {
			return err
		}
		fileCur, newest = newest, 0
	}
	if fileCur != 0 {
		g, rec, err := generation.Open(d.files, fileCur, generation.Recovery{})
		if err != nil {
			return fmt.Errorf("dataset %s: current generation %d: %w (the stream can rebuild it: writer --rebuild)", d.cfg.Name, fileCur, err)
		}
		d.noteRecovery(g, rec)
		h := g.Header()
		d.current, d.st.Current = g, &h
		if d.curShape, err = record.NewShape(h.Fields); err != nil {
			return err
		}
		d.st.Seq = max(d.st.Seq, h.LastSeq)
	}
	if newest != 0 {
		g, rec, err := generation.Open(d.files, newest, generation.Recovery{})
		if err == nil {
			d.noteRecovery(g, rec)
			h := g.Header()
			d.building = g
			d.st.Building = &openSync{Sync: h.Sync, Begin: newest, Source: h.Source, Header: h}
			if d.bShape, err = record.NewShape(h.Fields); err != nil {
				return err
			}
			d.st.Seq = max(d.st.Seq, h.LastSeq)
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

// Repair publishes the state the writer recorded last, in case a crash
// came between recording and publishing it, and purges the stream of what
// the kept generations no longer need.
func (d *Dataset) Repair(ctx context.Context) error {
	if d.st.State.Seq == 0 {
		return nil
	}
	if err := d.cfg.Effects.PublishState(ctx, d.st.State); err != nil {
		return err
	}
	d.purge(ctx)
	return nil
}

// ReplayFrom is the stream sequence a restart must replay from for this
// dataset, when it is earlier than what the checkpoint says: after a torn
// header was rebuilt from the index. ok is false otherwise.
func (d *Dataset) ReplayFrom() (seq uint64, ok bool) { return d.replayFrom, d.replayFrom > 0 }

// Name is the dataset's name.
func (d *Dataset) Name() string { return d.cfg.Name }

// Close closes the files; what was not flushed is lost (the stream keeps it).
func (d *Dataset) Close() error {
	var errs []error
	if d.current != nil {
		errs = append(errs, d.current.Close())
		d.current = nil
	}
	if d.building != nil {
		errs = append(errs, d.building.Close())
		d.building = nil
	}
	return errors.Join(errs...)
}

func (d *Dataset) durable() bool { return d.cfg.Policy != generation.SyncOff }

// Apply applies one message of the dataset's subject, in stream order. A
// *HostileError means the message was refused and nothing changed; any
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
		err = hostile(ReasonBadBody, "unknown event %q", m.Env.Event)
	}
	return err
}

// target is the generation the rows of sync go to, and how many records
// and rejects it had before the sync.
func (d *Dataset) target(sync string) (g *generation.Gen, base, baseRejects uint64, shape *record.Shape, open bool) {
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
		return hostile(ReasonOutsideSync, "%s of sync %s, which is not open on dataset %s", m.Env.Event, m.Env.Sync, d.cfg.Name)
	}
	if g == nil {
		return d.fail(ctx, m, "the generation's files were lost while it was being built (a crash while discarding it?); run the sync again")
	}
	if m.Env.Event == schema.EventReject {
		return d.applyReject(g, baseRejects, m)
	}
	if len(m.Body) > schema.MaxRecordBytes {
		return hostile(ReasonOversize, "row body of %d bytes, at most %d allowed", len(m.Body), schema.MaxRecordBytes)
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
		return &HostileError{Reason: ReasonBadBody, Err: err}
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
		return hostile(ReasonOversize, "reject body of %d bytes", len(m.Body))
	}
	d.scratch = d.scratch[:0]
	buf := bytes.NewBuffer(d.scratch)
	if err := json.Compact(buf, m.Body); err != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return hostile(ReasonBadBody, "reject body is not a JSON object")
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

func (d *Dataset) applyBegin(ctx context.Context, m Msg) error {
	var b schema.Begin
	if err := json.Unmarshal(m.Body, &b); err != nil {
		return hostile(ReasonBadBegin, "begin body: %v", err)
	}
	if b.Version != schema.EnvelopeVersion {
		return hostile(ReasonVersion, "begin of version %d, this writer reads version %d", b.Version, schema.EnvelopeVersion)
	}
	if b.Dataset != d.cfg.Name || b.Sync != m.Env.Sync {
		return hostile(ReasonBadBegin, "begin for dataset %q sync %q on subject of %q with sync header %q", b.Dataset, b.Sync, d.cfg.Name, m.Env.Sync)
	}
	mode, err := schema.ParseMode(string(b.Mode))
	if err != nil {
		return hostile(ReasonBadBegin, "begin: %v", err)
	}
	shape, err := record.NewShape(b.Fields)
	if err != nil {
		return hostile(ReasonBadBegin, "begin fields: %v", err)
	}
	if dup := duplicate(b.Fields); dup != "" {
		return hostile(ReasonBadBegin, "begin fields: %q appears twice", dup)
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
	open := &openSync{Sync: b.Sync, Begin: m.Seq, Source: b.Source}
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
		if d.building != nil {
			out.Rows, out.Rejected = d.building.Records(), d.building.Rejects()
			d.building.Close()
			d.building = nil
		}
		if err := generation.Remove(d.files, b.Begin); err != nil {
			return nil, err
		}
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

func (d *Dataset) applyEnd(ctx context.Context, m Msg) error {
	var e schema.End
	if err := json.Unmarshal(m.Body, &e); err != nil {
		return hostile(ReasonBadBody, "end body: %v", err)
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
	return hostile(ReasonOutsideSync, "end of sync %s, which is not open on dataset %s", m.Env.Sync, d.cfg.Name)
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
	if err := d.writeCurrent(h.Generation); err != nil {
		return err
	}
	older := slices.Clone(d.kept)
	if d.current != nil && d.current.Generation() != h.Generation {
		older = append(older, d.current.Generation())
	}
	kept := d.pruneList(older)

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

func (d *Dataset) applyAbort(ctx context.Context, m Msg) error {
	var a schema.Abort
	if err := json.Unmarshal(m.Body, &a); err != nil {
		return hostile(ReasonBadBody, "abort body: %v", err)
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

// record makes next the dataset's state: it computes the state to publish,
// saves the state file, then publishes. Only then does it become d.st.
func (d *Dataset) record(ctx context.Context, next persisted, out *schema.SyncOutcome) error {
	next.State = d.stateFor(next, next.Seq, out)
	if err := d.cfg.FS.MkdirAll(d.cfg.Dir, 0o755); err != nil {
		return err
	}
	if err := saveState(d.cfg.FS, d.cfg.StatePath, next, d.durable()); err != nil {
		return err
	}
	if err := d.cfg.Effects.PublishState(ctx, next.State); err != nil {
		return fmt.Errorf("publish the state of %s: %w", d.cfg.Name, err)
	}
	d.st = next
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

func duplicate(fields []string) string {
	seen := make(map[string]bool, len(fields))
	for _, f := range fields {
		if seen[f] {
			return f
		}
		seen[f] = true
	}
	return ""
}

// Wipe removes the rowpipe files of a dataset (writer --rebuild):
// generations and CURRENT in its folder dir, and its state file statePath.
// Anything else is left alone. CURRENT goes first: readers may trust the
// files of the generation CURRENT names for as long as CURRENT stays in
// place (pkg/schema/docs/files.md).
func Wipe(fsys disk.FS, dir, statePath string) error {
	for _, path := range []string{statePath, statePath + ".tmp", filepath.Join(dir, schema.CurrentFile), filepath.Join(dir, schema.CurrentFile+".tmp")} {
		if err := disk.RemoveIfExists(fsys, path); err != nil {
			return err
		}
	}
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, isGen := schema.GenerationOf(e.Name()); isGen {
			if err := disk.RemoveIfExists(fsys, filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}
