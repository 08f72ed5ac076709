// Package publish sends one sync's messages to its dataset's subject, in
// order and each exactly once, as JetStream fast-ingest batches
// (jetstreamext.FastPublisher: the server acks every few hundred stored
// messages instead of each one).
//
// # Exactly once, without Nats-Msg-Id
//
// Batches run in the "gap: fail" mode: what the server stores of a batch
// is always an unbroken prefix of it, and a message that arrives after a
// lost one, or for a batch the server no longer knows (restarted, idle for
// 10 s), is refused. So after any failure the Publisher reads the last
// message stored on the subject, finds it among the messages it holds,
// and publishes the ones after it in a new batch. The first message of
// every batch carries an expected-last-subject-sequence check, so a batch
// starts only right after the message the Publisher believes is last: a
// copy still in flight from the failed batch, or another publisher's
// message, fails the check and the Publisher reads the stream again. A
// last message it cannot place is ErrInterleaved.
//
// # Memory
//
// The Publisher holds each message until the server has acked it (at most
// Options.Window messages and, past the first message, Options.WindowBytes
// bytes of bodies), reusing one buffer per slot, so a Shopify-sized row
// (~1.4 KB with headers) costs the default window ~700 KB whatever the
// size of the file.
//
// # Streams without batch publishing
//
// A stream that does not allow batch publishing (created by an older
// rowpipe and not yet updated by a writer, or on a nats-server before
// 2.14) gets each message on its own, acked before the next one is sent,
// with the same expected-last-subject-sequence check: slower, as exact.
package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Defaults for Options.
const (
	DefaultWindow      = 500
	DefaultWindowBytes = 8 << 20
	DefaultGiveUp      = time.Minute
	DefaultAckTimeout  = 10 * time.Second
	minBackoff         = 100 * time.Millisecond
	maxBackoff         = 5 * time.Second
	// idleCommit is how long a batch may go without a message before the
	// next one commits it first: the server forgets a batch idle for 10 s
	// (a slow source: standard input, a URL).
	idleCommit = 5 * time.Second
	// abandonTimeout bounds committing a batch given up after a failure.
	abandonTimeout = time.Second
	// keepBuffer is the largest slot buffer kept for reuse; a slot that
	// carried a bigger record lets its buffer go once the record is acked.
	keepBuffer = 64 << 10
)

var (
	// ErrInterleaved means the last message on the subject is neither one
	// this Publisher published nor the one it started after: another
	// publisher wrote to the dataset during the sync.
	ErrInterleaved = errors.New("another publisher wrote to the dataset during this sync")
	// ErrGaveUp means publishing kept failing for Options.GiveUp.
	ErrGaveUp = errors.New("gave up publishing")
)

// Options tune a Publisher. Zero values take the defaults.
type Options struct {
	// Window is the most messages unacknowledged at once; the server acks
	// every Window/2 stored messages.
	Window int
	// WindowBytes is the most body bytes unacknowledged at once: a batch
	// that would hold more is committed before the next message.
	WindowBytes int
	// GiveUp is how long failing publishes are retried before an error
	// wrapping ErrGaveUp.
	GiveUp time.Duration
	// AckTimeout is how long an ack may take before the batch is given
	// up, the stream read and the rest published again.
	AckTimeout time.Duration
	// Log receives a line for each retry; nil discards.
	Log *slog.Logger
}

// slot is a message held until it is stored.
type slot struct {
	env schema.Envelope
	msg nats.Msg
}

// Publisher publishes the messages of one sync to one subject, in order.
// It is not safe for concurrent use.
type Publisher struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	nc      *nats.Conn
	subject string
	o       Options
	log     *slog.Logger
	batches bool // the stream allows batch publishing

	// The last message known stored on the subject: its envelope (zero for
	// none or a message that is not rowpipe's) and, when known, its stream
	// sequence. A flow ack tells that a message is stored, not where.
	lastEnv   schema.Envelope
	lastSeq   uint64
	lastKnown bool

	ring  []slot // held messages, oldest at head
	head  int
	n     int
	sent  int // ring[head:head+sent] are in the current batch
	bytes int

	fp     jetstreamext.FastPublisher // the current batch; nil between batches
	fpErr  *asyncErr                  // its asynchronous failure
	added  uint64                     // messages added to it
	addEnv schema.Envelope            // the last one
	addAt  time.Time

	skip    *schema.Envelope // ResumeAfter's message, until it passes
	retries int
}

