// Package writer is the front door of rowpipe's writer: it materialises the
// rows stream into per-dataset generation files under DATA_DIR, exactly
// once and in order, as the contract and the design describe. main.go and
// the all-in-one stack both use it the same way:
//
//	w, err := writer.New(cfg, nc, writer.WithLogger(log), writer.WithRegisterer(reg))
//	...
//	err = w.Run(ctx) // until ctx is cancelled
//
// The files are a view of the stream: a writer with an empty DATA_DIR (or
// Config.Rebuild) rebuilds them byte for byte from it. One writer runs per
// DATA_DIR (a lock file says so); it serves every dataset of the stream.
package writer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/checkpoint"
	"github.com/rowpipe/rowpipe/services/writer/internal/consume"
	"github.com/rowpipe/rowpipe/services/writer/internal/dataset"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
	"github.com/rowpipe/rowpipe/services/writer/internal/generation"
	"github.com/rowpipe/rowpipe/services/writer/internal/metrics"
)

// ErrLocked is wrapped by the error Run returns when another writer runs
// on the same DATA_DIR.
var ErrLocked = checkpoint.ErrLocked

// ErrStreamReplaced is wrapped by the error Run returns when the stream is
// not the one DATA_DIR was built from (deleted and created again): its
// sequences, hence the generation numbers, start over. Run with Rebuild.
var ErrStreamReplaced = errors.New("the stream is not the one DATA_DIR was built from")

// Option configures a Writer.
type Option func(*Writer)

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(w *Writer) { w.log = l } }

// WithRegisterer registers the writer's metrics with r (default: none).
// stack passes the registry it serves on /metrics.
func WithRegisterer(r prometheus.Registerer) Option { return func(w *Writer) { w.reg = r } }

// withFS makes the writer go through fsys for every file it writes
// (tests inject a full disk this way).
func withFS(fsys disk.FS) Option { return func(w *Writer) { w.fs = fsys } }

// Writer applies the rows stream to DATA_DIR. Create it with New.
type Writer struct {
	cfg    Config
	policy generation.Policy
	nc     *nats.Conn
	log    *slog.Logger
	reg    prometheus.Registerer
	fs     disk.FS
	m      *metrics.Metrics

	js     jetstream.JetStream
	stream jetstream.Stream
	kv     jetstream.KeyValue

	datasets map[string]*dataset.Dataset
	applied  atomic.Uint64
	running  atomic.Bool
	started  atomic.Bool
	caughtUp atomic.Bool
	target   uint64 // the stream's last sequence when Run started consuming

	healthMu  sync.Mutex
	healthErr error

	lock *checkpoint.Lock // held from Lock (or Run) until Run returns

	hostileLog rateLimit
}

// New checks cfg (after filling defaults) and prepares a writer on nc. It
// does not touch the disk or the broker: Run does.
func New(cfg Config, nc *nats.Conn, opts ...Option) (*Writer, error) {
	if nc == nil {
		return nil, errors.New("writer: a NATS connection is required")
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("writer configuration: %w", err)
	}
	policy, _ := generation.ParsePolicy(cfg.Fsync)
	w := &Writer{cfg: cfg, policy: policy, nc: nc, log: slog.Default(), fs: disk.OS{}, datasets: map[string]*dataset.Dataset{}}
	for _, o := range opts {
		o(w)
	}
	w.m = metrics.New(w.reg)
	w.registerStatusMetrics()
	w.hostileLog = rateLimit{per: time.Second, max: 20}
	return w, nil
}

// Config is the writer's configuration, defaults filled in.
func (w *Writer) Config() Config { return w.cfg }

// Applied is the stream sequence of the last message applied to the files.
func (w *Writer) Applied() uint64 { return w.applied.Load() }

// Healthy is nil while Run is consuming normally. It is an error before
// Run has started consuming, after it returned, while the connection to
// NATS is down, and while the writer retries a failing disk or broker (the
// error says what fails).
func (w *Writer) Healthy() error {
	if !w.running.Load() || !w.started.Load() {
		return errors.New("the writer is not consuming the stream")
	}
	if !w.nc.IsConnected() {
		return fmt.Errorf("not connected to NATS (%s)", w.nc.Status())
	}
	w.healthMu.Lock()
	defer w.healthMu.Unlock()
	return w.healthErr
}

func (w *Writer) setHealth(err error) {
	w.healthMu.Lock()
	w.healthErr = err
	w.healthMu.Unlock()
	if err != nil {
		w.m.Stalled.Set(1)
	} else {
		w.m.Stalled.Set(0)
	}
}

