// Package ingester is the front door of the rowpipe ingester: it streams a
// CSV export (a file, an http(s) URL or standard input) into the JetStream
// stream as one sync, framed by begin and end, one message per row, as
// CONTRACT.md and pkg/schema describe; given a folder, it syncs each CSV
// file in it to the dataset named after the file. main.go and the
// all-in-one stack both call Run with a Config and a NATS connection.
//
// Run never holds the source in memory: it reads one record at a time and
// publishes in fast-ingest batches with a bounded window of unacknowledged
// messages (Config.PublishWindow).
package ingester

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/term"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/ingester/internal/csvsource"
	"github.com/rowpipe/rowpipe/services/ingester/internal/inbox"
)

// Errors that decide the exit status (see ExitCode). Run's errors wrap at
// most one of them; anything else is a runtime failure.
var (
	// ErrUsage: the configuration or the command line is wrong (exit 2).
	ErrUsage = errors.New("usage")
	// ErrRefused: the input was refused, and nothing was published, or
	// (--strict) the sync was aborted (exit 3).
	ErrRefused = errors.New("input refused")
	// ErrInterrupted: the context ended during a sync, which was aborted
	// (exit 1).
	ErrInterrupted = errors.New("interrupted")
)

// Exit statuses, as CONTRACT.md fixes them.
const (
	ExitOK      = 0
	ExitFailure = 1 // runtime failure: NATS unreachable after retries, the writer failed the sync, ...
	ExitUsage   = 2
	ExitRefused = 3
)

// ExitCode maps an error of Run (or of Config.Validate) to the exit status.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrUsage):
		return ExitUsage
	case errors.Is(err, ErrRefused):
		return ExitRefused
	}
	return ExitFailure
}

// Outcomes of a sync in Result.Outcome, besides the writer's
// (schema.OutcomeCommitted, OutcomeAborted, OutcomeFailed, OutcomeDiscarded).
const (
	// OutcomePublished: every message is in the stream; without --wait
	// the ingester does not know yet what the writer made of it.
	OutcomePublished = "published"
	// OutcomeUnchanged: the source's SHA-256 equals the current
	// generation's; nothing new was published.
	OutcomeUnchanged = "unchanged"
	// OutcomeInterrupted: the ingest stopped before the end of its source.
	OutcomeInterrupted = "interrupted"
)

// Result describes one sync.
type Result struct {
	Dataset string
	// Sync is the sync id; for an unchanged source, the current
	// generation's; "" when the source was refused.
	Sync string
	// Resumed is true when Sync is an interrupted sync of the same source
	// that this run completed.
	Resumed bool
	// Generation is the writer's generation number: with --wait the one it
	// reported; otherwise the stream sequence of the begin message
	// (replace) or the current generation (append); for an unchanged
	// source the current one.
	Generation uint64
	// Rows and Rejected count data rows: published and refused (with
	// --wait, as the writer counted them).
	Rows     uint64
	Rejected uint64
	// Outcome is committed, published, unchanged, aborted, failed,
	// discarded or interrupted.
	Outcome string
	// Reason says why, for the outcomes other than committed, published
	// and unchanged.
	Reason   string
	Source   schema.Source
	Duration time.Duration
	// Retries counts messages published again after a failure (a lost
	// connection, a restarting server).
	Retries int
}

// Summary is the one-line summary printed on standard output, e.g.
//
//	dataset=products generation=42 rows=1000 rejected=0 seconds=1.23 outcome=committed sync=8f3a...
func (r Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dataset=%s generation=%d rows=%d rejected=%d seconds=%.2f outcome=%s",
		r.Dataset, r.Generation, r.Rows, r.Rejected, r.Duration.Seconds(), r.Outcome)
	if r.Sync != "" {
		b.WriteString(" sync=" + r.Sync)
	}
	if r.Resumed {
		b.WriteString(" resumed=true")
	}
	if r.Reason != "" {
		b.WriteString(" reason=" + strconv.Quote(r.Reason))
	}
	return b.String()
}

