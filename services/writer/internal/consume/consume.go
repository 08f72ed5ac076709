// Package consume reads the rows stream in order with an ordered consumer
// and hands it to the writer in group-commit batches: Next blocks for the
// first message, then takes whatever else is already there, up to a
// batch's worth.
//
// The ordered consumer's Consume delivers each message to a callback that
// passes it on through a channel; while the writer applies a batch (and
// waits for fsync), the next pull requests are already answered. The
// callback may block: the client only buffers what its pull requests asked
// for (at most BatchMax messages, each request at most PullMaxBytes), in a
// subscription queue far larger than that, so nothing is dropped as a slow
// consumer. (The Messages iterator, whose buffer is exactly BatchMax, was
// seen dropping messages that way; Fetch recreates an ordered consumer on
// every call.)
//
// Memory is bounded whatever the stream holds: the client's buffer (at
// most BatchMax messages), plus the messages handed over and not yet
// released (the channel and the batch being applied), at most BudgetBytes
// (one larger message still passes, alone).
package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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

// Consumer is a running ordered consumer on every dataset's subject.
type Consumer struct {
	cfg    Config
	cons   jetstream.Consumer
	ch     chan Msg
	budget *budget
	cc     jetstream.ConsumeContext
	errLog every
	stop   context.CancelFunc
	ctx    context.Context
	log    *slog.Logger
}

// Start creates the ordered consumer and starts reading.
func Start(ctx context.Context, js jetstream.JetStream, cfg Config, log *slog.Logger) (*Consumer, error) {
	occ := jetstream.OrderedConsumerConfig{FilterSubjects: []string{schema.AllSubjects}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if cfg.StartSeq > 1 {
		occ.DeliverPolicy, occ.OptStartSeq = jetstream.DeliverByStartSequencePolicy, cfg.StartSeq
	}
	cons, err := js.OrderedConsumer(ctx, cfg.Stream, occ)
	if err != nil {
		return nil, fmt.Errorf("ordered consumer on %s: %w", cfg.Stream, err)
	}
	rctx, stop := context.WithCancel(context.Background())
	c := &Consumer{
		cfg:    cfg,
		cons:   cons,
		ch:     make(chan Msg, max(cfg.BatchMax/2, 1)),
		budget: newBudget(cfg.BudgetBytes),
		stop:   stop,
		ctx:    rctx,
		log:    log,
	}
	cc, err := cons.Consume(c.read,
		jetstream.PullMaxMessagesWithBytesLimit(cfg.BatchMax, cfg.PullMaxBytes),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			// The ordered consumer recovers by itself (it recreates its
			// consumer after the missing heartbeats of a long stall, a
			// broker restart...); say so, at most every 10 seconds.
			if c.ctx.Err() == nil && c.errLog.allow() {
				log.Warn("reading the stream; the consumer recovers by itself", "err", err)
			}
		}))
	if err != nil {
		stop()
		return nil, fmt.Errorf("consume %s: %w", cfg.Stream, err)
	}
	c.cc = cc
	return c, nil
}

// read hands each message to the writer's side through the channel, in
// order; it runs on the consumer's delivery goroutine and blocks there
// while the channel or the byte budget is full. Blocking is safe: the
// client buffers at most what its pull requests asked for.
func (c *Consumer) read(m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		c.log.Warn("a message without JetStream metadata", "subject", m.Subject(), "err", err)
		return
	}
	msg := Msg{
		Seq: meta.Sequence.Stream, Time: meta.Timestamp, Subject: m.Subject(),
		Header: m.Headers(), Data: m.Data(), Pending: meta.NumPending,
	}
	if !c.budget.acquire(len(msg.Data)) {
		return
	}
	select {
	case c.ch <- msg:
	case <-c.ctx.Done():
	}
}

// Next appends to dst the next batch: it waits for one message (or ctx),
// then takes those already waiting, up to BatchMax messages and the byte
// budget. Give the batch back with Release once it is applied.
func (c *Consumer) Next(ctx context.Context, dst []Msg) ([]Msg, error) {
	select {
	case m, ok := <-c.ch:
		if !ok {
			return dst, errors.New("the stream consumer stopped")
		}
		dst = append(dst, m)
	case <-ctx.Done():
		return dst, ctx.Err()
	}
	for len(dst) < c.cfg.BatchMax {
		select {
		case m, ok := <-c.ch:
			if !ok {
				return dst, nil
			}
			dst = append(dst, m)
		default:
			return dst, nil
		}
	}
	return dst, nil
}

// Release returns the bytes of an applied batch to the budget.
func (c *Consumer) Release(batch []Msg) {
	n := 0
	for _, m := range batch {
		n += len(m.Data)
	}
	c.budget.release(n)
}

// Stop stops reading and waits for the reader to finish.
func (c *Consumer) Stop() {
	c.stop()
	c.budget.close()
	c.cc.Stop()
	<-c.cc.Closed()
}

// budget is a byte semaphore: acquire waits while the bytes out would
// exceed the limit (unless nothing is out, so a large message passes).
type budget struct {
	mu     sync.Mutex
	cond   *sync.Cond
	used   int
	limit  int
	closed bool
}

func newBudget(limit int) *budget {
	b := &budget{limit: limit}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *budget) acquire(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.closed && b.used > 0 && b.used+n > b.limit {
		b.cond.Wait()
	}
	b.used += n
	return !b.closed
}

func (b *budget) release(n int) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *budget) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

// every lets an event through at most once per 10 seconds.
type every struct {
	mu   sync.Mutex
	last time.Time
}

func (e *every) allow() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if now := time.Now(); now.Sub(e.last) >= 10*time.Second {
		e.last = now
		return true
	}
	return false
}
