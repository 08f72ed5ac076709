package ingester

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/ingester/internal/csvsource"
	"github.com/rowpipe/rowpipe/services/ingester/internal/inbox"
)

// IsFolder reports whether source names a folder (or a link to one) rather
// than a file, a URL or standard input. Run syncs each CSV file directly in
// a folder to the dataset named after the file (see Run).
func IsFolder(source string) bool {
	if source == "" || source == "-" || csvsource.IsURL(source) {
		return false
	}
	st, err := os.Stat(source)
	return err == nil && st.IsDir()
}

// folderRun syncs the CSV files of a folder, once or every cfg.Every.
type folderRun struct {
	cfg    Config
	nc     *nats.Conn
	log    *slog.Logger
	stdout io.Writer
	stderr io.Writer

	g *ingester // made when the first file is to be synced
	// reported holds the skipped files already reported, path -> message,
	// so that --every does not repeat them at each pass; a file that goes
	// away is forgotten, and reported again if it comes back.
	reported map[string]string
	// saidEmpty: "no CSV files" was logged and the folder is still empty.
	saidEmpty bool
}

func runFolder(ctx context.Context, cfg Config, nc *nats.Conn, log *slog.Logger, stdout, stderr io.Writer) (Result, error) {
	if cfg.Dataset != "" {
		log.Warn("the dataset setting (DATASET) is not used for a folder: each file's name gives its dataset",
			"folder", cfg.Source, "dataset", cfg.Dataset)
	}
	f := &folderRun{cfg: cfg, nc: nc, log: log, stdout: stdout, stderr: stderr, reported: map[string]string{}}
	defer func() {
		if f.g != nil {
			f.g.js.CleanupPublisher()
		}
	}()
	for {
		res, reported, err := f.pass(ctx)
		switch {
		case cfg.Every == 0:
			return res, err
		case ctx.Err() != nil:
			return res, nil // stopped (SIGTERM): the sync in progress was aborted
		case err != nil && !reported:
			f.log.Error("cannot go through the folder; trying again at the next interval", "folder", cfg.Source, "err", err, "every", cfg.Every)
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

// pass scans the folder once and syncs each of its CSV files in name order,
// each an independent sync of its own dataset. Its error, when a file was
// not synced (skipped, refused, failed), wraps the worst file's error, as
// ExitCode ranks them: refused (3) over failed (1); when ctx ends it wraps
// ErrInterrupted. The Result is the worst file's, or the last one's.
// reported is true when every problem the error sums up was already
// reported, file by file (logged or printed as skipped).
func (f *folderRun) pass(ctx context.Context) (_ Result, reported bool, _ error) {
	dir := f.cfg.Source
	f.log.Debug("listing the folder", "folder", dir)
	files, err := inbox.Scan(dir)
	if err != nil {
		return Result{}, false, f.refused(ctx, err)
	}
	f.reportSkipped(files)
	if len(files) == 0 {
		if !f.saidEmpty {
			f.log.Info("no CSV files in "+dir, "folder", dir, "every", f.cfg.Every)
			f.saidEmpty = true
		}
		return Result{}, true, nil
	}
	f.saidEmpty = false

	var (
		last, worstRes Result
		worst          error
		notSynced      []string
	)
	note := func(name string, res Result, err error) {
		notSynced = append(notSynced, name)
		if worst == nil || ExitCode(err) > ExitCode(worst) {
			worst, worstRes = fmt.Errorf("%s: %w", name, err), res
		}
	}
	var noStream error // the stream could not be reached: no file can be synced
	for _, file := range files {
		if file.Err == nil && noStream != nil {
			note(file.Name, Result{Dataset: file.Dataset, Source: schema.Source{Name: file.Path}}, noStream)
			continue
		}
		if file.Err != nil {
			note(file.Name, Result{Dataset: file.Dataset, Source: schema.Source{Name: file.Path}}, fmt.Errorf("%w: skipped: %w", ErrRefused, file.Err))
			continue
		}
		if ctx.Err() != nil {
			return last, false, fmt.Errorf("%w: folder %s: stopped before %s", ErrInterrupted, dir, file.Name)
		}
		g, err := f.ingester(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return last, false, fmt.Errorf("%w: folder %s: %w", ErrInterrupted, dir, err)
			}
			f.log.Error("no file of the folder can be synced", "folder", dir, "err", err)
			noStream = err
			note(file.Name, Result{Dataset: file.Dataset, Source: schema.Source{Name: file.Path}}, noStream)
			continue
		}
		one := *g
		one.cfg.Source, one.cfg.Dataset = file.Path, file.Dataset
		res, err := one.sync(ctx)
		last = res
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			if !errors.Is(err, ErrInterrupted) {
				err = fmt.Errorf("%w: %w", ErrInterrupted, err)
			}
			return res, false, fmt.Errorf("folder %s: %s: %w", dir, file.Name, err)
		}
		msg := "file not synced"
		if f.cfg.Every > 0 {
			msg += "; trying again at the next interval"
		}
		f.log.Error(msg, "file", file.Path, "dataset", file.Dataset, "err", err)
		note(file.Name, res, err)
	}
	if worst == nil {
		return last, true, nil
	}
	return worstRes, true, fmt.Errorf("folder %s: %d of %d CSV files not synced (%s); the worst: %w",
		dir, len(notSynced), len(files), strings.Join(notSynced, ", "), worst)
}

// ingester connects the folder run to the stream, once.
func (f *folderRun) ingester(ctx context.Context) (*ingester, error) {
	if f.g == nil {
		g, err := newIngester(ctx, f.cfg, f.nc, f.log, f.stdout, f.stderr)
		if err != nil {
			return nil, err
		}
		f.g = g
	}
	return f.g, nil
}

// reportSkipped prints each skipped file on stderr as "<path>: skipped:
// <why>", once while it stays as it is.
func (f *folderRun) reportSkipped(files []inbox.File) {
	now := map[string]string{}
	for _, file := range files {
		if file.Err == nil {
			continue
		}
		msg := fmt.Sprintf("%s: skipped: %v", file.Path, file.Err)
		now[file.Path] = msg
		if f.reported[file.Path] != msg {
			fmt.Fprintln(f.stderr, msg)
		}
	}
	f.reported = now
}

func (f *folderRun) refused(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrInterrupted, err)
	}
	return fmt.Errorf("%w: %w", ErrRefused, err)
}
