package ingester

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/ingester/internal/csvsource"
	"github.com/rowpipe/rowpipe/services/ingester/internal/datasetstate"
	"github.com/rowpipe/rowpipe/services/ingester/internal/progress"
	"github.com/rowpipe/rowpipe/services/ingester/internal/publish"
)

// maxPrinted bounds the reject lines printed on stderr; all of them are
// published (and kept by the writer) whatever their number.
const maxPrinted = 100

// abortTimeout bounds publishing the abort of an interrupted sync.
const abortTimeout = 10 * time.Second

// syncRun is one sync in progress.
type syncRun struct {
	g    *ingester
	in   *csvsource.Input
	rd   *csvsource.Reader
	enc  *schema.RecordEncoder
	pub  *publish.Publisher
	prog *progress.Progress
	sync string

	rows     uint64
	rejected uint64
	printed  int
	strict   *csvsource.RowError // the first reject, once --strict has aborted the sync
	buf      []byte
}

// sync runs one sync of the source.
func (g *ingester) sync(ctx context.Context) (res Result, err error) {
	start := time.Now()
	cfg := g.cfg
	res = Result{Dataset: cfg.Dataset}

	// 1. Open the source and read its header: a source refused here has
	//    published nothing.
	in, err := csvsource.Open(ctx, cfg.Source, csvsource.OpenOptions{Stdin: cfg.Stdin, HTTPClient: cfg.HTTPClient})
	if err != nil {
		return res, g.refused(ctx, err)
	}
	defer in.Close()
	res.Source = schema.Source{Name: in.Name, Size: in.Size}
	preHash, err := in.PreHash(ctx)
	if err != nil {
		return res, g.refused(ctx, err)
	}
	res.Source.SHA256 = preHash
	rd, err := csvsource.NewReader(in, in.Name, g.csv)
	if err != nil {
		return res, g.refused(ctx, err)
	}
	fields, renamed := schema.UniqueFields(rd.Header())
	for _, rn := range renamed {
		fmt.Fprintln(g.stderr, renameLine(in.Name, rd.Line(), rn))
	}
	enc, err := schema.NewRecordEncoder(fields)
	if err != nil {
		return res, g.refused(ctx, fmt.Errorf("%s:%d: header: %w", in.Name, rd.Line(), err))
	}
	if _, err := schema.ValidateIndexColumns(fields, cfg.Index); err != nil {
		return res, g.refused(ctx, fmt.Errorf("%s:%d: --index: %w", in.Name, rd.Line(), err))
	}

	// 2. What the writer says: unchanged, or an interrupted sync to resume.
	var state schema.DatasetState
	err = retry(ctx, cfg.PublishGiveUp, g.log, "read the dataset state", func(ctx context.Context) error {
		state, _, err = datasetstate.Get(ctx, g.kv, cfg.Dataset)
		return err
	})
	if err != nil {
		return res, err
	}
	if cur := state.Current; preHash != "" && cur != nil && cur.SHA256 == preHash {
		res.Outcome, res.Generation, res.Rows, res.Rejected = OutcomeUnchanged, cur.Generation, cur.Count, cur.Rejected
		res.Sync, res.Duration = cur.Sync, time.Since(start)
		g.log.Info("source unchanged since the current generation; nothing published",
			"dataset", cfg.Dataset, "source", in.Name, "generation", cur.Generation, "sha256", preHash)
		fmt.Fprintln(g.stdout, res.Summary())
		return res, nil
	}
	// The stream's last message on the dataset: when it belongs to the
	// interrupted sync of the same source, that sync goes on right after it.
	var pub *publish.Publisher
	err = retry(ctx, cfg.PublishGiveUp, g.log, "read the stream", func(ctx context.Context) (err error) {
		pub, err = publish.New(ctx, g.js, cfg.Stream, cfg.Dataset, publish.Options{Window: cfg.PublishWindow,
			GiveUp: cfg.PublishGiveUp, AckTimeout: cfg.PublishAckTimeout, Log: g.log})
		return err
	})
	if err != nil {
		return res, err
	}
	s := &syncRun{g: g, in: in, rd: rd, enc: enc, pub: pub, sync: schema.NewSyncID(), buf: make([]byte, 0, 4096)}
	last, _ := pub.Last()
	if b := state.Building; preHash != "" && b != nil && b.SHA256 == preHash && last.Sync == b.Sync && last.Event != schema.EventAbort {
		s.sync, res.Resumed = b.Sync, true
		pub.ResumeAfter(last)
		g.log.Info("resuming an interrupted sync of the same source after the last message the stream holds",
			"dataset", cfg.Dataset, "sync", b.Sync, "generation", b.Generation, "after", last.Event, "row", last.Row)
	}
	res.Sync = s.sync
	if err := g.checkRoom(ctx, in, fields, s.sync); err != nil {
		return res, err
	}

	var waiter *datasetstate.Waiter
	if cfg.Wait { // before begin, so the outcome cannot slip by
		if waiter, err = datasetstate.Watch(ctx, g.kv, cfg.Dataset, g.log); err != nil {
			return res, err
		}
		defer waiter.Stop()
	}

	// 3. begin (skipped when resuming). Its stream sequence is the
	//    generation number.
	begin := schema.Begin{Version: schema.EnvelopeVersion, Dataset: cfg.Dataset, Sync: s.sync, Mode: cfg.Mode,
		Fields: fields, Renamed: renamed, Index: cfg.Index, Source: res.Source, StartedAt: time.Now().UTC()}
	if err := begin.Check(); err != nil { // the writer's bounds: it would refuse this begin
		return res, g.refused(ctx, fmt.Errorf("%s:%d: header: %w", in.Name, rd.Line(), err))
	}
	if err := s.publishJSON(ctx, schema.EventBegin, 0, begin); err != nil {
		res, err = s.fail(ctx, res, start, err)
		return res, err
	}
	if err := s.pub.Flush(ctx); err != nil {
		res, err = s.fail(ctx, res, start, err)
		return res, err
	}
	res.Generation = s.pub.LastSeq()
	switch {
	case res.Resumed && state.Building.Generation != 0:
		res.Generation = state.Building.Generation
	case cfg.Mode == schema.ModeAppend && state.Current != nil:
		res.Generation = state.Current.Generation
	}
	g.log.Info("sync started", "dataset", cfg.Dataset, "sync", s.sync, "generation", res.Generation,
		"source", in.Name, "mode", cfg.Mode, "fields", len(fields))

	// 4. The rows.
	plog := g.log
	if cfg.Progress == "off" {
		plog = nil // no progress lines; rejects are still printed
	}
	s.prog = progress.Start(progress.Options{Bar: g.bar, Writer: g.stderr, Log: plog,
		Label: cfg.Dataset + " <- " + in.Name, Total: in.Size, BytesRead: in.BytesRead})
	err = s.rowsLoop(ctx)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err() // stopped while a read was blocked, then the source ended
	}
	s.prog.Stop()
	res.Rows, res.Rejected, res.Retries = s.rows, s.rejected, s.pub.Retries()
	if err != nil {
		res, err = s.fail(ctx, res, start, err)
		return res, err
	}

	// 5. The source's hash, now that all of it is read.
	sum := in.SHA256()
	if preHash != "" && sum != preHash {
		err = fmt.Errorf("%s changed while it was being read (SHA-256 %s before, %s after); run the ingest again", in.Name, preHash, sum)
	} else if err = in.CheckUnchanged(); err == nil {
		res.Source.SHA256, res.Source.Size = sum, in.BytesRead()
	}
	if err != nil {
		res, err = s.fail(ctx, res, start, err)
		return res, err
	}

	// 6. end (or abort).
	switch {
	case s.strict != nil:
		if err := s.pub.Flush(ctx); err != nil {
			res, err = s.fail(ctx, res, start, err)
			return res, err
		}
		res.Outcome, res.Reason = schema.OutcomeAborted, "--strict: "+s.strict.Error()
		if waiter != nil {
			if out, werr := waiter.Wait(ctx, s.sync, cfg.WaitTimeout); werr == nil {
				res.Outcome = out.Outcome
			}
		}
		res.Duration = time.Since(start)
		fmt.Fprintln(g.stdout, res.Summary())
		return res, fmt.Errorf("%w: %s: %d rows rejected and --strict is set, so the sync was aborted and the current generation stays; first: %v",
			ErrRefused, in.Name, s.rejected, s.strict)

	case preHash == "" && state.Current != nil && state.Current.SHA256 == sum:
		// A URL or stdin whose bytes turn out to be the current generation's.
		err := s.publishJSON(ctx, schema.EventAbort, 0, schema.Abort{Code: schema.AbortUnchanged,
			Reason: "the source's SHA-256 equals the current generation's"})
		if err == nil {
			err = s.pub.Flush(ctx)
		}
		if err != nil {
			res, err = s.fail(ctx, res, start, err)
			return res, err
		}
		cur := state.Current
		res.Outcome, res.Generation, res.Rows, res.Rejected = OutcomeUnchanged, cur.Generation, cur.Count, cur.Rejected
		res.Duration = time.Since(start)
		g.log.Info("source unchanged since the current generation; sync aborted", "dataset", cfg.Dataset, "sha256", sum)
		fmt.Fprintln(g.stdout, res.Summary())
		return res, nil
	}
	end := schema.End{Rows: s.rows, Rejected: s.rejected, Source: res.Source}
	err = s.publishJSON(ctx, schema.EventEnd, 0, end)
	if err == nil {
		err = s.pub.Flush(ctx)
	}
	res.Retries = s.pub.Retries()
	if err != nil {
		res, err = s.fail(ctx, res, start, err)
		return res, err
	}
	g.log.Info("sync published", "dataset", cfg.Dataset, "sync", s.sync, "rows", s.rows, "rejected", s.rejected,
		"seconds", time.Since(start).Seconds(), "retries", s.pub.Retries(), "batched", s.pub.Batched())

	// 7. --wait: what the writer made of it.
	res.Outcome = OutcomePublished
	if waiter != nil {
		out, err := waiter.Wait(ctx, s.sync, cfg.WaitTimeout)
		if err != nil {
			res.Duration = time.Since(start)
			fmt.Fprintln(g.stdout, res.Summary())
			if ctx.Err() != nil {
				err = fmt.Errorf("%w while waiting for the writer: %w", ErrInterrupted, err)
			}
			return res, err
		}
		res.Outcome, res.Reason = out.Outcome, out.Reason
		if out.Generation != 0 {
			res.Generation = out.Generation
		}
		res.Rows, res.Rejected = out.Rows, out.Rejected
		if out.Outcome != schema.OutcomeCommitted {
			res.Duration = time.Since(start)
			fmt.Fprintln(g.stdout, res.Summary())
			return res, fmt.Errorf("the writer did not commit sync %s of dataset %s: %s: %s", s.sync, cfg.Dataset, out.Outcome, out.Reason)
		}
	}
	res.Duration = time.Since(start)
	fmt.Fprintln(g.stdout, res.Summary())
	return res, nil
}

