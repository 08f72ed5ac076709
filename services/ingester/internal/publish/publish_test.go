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
		if wantH := nats.Header(want[i].Headers()); !reflect.DeepEqual(m.Header, wantH) {
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
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: schema.Subject("ord"), Data: []byte(`{}`), Header: nats.Header(row2.Headers())}); err != nil {
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

// TestResumeStraddlingTheDuplicateWindow re-publishes two interrupted syncs
// whose first rows are older than the broker's duplicate window (stored
// again, at new sequences) and whose last rows are not (duplicates, acked at
// their originals' lower sequences). For "ok" the earlier run stored every
// row in order, so the resumed sync goes through; for "gap" it lost row 6
// and stored row 7, which must still be reported. Another dataset's
// messages are interleaved in the stream, as with concurrent ingests.
func TestResumeStraddlingTheDuplicateWindow(t *testing.T) {
	t.Parallel() // it waits out the duplicate window
	_, js, s := setup(t, 8)
	ctx := context.Background()
	const sync = "00000000000000ee"
	row := func(r uint64) schema.Envelope { return schema.Envelope{Event: schema.EventRow, Sync: sync, Row: r} }
	earlier := map[string]*Publisher{"ok": New(js, "ok", Options{Window: 8}), "gap": New(js, "gap", Options{Window: 8})}
	other := New(js, "other", Options{Window: 8})
	publishRows := func(from, to uint64) {
		t.Helper()
		for r := from; r <= to; r++ {
			for ds, p := range earlier {
				if ds == "gap" && r == 6 {
					continue // lost by the interrupted run
				}
				if err := p.Publish(ctx, row(r), []byte(`{}`)); err != nil {
					t.Fatal(err)
				}
				if err := p.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if err := other.Publish(ctx, schema.Envelope{Event: schema.EventRow, Sync: "00000000000000ff", Row: 100 + r}, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, p := range earlier {
		if err := p.Publish(ctx, schema.Envelope{Event: schema.EventBegin, Sync: sync}, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	publishRows(1, 5)
	time.Sleep(schema.DuplicateWindow + 200*time.Millisecond)
	publishRows(6, 10)
	if err := other.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	before := len(stored(t, s))

	resume := func(ds string) error {
		p := New(js, ds, Options{Window: 8})
		if err := p.Publish(ctx, schema.Envelope{Event: schema.EventBegin, Sync: sync}, []byte(`{}`)); err != nil {
			return err
		}
		for r := uint64(1); r <= 12; r++ {
			if err := p.Publish(ctx, row(r), []byte(`{}`)); err != nil {
				return err
			}
		}
		return p.Flush(ctx)
	}
	if err := resume("ok"); err != nil {
		t.Fatalf("resumed sync of ok: %v", err)
	}
	// The begin and rows 1 to 5 again, 6 to 10 deduplicated, 11 and 12.
	if n := len(stored(t, s)) - before; n != 8 {
		t.Errorf("resuming ok stored %d messages, want 8", n)
	}
	if err := resume("gap"); !errors.Is(err, ErrOrderBroken) {
		t.Fatalf("resumed sync of gap: %v, want ErrOrderBroken", err)
	}
}

// TestSecondResumeAfterAStraddlingOne: run 1 of a sync stores rows 1 to 6,
// 4 to 6 after a pause; run 2, soon after, stores the begin and rows 1 to 3
// again (older than the duplicate window), gets duplicates for 4 to 6 and
// stores 7 and 8; run 3, once run 1's rows have left the window but not
// run 2's, gets duplicates for the begin and rows 1 to 3 (run 2's copies),
// stores 4 to 6 again, and gets a duplicate for row 7 right after run 2's
// row 3: the stream holds run 1's row 6 just before what run 3 has seen
// acked, so the sync is in order.
func TestSecondResumeAfterAStraddlingOne(t *testing.T) {
	t.Parallel() // it waits out the duplicate window
	_, js, _ := setup(t, 8)
	ctx := context.Background()
	const sync = "00000000000000ab"
	run := func(rows ...uint64) error {
		p := New(js, "again", Options{Window: 8})
		if rows[0] == 1 {
			if err := p.Publish(ctx, schema.Envelope{Event: schema.EventBegin, Sync: sync}, []byte(`{}`)); err != nil {
				return err
			}
		}
		for _, r := range rows {
			if err := p.Publish(ctx, schema.Envelope{Event: schema.EventRow, Sync: sync, Row: r}, []byte(`{}`)); err != nil {
				return err
			}
		}
		return p.Flush(ctx)
	}
	if err := run(1, 2, 3); err != nil {
		t.Fatal(err)
	}
	time.Sleep(schema.DuplicateWindow + 300*time.Millisecond)
	if err := run(4, 5, 6); err != nil {
		t.Fatal(err)
	}
	time.Sleep(schema.DuplicateWindow / 2)
	if err := run(1, 2, 3, 4, 5, 6, 7, 8); err != nil {
		t.Fatalf("run 2: %v", err)
	}
	time.Sleep(schema.DuplicateWindow * 3 / 4)
	if err := run(1, 2, 3, 4, 5, 6, 7, 8, 9, 10); err != nil {
		t.Fatalf("run 3: %v", err)
	}
}
