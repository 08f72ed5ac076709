package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// ceilingPipeline is the smallest honest CSV → JetStream → NDJSON pipeline:
// encoding/csv with ReuseRecord, a JSON object per row built by appending
// bytes, PublishAsync without Msg-Id to a fresh stream, and concurrently a
// pull consumer fetching batches of 500 into a plain NDJSON file (write,
// flush, ack the batch). No envelope, header, index, fsync or dedupe: what
// rowpipe adds on top of it is what the ratio measures.
type ceilingPipeline struct {
	natsURL string
	csvPath string
	outPath string
	rows    int
	window  int // PublishAsync pending window
	// msgID adds a Nats-Msg-Id header to every message, so the broker
	// dedupes as it does for rowpipe's rows: the informational variant
	// that shows what exactly-once publishing costs in the broker alone.
	msgID bool
}

// ceilingResult is what one run of the ceiling pipeline measured.
type ceilingResult struct {
	elapsed time.Duration
	rows    int
	cpu     time.Duration // CPU of the benchmark process (both halves)

	natsPeak int64         // VmHWM of its nats-server
	natsCPU  time.Duration // CPU of its nats-server during the run
}

const (
	ceilingStream  = "CEILING"
	ceilingSubject = "ceiling.rows"
	ceilingBatch   = 500
)

func (c ceilingPipeline) run(ctx context.Context) (ceilingResult, error) {
	// Timed from before it connects, as ours is from starting the
	// ingester: each side's setup (connections, stream, consumer) counts,
	// which only shows at small sizes.
	cpu0 := selfCPU()
	start := time.Now()
	pubConn, err := nats.Connect(c.natsURL, nats.Name("bench-ceiling-publisher"))
	if err != nil {
		return ceilingResult{}, fmt.Errorf("ceiling: connect: %w", err)
	}
	defer pubConn.Close()
	subConn, err := nats.Connect(c.natsURL, nats.Name("bench-ceiling-consumer"))
	if err != nil {
		return ceilingResult{}, fmt.Errorf("ceiling: connect: %w", err)
	}
	defer subConn.Close()

	var pubErrs atomic.Int64
	var firstPubErr atomic.Value
	js, err := jetstream.New(pubConn,
		jetstream.WithPublishAsyncMaxPending(c.window),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			if pubErrs.Add(1) == 1 {
				firstPubErr.Store(err)
			}
		}))
	if err != nil {
		return ceilingResult{}, err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = js.DeleteStream(sctx, ceilingStream) // fresh every run
	if _, err := js.CreateStream(sctx, jetstream.StreamConfig{
		Name:     ceilingStream,
		Subjects: []string{ceilingSubject},
		Storage:  jetstream.FileStorage,
	}); err != nil {
		return ceilingResult{}, fmt.Errorf("ceiling: create stream: %w", err)
	}
	subJS, err := jetstream.New(subConn)
	if err != nil {
		return ceilingResult{}, err
	}
	cons, err := subJS.CreateOrUpdateConsumer(sctx, ceilingStream, jetstream.ConsumerConfig{
		Durable:       "ceiling",
		AckPolicy:     jetstream.AckAllPolicy,
		MaxAckPending: 100_000,
	})
	if err != nil {
		return ceilingResult{}, fmt.Errorf("ceiling: create consumer: %w", err)
	}

	out, err := os.Create(c.outPath)
	if err != nil {
		return ceilingResult{}, err
	}
	defer os.Remove(c.outPath)
	defer out.Close()

	consumed := make(chan error, 1)
	var written atomic.Int64
	go func() { consumed <- c.consume(ctx, cons, out, &written) }()

	published, err := c.publish(ctx, js)
	if err != nil {
		return ceilingResult{}, err
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ceilingResult{}, ctx.Err()
	}
	if n := pubErrs.Load(); n > 0 {
		return ceilingResult{}, fmt.Errorf("ceiling: %d async publishes failed, first: %v", n, firstPubErr.Load())
	}
	if published != c.rows {
		return ceilingResult{}, fmt.Errorf("ceiling: CSV has %d rows, want %d", published, c.rows)
	}
	if err := <-consumed; err != nil {
		return ceilingResult{}, err
	}
	elapsed := time.Since(start)
	// The stream stays: its server is thrown away with it.
	return ceilingResult{elapsed: elapsed, rows: int(written.Load()), cpu: selfCPU() - cpu0}, nil
}

// publish reads the CSV and publishes one JSON object per data row.
func (c ceilingPipeline) publish(ctx context.Context, js jetstream.JetStream) (int, error) {
	f, err := os.Open(c.csvPath)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReaderSize(f, 64<<10))
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return 0, fmt.Errorf("ceiling: header: %w", err)
	}
	// The row encoding is rowpipe's own (schema.AppendJSONString): the
	// ceiling differs from the pipeline in what it leaves out (envelope,
	// Msg-Id, header, index, fsync), not in how it escapes a string.
	keys := make([][]byte, len(header))
	for i, h := range header {
		k, err := schema.AppendJSONString(nil, h)
		if err != nil {
			return 0, fmt.Errorf("ceiling: header column %d: %w", i+1, err)
		}
		keys[i] = append(k, ':')
	}
	r.FieldsPerRecord = len(header)
	stall := []jetstream.PublishOpt{jetstream.WithStallWait(30 * time.Second)}
	sizeHint := 1024
	n := 0
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("ceiling: %s: %w", c.csvPath, err)
		}
		// A fresh buffer per message: the client keeps it until the ack
		// (for retries), so it cannot be reused.
		buf := make([]byte, 0, sizeHint)
		buf = append(buf, '{')
		for i, v := range rec {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, keys[i]...)
			if buf, err = schema.AppendJSONString(buf, v); err != nil {
				return n, fmt.Errorf("ceiling: %s: record %d: %w", c.csvPath, n+1, err)
			}
		}
		buf = append(buf, '}')
		sizeHint = max(sizeHint, len(buf)+len(buf)/8)
		if c.msgID {
			m := &nats.Msg{Subject: ceilingSubject, Data: buf, Header: nats.Header{}}
			m.Header.Set(nats.MsgIdHdr, "bench."+strconv.Itoa(n+1))
			_, err = js.PublishMsgAsync(m, stall...)
		} else {
			_, err = js.PublishAsync(ceilingSubject, buf, stall...)
		}
		if err != nil {
			return n, fmt.Errorf("ceiling: publish row %d: %w", n+1, err)
		}
		n++
		if n&4095 == 0 && ctx.Err() != nil {
			return n, ctx.Err()
		}
	}
}

// consume fetches batches of 500 into out until c.rows records are there.
func (c ceilingPipeline) consume(ctx context.Context, cons jetstream.Consumer, out io.Writer, written *atomic.Int64) error {
	w := bufio.NewWriterSize(out, 256<<10)
	n := 0
	for n < c.rows {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The last batch asks for exactly what is left, so the run ends
		// when the last row lands, not when a half-empty pull expires.
		batch, err := cons.Fetch(min(ceilingBatch, c.rows-n), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("ceiling: fetch: %w", err)
		}
		var last jetstream.Msg
		for msg := range batch.Messages() {
			w.Write(msg.Data())
			w.WriteByte('\n')
			last = msg
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("ceiling: fetch: %w", err)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if last != nil {
			if err := last.Ack(); err != nil {
				return fmt.Errorf("ceiling: ack: %w", err)
			}
		}
		written.Store(int64(n))
	}
	return nil
}
