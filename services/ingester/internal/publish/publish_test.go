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

func setup(t *testing.T, window int) (*jstest.Server, jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	srv := jstest.Start(t)
	js, err := NewJetStream(srv.Conn(), window, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(js.CleanupPublisher)
	s, err := schema.EnsureStream(context.Background(), js, schema.StreamOptions{Name: schema.DefaultStream, Replicas: 1, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	return srv, js, s
}

// stored returns the messages of the stream, in order.
func stored(t *testing.T, s jetstream.Stream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestRowHeadersAreSchemas publishes a whole sync through a small window
// (so slots and their header maps are reused many times) and checks every
// stored message carries exactly schema's headers, in publish order.
func TestRowHeadersAreSchemas(t *testing.T) {
	_, js, s := setup(t, 4)
	ctx := context.Background()
	p := New(js, "hdr", Options{Window: 4})
	const sync = "0123456789abcdef"
	var want []schema.Envelope
	add := func(env schema.Envelope) {
		t.Helper()
		if err := p.Publish(ctx, env, []byte(fmt.Sprintf(`{"n":%q}`, env.MsgID("hdr")))); err != nil {
			t.Fatal(err)
		}
		if n := js.PublishAsyncPending(); n > 4 {
			t.Fatalf("%d publishes pending, window is 4", n)
		}
		want = append(want, env)
	}
	add(schema.Envelope{Event: schema.EventBegin, Sync: sync})
	for row := uint64(1); row <= 50; row++ {
		add(schema.Envelope{Event: schema.EventRow, Sync: sync, Row: row})
		if row == 20 {
			add(schema.Envelope{Event: schema.EventReject, Sync: sync, Row: 23})
		}
	}
	add(schema.Envelope{Event: schema.EventEnd, Sync: sync})
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := stored(t, s)
	if len(msgs) != len(want) {
		t.Fatalf("%d messages stored, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		if wantH := nats.Header(want[i].Headers("hdr")); !reflect.DeepEqual(m.Header, wantH) {
			t.Fatalf("message %d headers %v, want %v", i+1, m.Header, wantH)
		}
		if wantBody := fmt.Sprintf(`{"n":%q}`, want[i].MsgID("hdr")); string(m.Data) != wantBody {
			t.Fatalf("message %d body %s, want %s", i+1, m.Data, wantBody)
		}
	}
	if last := p.LastAck(); last.Sequence != msgs[len(msgs)-1].Sequence {
		t.Errorf("LastAck sequence %d, want %d", last.Sequence, msgs[len(msgs)-1].Sequence)
	}
}

// TestOrderBrokenIsDetected stores row 2 of a sync before row 1, as a
// connection failure can: publishing rows 1 and 2 then gets a duplicate ack
// for row 2 with a lower sequence than row 1's, which must be reported.
func TestOrderBrokenIsDetected(t *testing.T) {
	_, js, _ := setup(t, 8)
	ctx := context.Background()
	const sync = "00000000000000aa"
	row2 := schema.Envelope{Event: schema.EventRow, Sync: sync, Row: 2}
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: schema.Subject("ord"), Data: []byte(`{}`), Header: nats.Header(row2.Headers("ord"))}); err != nil {
		t.Fatal(err)
	}
	p := New(js, "ord", Options{Window: 8})
	for row := uint64(1); row <= 2; row++ {
		if err := p.Publish(ctx, schema.Envelope{Event: schema.EventRow, Sync: sync, Row: row}, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); !errors.Is(err, ErrOrderBroken) {
		t.Fatalf("Flush = %v, want ErrOrderBroken", err)
	}
}

// TestDuplicatesOfAnEarlierRunAreInOrder: rows stored by an earlier run of
// the same sync come back as duplicates with their old sequences, which are
// in order, so a resumed sync goes through.
func TestDuplicatesOfAnEarlierRunAreInOrder(t *testing.T) {
	_, js, s := setup(t, 8)
	ctx := context.Background()
	const sync = "00000000000000bb"
	first := New(js, "dup", Options{Window: 8})
	for row := uint64(1); row <= 5; row++ {
		if err := first.Publish(ctx, schema.Envelope{Event: schema.EventRow, Sync: sync, Row: row}, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	again := New(js, "dup", Options{Window: 8})
	for row := uint64(1); row <= 12; row++ {
		if err := again.Publish(ctx, schema.Envelope{Event: schema.EventRow, Sync: sync, Row: row}, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := again.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(stored(t, s)); n != 12 {
		t.Errorf("%d messages stored, want 12 (5 deduplicated)", n)
	}
}

// TestGiveUpWhenTheServerIsGone: with the server down, publishing fails
// after GiveUp with ErrGaveUp, naming the subject.
func TestGiveUpWhenTheServerIsGone(t *testing.T) {
	srv, js, _ := setup(t, 8)
	srv.Shutdown()
	p := New(js, "gone", Options{Window: 8, GiveUp: 300 * time.Millisecond})
	start := time.Now()
	err := p.Publish(context.Background(), schema.Envelope{Event: schema.EventBegin, Sync: "00000000000000cc"}, []byte(`{}`))
	if err == nil {
		err = p.Flush(context.Background())
	}
	if !errors.Is(err, ErrGaveUp) {
		t.Fatalf("err = %v, want ErrGaveUp", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("gave up after %s, GiveUp is 300ms", d)
	}
}

// TestRetriesAcrossARestart restarts the server between two halves of a
// sync: the second half waits for the connection and gets through, in order.
func TestRetriesAcrossARestart(t *testing.T) {
	srv, js, s := setup(t, 16)
	ctx := context.Background()
	p := New(js, "rst", Options{Window: 16, GiveUp: 30 * time.Second})
	const sync = "00000000000000dd"
	for row := uint64(1); row <= 100; row++ {
		if row == 50 {
			srv.Restart()
		}
		if err := p.Publish(ctx, schema.Envelope{Event: schema.EventRow, Sync: sync, Row: row}, []byte(`{}`)); err != nil {
			t.Fatalf("row %d: %v", row, err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := stored(t, s)
	if len(msgs) != 100 {
		t.Fatalf("%d messages stored, want 100", len(msgs))
	}
	for i, m := range msgs {
		env, err := schema.ParseEnvelope(m.Header)
		if err != nil || env.Row != uint64(i+1) {
			t.Fatalf("message %d: %+v %v, want row %d", i+1, env, err, i+1)
		}
	}
}
