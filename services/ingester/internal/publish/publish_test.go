package publish

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
)

const testSync = "0123456789abcdef"

// setup starts a server with the rows stream (allowing batches or not).
func setup(t *testing.T, batches bool) (*jstest.Server, jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	srv := jstest.Start(t)
	js, err := jetstream.New(srv.Conn())
	if err != nil {
		t.Fatal(err)
	}
	cfg := schema.StreamConfig(schema.StreamOptions{Name: schema.DefaultStream, MaxBytes: 1 << 30})
	cfg.AllowBatchPublish = batches
	s, err := js.CreateStream(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv, js, s
}

func newPublisher(t *testing.T, js jetstream.JetStream, dataset string, o Options) *Publisher {
	t.Helper()
	p, err := New(context.Background(), js, schema.DefaultStream, dataset, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func row(n uint64) schema.Envelope {
	return schema.Envelope{Event: schema.EventRow, Sync: testSync, Row: n}
}

func body(env schema.Envelope) []byte {
	return fmt.Appendf(nil, `{"e":%q,"n":"%d"}`, env.Event, env.Row)
}

// publishAll publishes envs, then flushes.
func publishAll(t *testing.T, p *Publisher, envs []schema.Envelope) {
	t.Helper()
	ctx := context.Background()
	for _, env := range envs {
		if err := p.Publish(ctx, env, body(env)); err != nil {
			t.Fatalf("publish %+v: %v", env, err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// rows returns the envelopes of rows from to to.
func rows(from, to uint64) []schema.Envelope {
	var out []schema.Envelope
	for n := from; n <= to; n++ {
		out = append(out, row(n))
	}
	return out
}

// checkStored checks the stream holds exactly want on the dataset's
// subject, in order, each with schema's headers and its body. Besides
// them, the first message of a batch carries JetStream's expected-last
// check, as sent; nothing else (no Nats-Msg-Id, no batch header).
func checkStored(t *testing.T, s jetstream.Stream, dataset string, want []schema.Envelope) {
	t.Helper()
	ctx := context.Background()
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(schema.Subject(dataset)))
	if err != nil {
		t.Fatal(err)
	}
	var got []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject == schema.Subject(dataset) {
			got = append(got, m)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d messages stored on %s, want %d", len(got), schema.Subject(dataset), len(want))
	}
	for i, m := range got {
		m.Header.Del(jetstream.ExpectedLastSubjSeqHeader)
		if wantH := nats.Header(want[i].Headers()); !reflect.DeepEqual(m.Header, wantH) {
			t.Fatalf("message %d: headers %v, want %v", i+1, m.Header, wantH)
		}
		if wantB := body(want[i]); string(m.Data) != string(wantB) {
			t.Fatalf("message %d: body %s, want %s", i+1, m.Data, wantB)
		}
	}
}

// TestSyncIsStoredInOrderWithSchemasHeaders publishes a whole sync through
// a small window (so slots and their header maps are reused many times and
// flow acks release them) and checks every stored message.
func TestSyncIsStoredInOrderWithSchemasHeaders(t *testing.T) {
	for _, batches := range []bool{true, false} {
		t.Run(fmt.Sprintf("batches=%v", batches), func(t *testing.T) {
			_, js, s := setup(t, batches)
			p := newPublisher(t, js, "hdr", Options{Window: 8})
			if p.Batched() != batches {
				t.Fatalf("Batched() = %v", p.Batched())
			}
			want := []schema.Envelope{{Event: schema.EventBegin, Sync: testSync}}
			want = append(want, rows(1, 20)...)
			want = append(want, schema.Envelope{Event: schema.EventReject, Sync: testSync, Row: 23})
			want = append(want, rows(21, 300)...)
			want = append(want, schema.Envelope{Event: schema.EventEnd, Sync: testSync})
			publishAll(t, p, want)
			checkStored(t, s, "hdr", want)
			info, err := s.Info(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if p.LastSeq() != info.State.LastSeq {
				t.Errorf("LastSeq %d, want %d", p.LastSeq(), info.State.LastSeq)
			}
		})
	}
}

// TestGiveUpWhenTheServerIsGone: with the server down, publishing fails
// after GiveUp with ErrGaveUp, naming the subject.
func TestGiveUpWhenTheServerIsGone(t *testing.T) {
	srv, js, _ := setup(t, true)
	p := newPublisher(t, js, "gone", Options{GiveUp: 300 * time.Millisecond, AckTimeout: 200 * time.Millisecond})
	srv.Shutdown()
	ctx := context.Background()
	err := p.Publish(ctx, row(1), []byte(`{}`))
	if err == nil {
		err = p.Flush(ctx)
	}
	if !errors.Is(err, ErrGaveUp) {
		t.Fatalf("err = %v, want ErrGaveUp", err)
	}
}

// TestServerRestartMidBatch stops the server (every connection cut, batch
// state lost) while a batch is in flight, twice, and starts it again: the
// publisher resumes after the last message stored, and the stream holds
// every row once, in order.
func TestServerRestartMidBatch(t *testing.T) {
	srv, js, s := setup(t, true)
	ctx := context.Background()
	p := newPublisher(t, js, "rst", Options{Window: 64, AckTimeout: 2 * time.Second, GiveUp: 30 * time.Second})
	const n = 5000
	for i := uint64(1); i <= n; i++ {
		if i == 1500 || i == 3700 {
			srv.Restart()
		}
		if err := p.Publish(ctx, row(i), body(row(i))); err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkStored(t, s, "rst", rows(1, n))
	if p.Retries() == 0 {
		t.Error("no message published again: the restarts did not land mid-batch")
	}
}

// TestPublisherKilledMidBatchResumesAfterTheLastStored abandons a
// publisher mid-batch (its connection closed, as when the process is
// killed) and resumes with a new one: it reads the last message stored
// (Last), skips what the stream holds (ResumeAfter), and the stream ends
// with every row once, in order.
func TestPublisherKilledMidBatchResumesAfterTheLastStored(t *testing.T) {
	srv, js, s := setup(t, true)
	ctx := context.Background()
	nc := srv.Conn()
	js1, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	dead := newPublisher(t, js1, "kill", Options{Window: 64})
	const n = 3000
	for i := uint64(1); i <= 1234; i++ {
		if err := dead.Publish(ctx, row(i), body(row(i))); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close() // no commit: the batch ends where the connection does

	p := newPublisher(t, js, "kill", Options{Window: 64})
	last, ok := p.Last()
	if !ok || last.Sync != testSync || last.Event != schema.EventRow || last.Row > 1234 {
		t.Fatalf("Last() = %+v, %v", last, ok)
	}
	t.Logf("the stream holds rows 1 to %d of the 1234 published", last.Row)
	p.ResumeAfter(last)
	publishAll(t, p, rows(1, n))
	checkStored(t, s, "kill", rows(1, n))
}

// TestInterleavedPublisherIsRefused: a message another client stores on
// the subject between two batches makes the next batch's expected-last
// check fail, and the publisher, unable to place that message, reports
// ErrInterleaved instead of going on.
func TestInterleavedPublisherIsRefused(t *testing.T) {
	for _, batches := range []bool{true, false} {
		t.Run(fmt.Sprintf("batches=%v", batches), func(t *testing.T) {
			_, js, _ := setup(t, batches)
			ctx := context.Background()
			p := newPublisher(t, js, "two", Options{GiveUp: 5 * time.Second})
			publishAll(t, p, rows(1, 10))
			other := schema.Envelope{Event: schema.EventBegin, Sync: "00000000000000ff"}
			if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: schema.Subject("two"), Header: nats.Header(other.Headers()), Data: []byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
			err := p.Publish(ctx, row(11), body(row(11)))
			if err == nil {
				err = p.Flush(ctx)
			}
			if !errors.Is(err, ErrInterleaved) {
				t.Fatalf("err = %v, want ErrInterleaved", err)
			}
		})
	}
}

// TestOtherDatasetsDoNotInterleave: syncs of two datasets published at
// once to the same stream each go through, each in order.
func TestOtherDatasetsDoNotInterleave(t *testing.T) {
	_, js, s := setup(t, true)
	a := newPublisher(t, js, "a", Options{Window: 16})
	b := newPublisher(t, js, "b", Options{Window: 16})
	ctx := context.Background()
	for i := uint64(1); i <= 1000; i++ {
		for _, p := range []*Publisher{a, b} {
			if err := p.Publish(ctx, row(i), body(row(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, p := range []*Publisher{a, b} {
		if err := p.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	checkStored(t, s, "a", rows(1, 1000))
	checkStored(t, s, "b", rows(1, 1000))
}

// TestIdleBatchIsCommittedBeforeTheServerForgetsIt: a source that pauses
// longer than idleCommit (standard input, a URL) gets its batch committed
// before the next message, with no failure and no retry.
func TestIdleBatchIsCommittedBeforeTheServerForgetsIt(t *testing.T) {
	t.Parallel() // it waits
	_, js, s := setup(t, true)
	ctx := context.Background()
	p := newPublisher(t, js, "idle", Options{})
	for i := uint64(1); i <= 10; i++ {
		if err := p.Publish(ctx, row(i), body(row(i))); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(idleCommit + 500*time.Millisecond)
	publishAll(t, p, rows(11, 20))
	checkStored(t, s, "idle", rows(1, 20))
	if p.Retries() != 0 {
		t.Errorf("%d messages published again after an idle pause", p.Retries())
	}
}