// Run ingests cfg.Source into cfg.Dataset over nc: it creates or updates the
// stream and its state bucket, runs one sync (or, with cfg.Every, one per
// interval until ctx ends), prints reject lines and header renames on
// stderr as "<file>:<line>: <reason>", progress on stderr, and the summary
// line of each sync on stdout. log may be nil.
//
// The error, if any, wraps ErrUsage, ErrRefused or ErrInterrupted, or is a
// runtime failure: use ExitCode. With cfg.Every, a failed sync is logged
// and the next one is tried; Run returns nil when ctx ends.
//
// A folder source (IsFolder) is listed (package inbox: the *.csv files
// directly in it, in any case, dotfiles left out) and each file is synced,
// in name order, as an independent sync of the dataset its name gives
// (inbox/Orders 2024.csv -> orders-2024; cfg.Dataset is not used), with
// the same rules as a single file. A file whose name gives no valid
// dataset name, or the same one as another file's, is reported on stderr
// ("<path>: skipped: <why>") and skipped. An empty folder logs "no CSV
// files in <folder>". With cfg.Every the folder is listed again at each
// interval: new files are picked up, a removed file stops syncing (its
// dataset stays). Without it, the error wraps the worst file's as ExitCode
// ranks them (refused 3 over failed 1; nil when every file synced or was
// unchanged), or ErrInterrupted when ctx ended; the Result is that file's,
// or the last one's.
func Run(ctx context.Context, cfg Config, nc *nats.Conn, log *slog.Logger, stdout, stderr io.Writer) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{Dataset: cfg.Dataset}, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	if IsFolder(cfg.Source) {
		return runFolder(ctx, cfg, nc, log, stdout, stderr)
	}
	g, err := newIngester(ctx, cfg, nc, log, stdout, stderr)
	if err != nil {
		return Result{Dataset: cfg.Dataset}, err
	}
	if cfg.Every == 0 {
		res, err := g.sync(ctx)
		return res, err
	}
	for {
		res, err := g.sync(ctx)
		switch {
		case ctx.Err() != nil:
			return res, nil // stopped (SIGTERM): the sync in progress was aborted
		case errors.Is(err, ErrUsage):
			return res, err
		case err != nil:
			log.Error("sync failed; trying again at the next interval", "dataset", cfg.Dataset, "err", err, "every", cfg.Every)
		}
		t := time.NewTimer(cfg.Every)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, nil
		case <-t.C:
		}
	}
}

// CheckSource refuses, before any connection is made, a file source that
// is missing, unreadable or empty, or a folder that cannot be listed (an
// error wrapping ErrRefused and naming the file or folder). URLs, standard
// input, named pipes (which must be read only once) and the files of a
// folder are checked by Run.
func CheckSource(cfg Config) error {
	if cfg.Source == "-" || csvsource.IsURL(cfg.Source) || cfg.Source == "" {
		return nil
	}
	if IsFolder(cfg.Source) {
		if _, err := inbox.Scan(cfg.Source); err != nil {
			return fmt.Errorf("%w: %w", ErrRefused, err)
		}
		return nil
	}
	if st, err := os.Stat(cfg.Source); err == nil && !st.Mode().IsRegular() && !st.IsDir() {
		return nil
	}
	in, err := csvsource.Open(context.Background(), cfg.Source, csvsource.OpenOptions{})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return in.Close()
}

type ingester struct {
	cfg    Config
	log    *slog.Logger
	stdout io.Writer
	stderr io.Writer
	bar    bool // draw a progress bar on stderr
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	csv    csvsource.Options
}

func newIngester(ctx context.Context, cfg Config, nc *nats.Conn, log *slog.Logger, stdout, stderr io.Writer) (*ingester, error) {
	if nc == nil {
		return nil, errors.New("ingester: no NATS connection")
	}
	enc, _ := csvsource.LookupEncoding(cfg.Encoding)    // validated
	delim, _ := csvsource.ParseDelimiter(cfg.Delimiter) // validated
	g := &ingester{cfg: cfg, log: log, stdout: stdout, stderr: stderr,
		csv: csvsource.Options{Encoding: enc, Delimiter: delim, MaxRecordBytes: schema.MaxRecordBytes}}
	switch cfg.Progress {
	case "bar":
		g.bar = true
	case "auto":
		f, ok := stderr.(*os.File)
		g.bar = ok && term.IsTerminal(int(f.Fd()))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	g.js = js
	opts := schema.StreamOptions{Name: cfg.Stream, Replicas: cfg.StreamReplicas, MaxBytes: cfg.StreamMaxBytes,
		Compression: cfg.StreamCompression}
	err = retry(ctx, cfg.PublishGiveUp, log, "bind the stream", func(ctx context.Context) error {
		if _, err := schema.BindStream(ctx, js, opts); err != nil {
			return err
		}
		g.kv, err = schema.EnsureStateBucket(ctx, js, opts)
		return err
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// retry runs f until it succeeds, ctx ends or giveUp passes, with backoff:
// JetStream may still be starting, or a cluster electing a leader.
func retry(ctx context.Context, giveUp time.Duration, log *slog.Logger, what string, f func(context.Context) error) error {
	deadline := time.Now().Add(giveUp)
	backoff := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if time.Now().Add(backoff).After(deadline) {
			return fmt.Errorf("%s: gave up after %s: %w", what, giveUp, err)
		}
		log.Warn("retrying", "what", what, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