// rowsLoop reads every record and publishes it (or its rejection).
func (s *syncRun) rowsLoop(ctx context.Context) error {
	done := ctx.Done()
	for {
		select {
		case <-done:
			return ctx.Err()
		default:
		}
		rec, err := s.rd.Read()
		if err != nil {
			if err == io.EOF {
				return nil
			}
			if re := asRowError(err); re != nil {
				if err := s.reject(ctx, re); err != nil {
					return err
				}
				continue
			}
			return err // the source failed half-way
		}
		var re *csvsource.RowError
		buf, err := s.enc.Append(s.buf[:0], rec)
		if err != nil {
			var fe *schema.FieldError
			if !errors.As(err, &fe) {
				return err
			}
			re = s.rd.RowError(csvsource.ErrInvalidUTF8, fe.Column, fmt.Sprintf("field %d (%s): %v", fe.Column, fe.Field, fe.Err))
		} else if len(buf) > schema.MaxRecordBytes {
			re = s.rd.RowError(csvsource.ErrTooLarge, 0, fmt.Sprintf("%d bytes as JSON, at most %d", len(buf), schema.MaxRecordBytes))
		}
		s.buf = buf[:0]
		if re != nil {
			if err := s.reject(ctx, re); err != nil {
				return err
			}
			continue
		}
		if s.strict != nil {
			continue // aborted: read on only to report every bad row
		}
		s.rows++
		if err := s.pub.Publish(ctx, schema.Envelope{Event: schema.EventRow, Sync: s.sync, Row: s.rows}, buf); err != nil {
			return err
		}
		s.prog.Row()
	}
}

