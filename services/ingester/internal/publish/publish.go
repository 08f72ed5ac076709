// Package publish sends one sync's messages to JetStream asynchronously,
// in order, with a small bounded window of unacknowledged messages, and
// retries what a broken connection or a busy server refused.
//
// # Window and memory
//
// At most Options.Window messages (default 256) and Options.WindowBytes
// bytes of bodies (default 8 MiB) are unacknowledged at once. Each is held
// twice: by the jetstream package until its ack (it keeps every pending
// message) and by the Publisher, which needs the bytes to publish again.
// Both share one buffer per window slot, reused from message to message, so
// with Shopify-sized rows (~1.1 KB) the window costs 256 × ~1.5 KB (body and
// headers) ≈ 400 KB, whatever the size of the file.
//
// # Order
//
// The writer applies a dataset's messages in stream order: it skips copies
// of rows it has (by row index) and fails a sync on a gap, a row stored
// before the one that precedes it. So each message of a sync must be in
// the stream after the message published before it. Acks are retired in
// publish order and normally carry ever higher stream sequences; a
// duplicate (a message JetStream already had, from an earlier run of the
// same sync or from a retry) carries the sequence of the original. When a
// publish fails, every message after it is waited for, then all that
// failed are published again, oldest first.
//
// A lower sequence than the one before is not by itself a broken order. A
// resumed sync re-publishes rows that may straddle the broker's duplicate
// window: the older ones are stored again, at new sequences, while the
// younger ones come back as duplicates at their originals' lower
// sequences, and those originals follow the earlier run's copies of the
// rows before them. So the publisher then reads the stream: if the message
// on its subject right before the lower sequence is the one published
// before it (passing over what the writer skips: other subjects, deleted
// sequences, begins of the same sync, this publisher's own earlier
// messages), the writer meets the two in order. If not, a later message
// was stored while an earlier one was lost (when a connection breaks with
// messages in flight, in this run or in an interrupted one), and Publish
// returns ErrOrderBroken: the sync cannot be completed and must be started
// again under a new sync id.
//
// The copies of an earlier run are trusted to be in order among themselves
// where this run's acks do not show otherwise: acks see only the duplicate
// window. A gap older than that is the writer's to find, and it fails the
// sync loudly.
package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Defaults for Options.
const (
	DefaultWindow      = 256
	DefaultWindowBytes = 8 << 20
	DefaultGiveUp      = time.Minute
	DefaultAckTimeout  = 10 * time.Second
	minBackoff         = 100 * time.Millisecond
	maxBackoff         = 5 * time.Second
	// keepBuffer is the largest slot buffer kept for reuse; a slot that
	// carried a bigger record lets its buffer go once the record is acked,
	// so a few huge records do not keep the window big.
	keepBuffer = 64 << 10
)

var (
	// ErrOrderBroken means messages of the sync were stored out of order
	// (a later one before an earlier one that was lost): the writer will
	// fail this sync, which must be published again under a new sync id.
	ErrOrderBroken = errors.New("the stream holds this sync's messages out of order after a connection failure")
	// ErrGaveUp means publishing kept failing for Options.GiveUp.
	ErrGaveUp = errors.New("gave up publishing")
	// errNotSent marks messages held back while an earlier one failed.
	errNotSent = errors.New("not sent: an earlier message failed")
)

// Options tune a Publisher. Zero values take the defaults.
type Options struct {
	// Window is the most messages unacknowledged at once. The JetStream
	// context must allow at least as many (see NewJetStream).
	Window int
	// WindowBytes is the most body bytes unacknowledged at once.
	WindowBytes int
	// GiveUp is how long a failing publish is retried before Publish
	// returns an error wrapping ErrGaveUp.
	GiveUp time.Duration
	// Log receives a line for each retry; nil discards.
	Log *slog.Logger
}