// Lock takes the DATA_DIR lock now, so that a second writer fails with a
// clear message before it consumes anything (main calls it before Run).
// The error wraps ErrLocked if another writer holds it. Run takes the
// lock itself when Lock was not called, and releases it when it returns.
func (w *Writer) Lock() error {
	if w.lock != nil {
		return nil
	}
	if err := w.fs.MkdirAll(w.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("DATA_DIR: %w", err)
	}
	lock, err := checkpoint.Acquire(w.cfg.DataDir)
	if err != nil {
		return err
	}
	w.lock = lock
	return nil
}

// Run takes the DATA_DIR lock, recovers the datasets (cutting torn tails,
// finishing interrupted commits), then applies the stream from the
// checkpoint on until ctx is cancelled, when it saves the checkpoint and
// returns nil. It returns an error wrapping ErrLocked if another writer
// holds DATA_DIR, ErrStreamReplaced if the stream is not the one DATA_DIR
// was built from, and an error naming the file if a dataset's files are
// damaged beyond what a crash explains. A full disk or a broker that is
// away does not end Run: it stops consuming and retries, and Healthy says
// why.
func (w *Writer) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("writer: Run is already running or has run")
	}
	defer w.running.Store(false)
	if err := w.Lock(); err != nil {
		return err
	}
	defer func() {
		w.lock.Release()
		w.lock = nil
	}()
	defer w.closeDatasets()
	w.reportStatus(false, 0, 0) // until caught up, the api is not ready

	if w.cfg.Rebuild {
		if err := w.wipe(); err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
	}
	info, err := w.connectStream(ctx)
	if err != nil {
		return err
	}
	start, err := w.startSeq(info)
	if err != nil {
		return err
	}
	w.target = info.State.LastSeq
	if start > w.target || info.State.Msgs == 0 {
		w.reportStatus(true, w.target, start-1) // nothing to apply
	}
	if err := w.openDatasets(ctx); err != nil {
		return err
	}
	for _, name := range w.sortedNames() {
		d := w.datasets[name]
		if err := w.retry(ctx, "repair "+name, func() error { return d.Repair(ctx) }); err != nil {
			return nil // cancelled
		}
		if from, ok := d.ReplayFrom(); ok && from < start {
			start = from
		}
	}
	cons, err := consume.Start(ctx, w.js, consume.Config{
		Stream: w.cfg.Stream, StartSeq: start, BatchMax: w.cfg.BatchMax,
		PullMaxBytes: w.cfg.PullMaxBytes, BudgetBytes: w.cfg.BatchBytes,
	}, w.log)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer cons.Stop()
	w.log.Info("writer consuming", "stream", w.cfg.Stream, "from_seq", start, "stream_last_seq", info.State.LastSeq,
		"datasets", len(w.datasets), "data_dir", w.cfg.DataDir, "fsync", w.policy.String(), "keep_generations", w.cfg.KeepGenerations)
	w.started.Store(true)
	return w.loop(ctx, cons, info.Created)
}

func (w *Writer) loop(ctx context.Context, cons *consume.Consumer, created time.Time) error {
	var batch []consume.Msg
	saved := w.applied.Load()
	lastSave := time.Now()
	save := func() {
		seq := w.applied.Load()
		if seq == saved {
			return
		}
		cp := checkpoint.Checkpoint{Stream: w.cfg.Stream, StreamCreated: created, Seq: seq}
		if err := checkpoint.Save(w.fs, w.cfg.DataDir, cp, w.policy != generation.SyncOff); err != nil {
			w.log.Warn("could not save the checkpoint; a restart will replay a little more", "err", err)
			return
		}
		saved, lastSave = seq, time.Now()
	}
	defer save()
	for {
		var err error
		batch, err = cons.Next(ctx, batch[:0])
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := w.applyBatch(ctx, batch); err != nil {
			return nil // cancelled while retrying: what was durable stays
		}
		cons.Release(batch)
		last := batch[len(batch)-1]
		w.applied.Store(last.Seq)
		w.m.Applied.Set(float64(last.Seq))
		w.m.Lag.Set(float64(last.Pending))
		w.m.Batch.Observe(float64(len(batch)))
		if !w.caughtUp.Load() && (last.Seq >= w.target || last.Pending == 0) {
			w.reportStatus(true, w.target, last.Seq)
		}
		if time.Since(lastSave) >= w.cfg.CheckpointInterval {
			save()
		}
		clear(batch) // drop references to message bodies
	}
}