// asRowError returns err's *csvsource.RowError, or nil. (A function of its
// own so that the pointer errors.As needs escapes only for a bad row.)
func asRowError(err error) *csvsource.RowError {
	var re *csvsource.RowError
	if errors.As(err, &re) {
		return re
	}
	return nil
}

// reject reports a bad row on stderr and in the stream; with --strict the
// first one aborts the sync.
func (s *syncRun) reject(ctx context.Context, re *csvsource.RowError) error {
	s.rejected++
	s.prog.Reject()
	switch {
	case s.printed < maxPrinted:
		s.prog.Println(re.Error())
	case s.printed == maxPrinted:
		s.prog.Println(fmt.Sprintf("%s: more rejected rows are not shown here; the summary counts them all", re.File))
	}
	s.printed++
	if s.strict != nil {
		return nil
	}
	if err := s.publishJSON(ctx, schema.EventReject, uint64(re.Line), re.Reject()); err != nil {
		return err
	}
	if s.g.cfg.Strict {
		s.strict = re
		return s.publishJSON(ctx, schema.EventAbort, 0, schema.Abort{Code: schema.AbortStrict, Reason: re.Error()})
	}
	return nil
}

func (s *syncRun) publishJSON(ctx context.Context, ev schema.Event, row uint64, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode %s: %w", ev, err)
	}
	return s.pub.Publish(ctx, schema.Envelope{Event: ev, Sync: s.sync, Row: row}, b)
}