// NewJetStream returns a JetStream context for publishers of window
// messages: the jetstream package's own bound on pending publishes (default
// 4000) is set to window, and an ack that does not come within ackTimeout
// fails its message (which is then published again), so nothing waits
// forever on an ack lost with a connection.
func NewJetStream(nc *nats.Conn, window int, ackTimeout time.Duration) (jetstream.JetStream, error) {
	if window <= 0 {
		window = DefaultWindow
	}
	if ackTimeout <= 0 {
		ackTimeout = DefaultAckTimeout
	}
	return jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(window),
		jetstream.WithPublishAsyncTimeout(ackTimeout))
}

// seqSpan is a range of stream sequences, first to last, each acked to one
// of a Publisher's messages, in publish order: what the stream holds there
// is known without reading it.
type seqSpan struct{ first, last uint64 }

type slot struct {
	msg   nats.Msg
	event schema.Event // the event msg.Header was built for
	fut   jetstream.PubAckFuture
	ack   *jetstream.PubAck
	err   error
}

// Publisher publishes the messages of one sync to one subject, in order.
// It is not safe for concurrent use.
type Publisher struct {
	js      jetstream.JetStream
	nc      *nats.Conn
	subject string
	dataset string
	o       Options
	log     *slog.Logger
	noRetry []jetstream.PublishOpt // a slice, so passing it allocates nothing

	ring    []slot
	head    int
	n       int
	bytes   int
	last    jetstream.PubAck
	lastID  string // the Nats-Msg-Id of the message last retired
	retired uint64
	acked   [8]seqSpan       // the latest spans of sequences acked one after another, a ring
	latest  int              // the index in acked of the span last extended
	stream  jetstream.Stream // read by precededBy; nil until it first has to
	retries int
}