// asyncErr keeps the first error a batch reports asynchronously.
type asyncErr struct {
	mu  sync.Mutex
	err error
}

func (a *asyncErr) set(err error) {
	a.mu.Lock()
	if a.err == nil {
		a.err = err
	}
	a.mu.Unlock()
}

func (a *asyncErr) get() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// New returns a Publisher of dataset's messages to stream on js. It reads
// whether the stream allows batch publishing and the last message on the
// dataset's subject (see Last).
func New(ctx context.Context, js jetstream.JetStream, stream, dataset string, o Options) (*Publisher, error) {
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.WindowBytes <= 0 {
		o.WindowBytes = DefaultWindowBytes
	}
	if o.GiveUp <= 0 {
		o.GiveUp = DefaultGiveUp
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("bind stream %s: %w", stream, err)
	}
	p := &Publisher{js: js, stream: st, nc: js.Conn(), subject: schema.Subject(dataset), o: o, log: o.Log,
		batches: st.CachedInfo().Config.AllowBatchPublish, ring: make([]slot, o.Window)}
	env, seq, err := p.readLast(ctx)
	if err != nil {
		return nil, err
	}
	p.lastEnv, p.lastSeq, p.lastKnown = env, seq, true
	if !p.batches {
		p.log.Warn("the stream does not allow batch publishing: publishing one message at a time, which is slower; "+
			"start the writer (or stack) once to update the stream, on nats-server 2.14 or later", "stream", stream)
	}
	return p, nil
}

// Last returns the envelope of the last message on the subject when New
// read it; ok is false when there was none, or not a rowpipe message.
func (p *Publisher) Last() (env schema.Envelope, ok bool) {
	return p.lastEnv, p.lastEnv.Event != ""
}

// ResumeAfter makes Publish skip every message up to and including the one
// with envelope env: a sync started again from its source, whose messages
// up to env the stream already holds (Last).
func (p *Publisher) ResumeAfter(env schema.Envelope) { p.skip = &env }

// Batched reports whether the stream allows batch publishing.
func (p *Publisher) Batched() bool { return p.batches }

// LastSeq is the stream sequence of the last message stored: after Flush,
// that of the last message published.
func (p *Publisher) LastSeq() uint64 { return p.lastSeq }

// Retries counts the messages published again after a failure.
func (p *Publisher) Retries() int { return p.retries }

// Publish sends one message with env's headers (schema.Envelope.Headers)
// and body, which it copies: the caller may reuse body at once. It blocks
// while the window is full. It returns an error only when the sync cannot
// go on: ctx is done, publishing failed for Options.GiveUp (ErrGaveUp), a
// permanent refusal (a message over the stream's size limit), or
// ErrInterleaved.
func (p *Publisher) Publish(ctx context.Context, env schema.Envelope, body []byte) error {
	if p.skip != nil {
		switch {
		case env == *p.skip:
			p.skip = nil
		case env.Event == schema.EventEnd || env.Event == schema.EventAbort:
			return fmt.Errorf("%w: the stream's last message of sync %s, %s %d, is none it publishes", ErrInterleaved, env.Sync, p.skip.Event, p.skip.Row)
		}
		return nil
	}
	if p.n > 0 && (p.n == len(p.ring) || p.bytes+len(body) > p.o.WindowBytes) ||
		p.fp != nil && time.Since(p.addAt) > idleCommit {
		if err := p.Flush(ctx); err != nil {
			return err
		}
	}
	p.hold(env, body)
	if err := p.sendHeld(ctx); err != nil {
		return p.recover(ctx, err)
	}
	return nil
}

