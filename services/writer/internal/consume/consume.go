// Package consume reads the rows stream in order and hands it to the
// writer in group-commit batches: Next blocks for the first message, then
// takes whatever else is already there, up to a batch's worth.
//
// One goroutine fetches through an ephemeral pull consumer (each request
// at most BatchMax messages and PullMaxBytes; see cursor.go) and passes the
// messages on through a channel; while the writer applies a batch (and
// waits for fsync), the fetch goes on. Fetch rather than Consume, because
// the consumer decides when to ask: while the stream grows fast it trails
// the head, so the broker does not keep the blocks it writes in memory
// (see trail.go).
//
// Memory is bounded whatever the stream holds: the fetch's buffer (at
// most BatchMax messages and PullMaxBytes), plus the messages handed over
// and not yet released (the channel and the batch being applied), at most
// BudgetBytes (one larger message still passes, alone), counting each
// message's subject and headers as well as its body.
package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Msg is one stream message as the writer needs it.
type Msg struct {
	Seq     uint64    // stream sequence
	Time    time.Time // stream timestamp
	Subject string
	Header  nats.Header
	Data    []byte
	Pending uint64 // messages in the stream after this one (for the lag)
	// Size is what the message holds: subject, headers and body. The
	// byte budget counts it, so a message of large headers and an empty
	// body is not free.
	Size int
}

// Config says where to start and how much to hold.
type Config struct {
	Stream string
	// StartSeq is the first stream sequence to deliver; 0 or 1 delivers
	// from the first message the stream has.
	StartSeq uint64
	// BatchMax is the largest number of messages Next returns at once.
	BatchMax int
	// PullMaxBytes bounds each pull request (which asks for at most
	// BatchMax messages).
	PullMaxBytes int
	// BudgetBytes bounds the bytes handed out by Next and not yet released.
	BudgetBytes int
}

// Consumer reads every dataset's subject in stream order.
type Consumer struct {
	cfg    Config
	cursor *cursor
	trail  *trail
	ch     chan Msg
	budget *budget
	errLog every
	// lingerFor is batchLinger (tests set more); lingerTimer is Next's,
	// reused (Next is called from one goroutine).
	lingerFor   time.Duration
	lingerTimer *time.Timer
	stop        context.CancelFunc
	ctx         context.Context
	done        chan struct{}
	log         *slog.Logger
}

const (
	// idleFetch is how long a fetch waits at the head for new messages,
	// and so how long a broker gone away may go unnoticed. A fetch has no
	// heartbeat: the client's heartbeat timer keeps each fetch's buffers
	// alive for twice its period, which at a few hundred fetches a second
	// is megabytes.
	idleFetch = 5 * time.Second
	// fetchRetry is the pause after a failed fetch before the next.
	fetchRetry = 250 * time.Millisecond
)

// Start starts reading from cfg.StartSeq.
func Start(ctx context.Context, js jetstream.JetStream, cfg Config, log *slog.Logger) (*Consumer, error) {
	start := max(cfg.StartSeq, 1)
	stream, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", cfg.Stream, err)
	}
	rctx, stop := context.WithCancel(context.Background())
	c := &Consumer{
		cfg:       cfg,
		cursor:    &cursor{stream: stream, next: start},
		trail:     newTrail(cfg.PullMaxBytes, start, stream.CachedInfo().State.LastSeq),
		ch:        make(chan Msg, max(cfg.BatchMax/2, 1)),
		budget:    newBudget(cfg.BudgetBytes),
		lingerFor: batchLinger,
		stop:      stop,
		ctx:       rctx,
		done:      make(chan struct{}),
		log:       log,
	}
	go c.run()
	return c, nil
}

// run fetches until Stop.
func (c *Consumer) run() {
	defer close(c.done)
	for c.ctx.Err() == nil {
		if c.trail.mustWait(time.Now()) && c.waitForGrowth() {
			continue
		}
		if err := c.fetch(); err != nil && c.ctx.Err() == nil {
			// The next fetch creates a consumer again where the last one
			// stopped (after a broker restart...); say so, at most every
			// 10 seconds.
			if c.errLog.allow() {
				c.log.Warn("reading the stream; the consumer recovers by itself", "err", err)
			}
			sleep(c.ctx, fetchRetry)
		}
	}
}