// New returns a Publisher of dataset's messages on js (see NewJetStream).
func New(js jetstream.JetStream, dataset string, o Options) *Publisher {
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.WindowBytes <= 0 {
		o.WindowBytes = DefaultWindowBytes
	}
	if o.GiveUp <= 0 {
		o.GiveUp = DefaultGiveUp
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Publisher{
		js: js, nc: js.Conn(), subject: schema.Subject(dataset), dataset: dataset, o: o, log: log,
		// The jetstream package would publish a message again by itself
		// after "no responders", after later ones: out of order. Retries
		// are ours, in order.
		noRetry: []jetstream.PublishOpt{jetstream.WithRetryAttempts(0)},
		ring:    make([]slot, o.Window),
	}
}

// Publish sends one message with env's headers (schema.Envelope.Headers)
// and body, which it copies: the caller may reuse body at once. It blocks
// while the window is full. It returns an error only when the sync cannot
// go on: ctx is done, publishing failed for Options.GiveUp (ErrGaveUp), a
// permanent refusal (a message over the stream's size limit), or
// ErrOrderBroken.
func (p *Publisher) Publish(ctx context.Context, env schema.Envelope, body []byte) error {
	for p.n > 0 && (p.n == len(p.ring) || p.bytes+len(body) > p.o.WindowBytes) {
		if err := p.retireOldest(ctx); err != nil {
			return err
		}
	}
	s := p.at(p.n)
	p.n++
	p.bytes += len(body)
	if cap(s.msg.Data) > keepBuffer && len(body) <= keepBuffer {
		s.msg.Data = nil
	}
	s.msg.Subject = p.subject
	s.msg.Data = append(s.msg.Data[:0], body...)
	p.setHeaders(s, env)
	s.ack, s.err, s.fut = nil, nil, nil
	p.send(s)
	if s.err != nil {
		return p.recover(ctx)
	}
	return nil
}

// Flush waits until every message published so far is acknowledged,
// retrying as Publish does.
func (p *Publisher) Flush(ctx context.Context) error {
	for p.n > 0 {
		if err := p.retireOldest(ctx); err != nil {
			return err
		}
	}
	return nil
}

// LastAck is the ack of the last message retired: after Flush, that of the
// last message published. Its Sequence is the stream sequence that message
// has (or had, for a duplicate).
func (p *Publisher) LastAck() jetstream.PubAck { return p.last }

// Retries counts the messages published again after a failure.
func (p *Publisher) Retries() int { return p.retries }

// setHeaders puts env's headers on the slot's message. A row after a row
// reuses the slot's header map, changing only the two values that differ
// (the message id, from schema, and the row index), which saves a map and
// five allocations per row; TestRowHeadersAreSchemas checks the result
// equals schema's Envelope.Headers. The map is free to change: nats.go
// copies the headers into its write buffer when the message is published.
func (p *Publisher) setHeaders(s *slot, env schema.Envelope) {
	h := s.msg.Header
	if env.Event != schema.EventRow || s.event != schema.EventRow || h[schema.HeaderSync][0] != env.Sync {
		s.msg.Header = nats.Header(env.Headers())
		s.event = env.Event
		return
	}
	h[schema.HeaderMsgID][0] = env.MsgID(p.dataset)
	h[schema.HeaderRow][0] = strconv.FormatUint(env.Row, 10)
}

func (p *Publisher) at(i int) *slot { return &p.ring[(p.head+i)%len(p.ring)] }

func (p *Publisher) send(s *slot) {
	if st := p.nc.Status(); st != nats.CONNECTED {
		// Never let a message wait in the client's reconnect buffer: it
		// would be sent after reconnecting, possibly after a message lost
		// with the old connection.
		s.err = fmt.Errorf("nats connection %s", st)
		return
	}
	s.fut, s.err = p.js.PublishMsgAsync(&s.msg, p.noRetry...)
}

// wait resolves s: its ack or its error. Only ctx ending is returned.
func (p *Publisher) wait(ctx context.Context, s *slot) error {
	if s.ack != nil || s.err != nil {
		return nil
	}
	select {
	case ack := <-s.fut.Ok():
		s.ack = ack
	case err := <-s.fut.Err():
		s.err = err
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

func (p *Publisher) retireOldest(ctx context.Context) error {
	s := p.at(0)
	if err := p.wait(ctx, s); err != nil {
		return err
	}
	if s.err != nil {
		return p.recover(ctx)
	}
	return p.pop(ctx)
}

// pop retires the oldest message, which has its ack.
func (p *Publisher) pop(ctx context.Context) error {
	s := p.at(0)
	id := s.msg.Header.Get(schema.HeaderMsgID)
	if p.retired > 0 && s.ack.Sequence <= p.last.Sequence {
		if err := p.checkBehind(ctx, s, id); err != nil {
			return err
		}
	}
	if a := &p.acked[p.latest]; p.retired > 0 && s.ack.Sequence == a.last+1 {
		a.last = s.ack.Sequence
	} else {
		p.latest = (p.latest + 1) % len(p.acked)
		p.acked[p.latest] = seqSpan{s.ack.Sequence, s.ack.Sequence}
	}
	p.last = *s.ack
	p.lastID = id
	p.retired++
	p.bytes -= len(s.msg.Data)
	s.fut, s.ack = nil, nil
	if cap(s.msg.Data) > keepBuffer {
		s.msg.Data = nil
	}
	p.head = (p.head + 1) % len(p.ring)
	p.n--
	return nil
}

// checkBehind runs when s, whose message id is id, was acked with a
// stream sequence below that of the message published before it: it
// returns nil if the stream holds that message right before s's sequence
// too (see Order in the package documentation), else ErrOrderBroken.
func (p *Publisher) checkBehind(ctx context.Context, s *slot, id string) error {
	seq := s.ack.Sequence
	ok, err := p.precededBy(ctx, s.ack.Stream, seq, p.lastID, s.msg.Header.Get(schema.HeaderSync))
	if ok {
		p.log.Debug("acked below the message published before it, which the stream holds right before it: in order",
			"subject", p.subject, "msg_id", id, "seq", seq, "previous", p.lastID, "previous_seq", p.last.Sequence)
		return nil
	}
	broken := fmt.Errorf("%w: message %s has stream sequence %d, below %d of %s published before it, and the stream does not hold %[5]s right before it",
		ErrOrderBroken, id, seq, p.last.Sequence, p.lastID)
	if err != nil {
		return fmt.Errorf("%w (reading the stream to check: %w)", broken, err)
	}
	return broken
}

// ackedSpan returns the first sequence of the span of p.acked that holds
// seq, if one does.
func (p *Publisher) ackedSpan(seq uint64) (first uint64, ok bool) {
	for _, a := range p.acked {
		if a.first != 0 && a.first <= seq && seq <= a.last {
			return a.first, true
		}
	}
	return 0, false
}

// maxLookBack bounds the stream reads of one precededBy.
const maxLookBack = 64

// precededBy reports whether the last message on the publisher's subject
// before seq in stream is the one with id prev, passing over what changes
// nothing for the writer once it has prev: messages of other subjects,
// deleted sequences, begins of sync (a resume, to the writer), and copies
// of messages this Publisher published before prev (in a span of p.acked:
// a resumed sync re-publishing an earlier resume's copies). It gives up
// (false) after maxLookBack reads.
func (p *Publisher) precededBy(ctx context.Context, stream string, seq uint64, prev, sync string) (bool, error) {
	if p.stream == nil || p.stream.CachedInfo().Config.Name != stream {
		st, err := p.js.Stream(ctx, stream)
		if err != nil {
			return false, fmt.Errorf("look up stream %s: %w", stream, err)
		}
		p.stream = st
	}
	begin := schema.Envelope{Event: schema.EventBegin, Sync: sync}.MsgID(p.dataset)
	reads := 0
	for q := seq - 1; q > 0; q-- {
		if first, ok := p.ackedSpan(q); ok {
			q = first // and on to first-1
			continue
		}
		if reads == maxLookBack {
			return false, nil
		}
		reads++
		m, err := p.stream.GetMsg(ctx, q)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("get message %d of stream %s: %w", q, stream, err)
		}
		if m.Subject != p.subject {
			continue
		}
		switch m.Header.Get(schema.HeaderMsgID) {
		case prev:
			return true, nil
		case begin:
			continue
		default:
			return false, nil
		}
	}
	return false, nil
}

// recover runs when the oldest unretired message failed: it waits for all
// the others, retires what was stored in order, and publishes the rest
// again, oldest first, with backoff, until all are stored or GiveUp passes.
func (p *Publisher) recover(ctx context.Context) error {
	deadline := time.Now().Add(p.o.GiveUp)
	backoff := minBackoff
	for attempt := 1; ; attempt++ {
		for i := range p.n {
			if s := p.at(i); s.fut != nil {
				if err := p.wait(ctx, s); err != nil {
					return err
				}
			}
		}
		for p.n > 0 && p.at(0).ack != nil {
			if err := p.pop(ctx); err != nil {
				return err
			}
		}
		if p.n == 0 {
			return nil
		}
		cause := p.at(0).err
		if permanent(cause) {
			return fmt.Errorf("publish to %s refused: %w", p.subject, cause)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w to %s after %s (%d messages unacknowledged): %w", ErrGaveUp, p.subject, p.o.GiveUp, p.n, cause)
		}
		p.log.Warn("publish failed; retrying in order", "subject", p.subject, "err", cause,
			"unacknowledged", p.n, "attempt", attempt, "backoff", backoff)
		if err := sleep(ctx, min(backoff, time.Until(deadline))); err != nil {
			return err
		}
		backoff = min(2*backoff, maxBackoff)
		if err := p.waitConnected(ctx, deadline); err != nil {
			return err
		}
		resend := true
		for i := range p.n {
			s := p.at(i)
			if s.ack != nil {
				continue // stored; its sequence is checked when it is retired
			}
			s.fut, s.err = nil, nil
			if !resend {
				s.err = errNotSent
				continue
			}
			p.retries++
			p.send(s)
			resend = s.err == nil
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
		errors.Is(err, jetstream.ErrJetStreamPublisherClosed) ||
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