// Flush commits the current batch: when it returns nil, every message
// published so far is stored.
func (p *Publisher) Flush(ctx context.Context) error {
	for p.fp != nil || p.n > 0 {
		if err := p.commit(ctx); err != nil {
			if err := p.recover(ctx, err); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *Publisher) at(i int) *slot { return &p.ring[(p.head+i)%len(p.ring)] }

// hold copies a message into the next slot.
func (p *Publisher) hold(env schema.Envelope, body []byte) {
	s := p.at(p.n)
	p.n++
	p.bytes += len(body)
	if cap(s.msg.Data) > keepBuffer && len(body) <= keepBuffer {
		s.msg.Data = nil
	}
	s.msg.Subject = p.subject
	s.msg.Data = append(s.msg.Data[:0], body...)
	if env.Event == schema.EventRow && s.env.Event == schema.EventRow && s.env.Sync == env.Sync {
		// A row after a row: only the row index differs, so the slot's
		// header map is reused (nats.go copies headers when it sends).
		s.msg.Header[schema.HeaderRow][0] = strconv.FormatUint(env.Row, 10)
	} else {
		s.msg.Header = nats.Header(env.Headers())
	}
	s.env = env
}

// release drops the k oldest held messages, which are stored.
func (p *Publisher) release(k int) {
	for range k {
		s := p.at(0)
		p.lastEnv, p.lastKnown = s.env, false
		p.bytes -= len(s.msg.Data)
		if cap(s.msg.Data) > keepBuffer {
			s.msg.Data = nil
		}
		p.head = (p.head + 1) % len(p.ring)
		p.n--
		p.sent = max(p.sent-1, 0)
	}
}

// sendHeld sends the held messages not sent yet.
func (p *Publisher) sendHeld(ctx context.Context) error {
	for p.sent < p.n {
		if p.fp == nil && !p.lastKnown {
			if err := p.resync(ctx); err != nil {
				return err
			}
			continue
		}
		s := p.at(p.sent)
		if !p.batches {
			ack, err := p.js.PublishMsg(ctx, &s.msg, jetstream.WithExpectLastSequencePerSubject(p.lastSeq))
			if err != nil {
				p.lastKnown = false
				return err
			}
			p.release(1)
			p.lastSeq, p.lastKnown = ack.Sequence, true
			continue
		}
		var check []jetstreamext.BatchMsgOpt
		if p.fp == nil {
			if err := p.startBatch(); err != nil {
				return err
			}
			check = []jetstreamext.BatchMsgOpt{jetstreamext.WithBatchExpectLastSequencePerSubject(p.lastSeq)}
		}
		ack, err := p.fp.AddMsg(&s.msg, check...)
		if err == nil {
			err = p.fpErr.get()
		}
		if err != nil {
			return err
		}
		p.sent++
		p.added++
		p.addEnv, p.addAt = s.env, time.Now()
		// The batch's messages up to ack.AckSequence are stored; the
		// oldest held one is the batch's message added-sent+1.
		if k := int64(ack.AckSequence) - int64(p.added) + int64(p.sent); k > 0 {
			p.release(int(k))
		}
	}
	return nil
}

// startBatch opens a batch that starts after the last message known stored.
func (p *Publisher) startBatch() error {
	errs := &asyncErr{}
	fp, err := jetstreamext.NewFastPublisher(p.js,
		jetstreamext.FastPublishFlowControl{Flow: uint16(max(len(p.ring)/2, 1)), MaxOutstandingAcks: 2, AckTimeout: p.o.AckTimeout},
		jetstreamext.WithFastPublisherErrorHandler(errs.set))
	if err != nil {
		return fmt.Errorf("start a batch: %w", err)
	}
	p.fp, p.fpErr, p.added = fp, errs, 0
	return nil
}

// commit ends the current batch and checks the server stored all of it.
func (p *Publisher) commit(ctx context.Context) error {
	if p.fp == nil {
		return p.sendHeld(ctx) // held messages a failure left unsent
	}
	ack, err := p.fp.Close(ctx)
	if err == nil {
		err = p.fpErr.get()
	}
	if err == nil && ack.BatchSize != p.added {
		err = fmt.Errorf("the server stored %d of the batch's %d messages", ack.BatchSize, p.added)
	}
	if err != nil {
		return err
	}
	p.release(p.sent)
	p.lastEnv, p.lastSeq, p.lastKnown = p.addEnv, ack.Sequence, true
	p.fp = nil
	return nil
}

// abandon gives up the current batch: what it stored is learnt from the
// stream (resync) before anything else is sent.
func (p *Publisher) abandon(ctx context.Context) {
	if p.fp != nil && !p.fp.IsClosed() {
		// Commit what the server has, and let go of the ack subscription.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
		_, _ = p.fp.Close(actx)
		cancel()
	}
	p.fp, p.sent, p.lastKnown = nil, 0, false
}

// readLast reads the last message on the subject: its envelope (zero for
// none, or a message that is not rowpipe's) and stream sequence (0 for
// none).
func (p *Publisher) readLast(ctx context.Context) (schema.Envelope, uint64, error) {
	m, err := p.stream.GetLastMsgForSubject(ctx, p.subject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return schema.Envelope{}, 0, nil
	case err != nil:
		return schema.Envelope{}, 0, fmt.Errorf("read the last message on %s: %w", p.subject, err)
	}
	env, _ := schema.ParseEnvelope(m.Header)
	return env, m.Sequence, nil
}

// resync reads the last message on the subject and drops the held
// messages up to it: those are stored.
func (p *Publisher) resync(ctx context.Context) error {
	env, seq, err := p.readLast(ctx)
	if err != nil {
		return err
	}
	if env == p.lastEnv && (!p.lastKnown || seq == p.lastSeq) {
		p.lastSeq, p.lastKnown = seq, true
		return nil
	}
	for i := range p.n {
		if p.at(i).env == env {
			p.release(i + 1)
			p.lastSeq, p.lastKnown = seq, true
			return nil
		}
	}
	if p.n > 0 && env.Sync == p.at(0).env.Sync {
		// A message of this sync not given yet: an earlier run's, still in
		// flight when this run read the stream. The held ones are before
		// it, stored; the ones up to it are skipped as they come.
		p.release(p.n)
		p.lastEnv, p.lastSeq, p.lastKnown = env, seq, true
		p.ResumeAfter(env)
		return nil
	}
	return fmt.Errorf("%w: the last message on %s (stream sequence %d: %s of sync %q) is none this ingester published after %s of sync %s",
		ErrInterleaved, p.subject, seq, orNone(env.Event), env.Sync, orNone(p.lastEnv.Event), p.lastEnv.Sync)
}

func orNone(e schema.Event) string {
	if e == "" {
		return "no rowpipe message"
	}
	return string(e)
}

// recover runs after a failure: it gives the batch up, waits for the
// connection, and publishes what the stream does not hold in a new batch,
// with backoff, until that works or GiveUp passes.
func (p *Publisher) recover(ctx context.Context, cause error) error {
	deadline := time.Now().Add(p.o.GiveUp)
	backoff := minBackoff
	for attempt := 1; ; attempt++ {
		p.abandon(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(cause, ErrInterleaved):
			return cause
		case permanent(cause):
			return fmt.Errorf("publish to %s refused: %w", p.subject, cause)
		case time.Now().After(deadline):
			return fmt.Errorf("%w to %s after %s (%d messages unacknowledged): %w", ErrGaveUp, p.subject, p.o.GiveUp, p.n, cause)
		}
		p.log.Warn("publish failed; resuming after the last message the stream holds", "subject", p.subject, "err", cause,
			"unacknowledged", p.n, "attempt", attempt)
		if attempt > 1 {
			if err := sleep(ctx, min(backoff, time.Until(deadline))); err != nil {
				return err
			}
			backoff = min(2*backoff, maxBackoff)
		}
		if err := p.waitConnected(ctx, deadline); err != nil {
			return err
		}
		if cause = p.resync(ctx); cause != nil {
			continue
		}
		p.retries += p.n
		if cause = p.sendHeld(ctx); cause == nil {
			return nil
		}
	}
}

// waitConnected waits for the connection to be up, until deadline (then it
// returns nil and the next publish fails again, which ends in ErrGaveUp).
func (p *Publisher) waitConnected(ctx context.Context, deadline time.Time) error {
	for p.nc.Status() != nats.CONNECTED && time.Now().Before(deadline) {
		if p.nc.IsClosed() {
			return fmt.Errorf("publish to %s: %w", p.subject, nats.ErrConnectionClosed)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// permanent reports errors no retry can fix.
func permanent(err error) bool {
	return errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) ||
		errors.Is(err, nats.ErrMaxPayload) ||
		errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, nats.ErrBadSubject)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