// applyBatch applies a batch in order, then flushes every dataset it
// touched (the group commit). It only fails when ctx is cancelled. The
// generations write the rows from the batch's message bodies, not from a
// copy, so the batch is released only once applyBatch has returned.
func (w *Writer) applyBatch(ctx context.Context, batch []consume.Msg) error {
	touched := map[*dataset.Dataset]bool{}
	for i := range batch {
		m := &batch[i]
		d, fresh, dm, err := w.datasetFor(ctx, m)
		if err == nil {
			err = w.retry(ctx, "apply", func() error { return d.Apply(ctx, dm) })
		}
		if r, ok := schema.RefusalOf(err); ok {
			w.refuse(m, r)
			if fresh {
				w.dropDataset(d)
			}
			continue
		}
		if err != nil {
			return err
		}
		touched[d] = true
	}
	for d := range touched {
		if err := w.retry(ctx, "flush "+d.Name(), func() error { return d.Flush(ctx) }); err != nil {
			return err
		}
	}
	return nil
}

// retry runs f until it succeeds, returns a *schema.Refusal, or ctx
// is cancelled; between attempts it waits, doubling from 100ms to 30s, and
// reports the failure in Healthy and the metrics.
func (w *Writer) retry(ctx context.Context, what string, f func() error) error {
	wait := 100 * time.Millisecond
	failed := false
	for {
		err := f()
		if _, refused := schema.RefusalOf(err); err == nil || refused {
			if failed {
				w.log.Info("recovered", "what", what)
				w.setHealth(nil)
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		failed = true
		w.setHealth(fmt.Errorf("%s: %w", what, err))
		w.m.StorageError.WithLabelValues(errorKind(err)).Inc()
		w.log.Error("stopped consuming; will retry", "what", what, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func errorKind(err error) string {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return "no_space"
	case errors.Is(err, generation.ErrCorrupt):
		return "corrupt"
	case errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return "broker"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return "io"
	}
	return "other"
}

func (w *Writer) connectStream(ctx context.Context) (*jetstream.StreamInfo, error) {
	js, err := jetstream.New(w.nc)
	if err != nil {
		return nil, err
	}
	w.js = js
	o := schema.StreamOptions{Name: w.cfg.Stream, Replicas: w.cfg.StreamReplicas, MaxBytes: w.cfg.StreamMaxBytes,
		Compression: w.cfg.StreamCompression}
	var info *jetstream.StreamInfo
	err = w.retry(ctx, "create or bind stream "+w.cfg.Stream, func() error {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		s, err := schema.EnsureStream(octx, js, o)
		if err != nil {
			return err
		}
		kv, err := schema.EnsureStateBucket(octx, js, o)
		if err != nil {
			return err
		}
		if info, err = s.Info(octx); err != nil {
			return err
		}
		w.stream, w.kv = s, kv
		return nil
	})
	if err != nil {
		return nil, err
	}
	w.setHealth(nil)
	return info, nil
}

// startSeq is where consuming starts: after the checkpoint, or at the
// first message.
func (w *Writer) startSeq(info *jetstream.StreamInfo) (uint64, error) {
	cp, ok, err := checkpoint.Load(w.fs, w.cfg.DataDir)
	if err != nil {
		w.log.Warn("the checkpoint is unreadable; replaying the stream from its first message (the datasets skip what they hold)", "err", err)
		return 1, nil
	}
	if !ok {
		return 1, nil
	}
	if cp.Stream != w.cfg.Stream || !cp.StreamCreated.Equal(info.Created) || cp.Seq > info.State.LastSeq {
		return 0, fmt.Errorf("%w: DATA_DIR %s was built from stream %s created %s up to sequence %d; stream %s was created %s and ends at %d. Start the writer with --rebuild to rebuild DATA_DIR from this stream",
			ErrStreamReplaced, w.cfg.DataDir, cp.Stream, cp.StreamCreated.Format(time.RFC3339), cp.Seq, w.cfg.Stream, info.Created.Format(time.RFC3339), info.State.LastSeq)
	}
	return cp.Seq + 1, nil
}

func (w *Writer) datasetConfig(name string) dataset.Config {
	return dataset.Config{
		Name: name, Dir: filepath.Join(w.cfg.DataDir, name), StatePath: dataset.StatePath(w.cfg.DataDir, name),
		FS: w.fs, Policy: w.policy,
		Keep: w.cfg.KeepGenerations, Log: w.log, Metrics: w.m, Effects: effects{w},
		MaxPending: w.cfg.BatchBytes * 2,
	}
}

func (w *Writer) openDataset(ctx context.Context, name string) (*dataset.Dataset, error) {
	d, err := dataset.Open(ctx, w.datasetConfig(name))
	if err != nil {
		return nil, err
	}
	w.datasets[name] = d
	return d, nil
}

// openDatasets opens every dataset folder of DATA_DIR.
func (w *Writer) openDatasets(ctx context.Context) error {
	entries, err := w.fs.ReadDir(w.cfg.DataDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() || schema.ValidateDataset(e.Name()) != nil || !w.holdsDataset(e.Name()) {
			continue
		}
		if _, err := w.openDataset(ctx, e.Name()); err != nil {
			return err
		}
	}
	if n := len(w.datasets); n > w.cfg.MaxDatasets {
		w.log.Warn("DATA_DIR holds more datasets than MAX_DATASETS: all are kept, and a begin for a new one is refused",
			"datasets", n, "max_datasets", w.cfg.MaxDatasets)
	}
	return nil
}

// holdsDataset tells a dataset folder from another folder of DATA_DIR (an
// earlier stack kept its NATS store in DATA_DIR/nats): the writer has a record of
// it, or it holds a generation file or CURRENT. A dataset named like such a
// folder is opened when its first message arrives.
func (w *Writer) holdsDataset(name string) bool {
	if _, err := w.fs.ReadFile(dataset.StatePath(w.cfg.DataDir, name)); err == nil {
		return true
	}
	entries, err := w.fs.ReadDir(filepath.Join(w.cfg.DataDir, name))
	if err != nil {
		return true // let Open report what is wrong with it
	}
	for _, e := range entries {
		if _, isGen := schema.GenerationOf(e.Name()); isGen || e.Name() == schema.CurrentFile {
			return true
		}
	}
	return false
}

func (w *Writer) sortedNames() []string {
	names := make([]string, 0, len(w.datasets))
	for n := range w.datasets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (w *Writer) closeDatasets() {
	for name, d := range w.datasets {
		if err := d.Close(); err != nil {
			w.log.Warn("closing dataset", "dataset", name, "err", err)
		}
	}
	clear(w.datasets)
}

// wipe removes what --rebuild rebuilds.
func (w *Writer) wipe() error {
	w.log.Warn("rebuild: removing every dataset's generations, CURRENT and state, and the checkpoint; they are rebuilt from the stream", "data_dir", w.cfg.DataDir)
	entries, err := w.fs.ReadDir(w.cfg.DataDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() || schema.ValidateDataset(e.Name()) != nil {
			continue
		}
		if err := dataset.Wipe(w.fs, filepath.Join(w.cfg.DataDir, e.Name()), dataset.StatePath(w.cfg.DataDir, e.Name())); err != nil {
			return err
		}
	}
	return checkpoint.Remove(w.fs, w.cfg.DataDir)
}

// effects are the broker operations of the datasets.
type effects struct{ w *Writer }

const brokerTimeout = 10 * time.Second

// PublishState stores s unless the bucket has a state of a higher or equal
// Seq, with compare-and-set so that concurrent writers agree.
func (e effects) PublishState(ctx context.Context, s schema.DatasetState) error {
	ctx, cancel := context.WithTimeout(ctx, brokerTimeout)
	defer cancel()
	kv, val := e.w.kv, schema.EncodeState(s)
	for range 10 {
		entry, err := kv.Get(ctx, s.Dataset)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if _, err = kv.Create(ctx, s.Dataset, val); err == nil || !errors.Is(err, jetstream.ErrKeyExists) {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if old, derr := schema.DecodeState(entry.Value()); derr == nil && old.Seq >= s.Seq {
			return nil
		}
		_, err = kv.Update(ctx, s.Dataset, val, entry.Revision())
		if err == nil || !(errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)) {
			return err
		}
	}
	return errors.New("key-value update kept conflicting")
}

func (e effects) MessageTime(ctx context.Context, seq uint64) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, brokerTimeout)
	defer cancel()
	m, err := e.w.stream.GetMsg(ctx, seq)
	if err != nil {
		return time.Time{}, err
	}
	return m.Time, nil
}

// rateLimit lets through at most max events per period and counts the rest.
type rateLimit struct {
	per        time.Duration
	max        int
	start      time.Time
	n          int
	suppressed int
}

func (r *rateLimit) allow() (suppressed int, ok bool) {
	now := time.Now()
	if now.Sub(r.start) >= r.per {
		r.start, r.n = now, 0
	}
	r.n++
	if r.n > r.max {
		r.suppressed++
		return 0, false
	}
	s := r.suppressed
	r.suppressed = 0
	return s, true
}