// waitForGrowth waits one poll and reports whether the stream grew
// meanwhile; false (quiet, or unknown) lets the consumer read to the head.
func (c *Consumer) waitForGrowth() bool {
	if !sleep(c.ctx, growthPoll) {
		return false
	}
	info, err := c.cursor.stream.Info(c.ctx)
	if err != nil {
		return false
	}
	return c.trail.grewTo(info.State.LastSeq)
}

// fetch asks for one batch and hands its messages on as they arrive.
func (c *Consumer) fetch() error {
	fctx, cancel := context.WithTimeout(c.ctx, idleFetch)
	defer cancel()
	if err := c.cursor.fetch(fctx, c.cfg.BatchMax, c.cfg.PullMaxBytes, c.read); err != nil {
		return fmt.Errorf("reading %s: %w", c.cfg.Stream, err)
	}
	return nil
}

// read hands one message to the writer's side through the channel, in
// order, blocking while the channel or the byte budget is full.
func (c *Consumer) read(m jetstream.Msg, meta *jetstream.MsgMetadata) {
	msg := Msg{
		Seq: meta.Sequence.Stream, Time: meta.Timestamp, Subject: m.Subject(),
		Header: m.Headers(), Data: m.Data(), Pending: meta.NumPending,
	}
	msg.Size = len(msg.Data) + schema.EnvelopeSize(msg.Subject, msg.Header)
	c.trail.read(msg.Seq, msg.Size, msg.Pending, time.Now())
	if !c.budget.acquire(msg.Size) {
		return
	}
	select {
	case c.ch <- msg:
	case <-c.ctx.Done():
	}
}

// Next appends to dst the next batch: it waits for one message (or ctx),
// then takes those already waiting, up to BatchMax messages and the byte
// budget. While the stream holds more right behind the batch (a backlog,
// or a fetch still arriving), it lingers up to batchLinger for each next
// message, so a backlog is applied in full batches, each one fsync, rather
// than in whatever slice of it had crossed the socket; at the head of the
// stream it never waits. Give the batch back with Release once it is
// applied.
func (c *Consumer) Next(ctx context.Context, dst []Msg) ([]Msg, error) {
	select {
	case m := <-c.ch:
		dst = append(dst, m)
	case <-c.done:
		return dst, errors.New("the stream consumer stopped")
	case <-ctx.Done():
		return dst, ctx.Err()
	}
	held := dst[len(dst)-1].Size
	for len(dst) < c.cfg.BatchMax {
		var m Msg
		select {
		case m = <-c.ch:
		default:
			last := dst[len(dst)-1]
			if last.Pending == 0 || held >= c.cfg.BudgetBytes/2 {
				return dst, nil
			}
			var ok bool
			if m, ok = c.linger(ctx); !ok {
				return dst, nil
			}
		}
		dst = append(dst, m)
		held += m.Size
	}
	return dst, nil
}

// batchLinger is how long Next waits for a message the stream already
// holds: a fetch delivers a full pull in well under a millisecond, and a
// fetch the trailing reader holds back is not worth waiting for.
const batchLinger = 2 * time.Millisecond

// linger waits up to lingerFor for the next message.
func (c *Consumer) linger(ctx context.Context) (Msg, bool) {
	if c.lingerTimer == nil {
		c.lingerTimer = time.NewTimer(c.lingerFor)
	} else {
		c.lingerTimer.Reset(c.lingerFor)
	}
	defer c.lingerTimer.Stop()
	select {
	case m := <-c.ch:
		return m, true
	case <-c.lingerTimer.C:
	case <-c.done:
	case <-ctx.Done():
	}
	return Msg{}, false
}

// Release returns the bytes of an applied batch to the budget.
func (c *Consumer) Release(batch []Msg) {
	n := 0
	for _, m := range batch {
		n += m.Size
	}
	c.budget.release(n)
}

// Stop stops reading, waits for the reader to finish and deletes its
// consumer on the broker.
func (c *Consumer) Stop() {
	c.stop()
	c.budget.close()
	<-c.done
	c.cursor.drop()
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
