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
// Files are removed only once a state that no longer names them is saved,
// so a crash at any instant leaves a state naming only files that exist.
//
// A message that would fail the same way however often it is applied is
// refused with a *schema.Refusal before it has any effect (one exception:
// an end of a sync that is not open publishes a failed outcome for it).
//
// One file per phase: recover.go (Open, recovery, Repair), apply.go (rows
// and rejects), begin.go, end.go and abort.go (the framing messages),
// record.go (saving and publishing the state, removing files), wipe.go.
package dataset

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
	"github.com/rowpipe/rowpipe/services/writer/internal/generation"
	"github.com/rowpipe/rowpipe/services/writer/internal/metrics"
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
	curShape *schema.RecordDecoder
	building *generation.Gen // nil: no replace sync, or its files were lost
	bShape   *schema.RecordDecoder
	kept     []uint64 // older complete generations still on disk, ascending
	doomed   []uint64 // generations to remove once a state without them is saved

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