// fail ends a sync that cannot complete: it aborts it in the stream when it
// can (so the writer discards it at once), prints the summary, and returns
// res and err updated: a context that ended gives ErrInterrupted.
func (s *syncRun) fail(ctx context.Context, res Result, start time.Time, err error) (Result, error) {
	res.Outcome, res.Reason = schema.OutcomeFailed, err.Error()
	if s.prog != nil {
		res.Rows, res.Rejected = s.rows, s.rejected
	}
	code := schema.AbortFailed
	switch {
	case ctx.Err() != nil:
		res.Outcome, res.Reason, code = OutcomeInterrupted, "interrupted", schema.AbortInterrupted
		err = fmt.Errorf("%w: sync %s of dataset %s aborted after %d rows", ErrInterrupted, s.sync, s.g.cfg.Dataset, s.rows)
	case errors.Is(err, publish.ErrGaveUp) && strings.Contains(err.Error(), "maximum bytes exceeded"):
		code = ""
		err = fmt.Errorf("%w; the stream %s is full (STREAM_MAX_BYTES): the writer purges superseded syncs after each commit; is it running?", err, s.g.cfg.Stream)
	case errors.Is(err, publish.ErrInterleaved):
		code = "" // the sync is no longer the last on the subject: an abort would land outside it
	case errors.Is(err, publish.ErrGaveUp):
		// The broker is out of reach: no abort can get through. The sync
		// stays building in the writer, and running the same command again
		// resumes it.
		code = ""
		if s.in.Kind == csvsource.File {
			err = fmt.Errorf("%w; run the same command again to resume sync %s", err, s.sync)
		}
	}
	if code != "" {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		body, _ := json.Marshal(schema.Abort{Code: code, Reason: res.Reason})
		aerr := s.pub.Publish(actx, schema.Envelope{Event: schema.EventAbort, Sync: s.sync}, body)
		if aerr == nil {
			aerr = s.pub.Flush(actx)
		}
		if aerr != nil {
			s.g.log.Warn("could not publish the abort of the sync", "sync", s.sync, "err", aerr)
		}
	}
	res.Duration = time.Since(start)
	fmt.Fprintln(s.g.stdout, res.Summary())
	return res, err
}

// refused classifies an error from opening or reading the start of the
// source: the context ending is an interruption, anything else refuses the
// input (exit 3) with nothing published.
func (g *ingester) refused(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrInterrupted, err)
	}
	return fmt.Errorf("%w: %w", ErrRefused, err)
}

func renameLine(file string, line int, rn schema.Rename) string {
	if rn.From == "" {
		return fmt.Sprintf("%s:%d: header column %d has no name; it is called %q", file, line, rn.Column, rn.To)
	}
	return fmt.Sprintf("%s:%d: header column %d repeats the name %q; it is called %q", file, line, rn.Column, rn.From, rn.To)
}
