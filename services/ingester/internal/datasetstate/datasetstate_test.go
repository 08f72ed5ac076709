package datasetstate

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
)

func bucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(jstest.Start(t).Conn())
	if err != nil {
		t.Fatal(err)
	}
	kv, err := schema.EnsureStateBucket(context.Background(), js, schema.StreamOptions{Name: "ROWS", Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func put(t *testing.T, kv jetstream.KeyValue, st schema.DatasetState) {
	t.Helper()
	if _, err := kv.Put(context.Background(), st.Dataset, schema.EncodeState(st)); err != nil {
		t.Fatal(err)
	}
}

func TestGet(t *testing.T) {
	kv := bucket(t)
	ctx := context.Background()
	if _, ok, err := Get(ctx, kv, "none"); ok || err != nil {
		t.Errorf("no state: ok %v err %v", ok, err)
	}
	put(t, kv, schema.DatasetState{Dataset: "ds", Seq: 3, Current: &schema.GenerationState{Generation: 2, SHA256: "ab"}})
	st, ok, err := Get(ctx, kv, "ds")
	if !ok || err != nil || st.Current == nil || st.Current.SHA256 != "ab" {
		t.Errorf("state %+v ok %v err %v", st, ok, err)
	}
	if _, err := kv.Put(ctx, "junk", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Get(ctx, kv, "junk"); err == nil {
		t.Error("an undecodable state gave no error")
	}
}

func TestWaitReturnsTheOutcomeOfItsSync(t *testing.T) {
	kv := bucket(t)
	ctx := context.Background()
	w, err := Watch(ctx, kv, "ds", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	go func() {
		time.Sleep(50 * time.Millisecond)
		put(t, kv, schema.DatasetState{Dataset: "ds", Seq: 5, Last: &schema.SyncOutcome{Sync: "other", Outcome: schema.OutcomeCommitted}})
		put(t, kv, schema.DatasetState{Dataset: "ds", Seq: 9, Last: &schema.SyncOutcome{Sync: "mine", Outcome: schema.OutcomeFailed, Reason: "gap"}})
	}()
	out, err := w.Wait(ctx, "mine", 10*time.Second)
	if err != nil || out.Outcome != schema.OutcomeFailed || out.Reason != "gap" {
		t.Errorf("outcome %+v err %v", out, err)
	}
}

// An outcome the watch cannot see (published before it started) is found
// by the history poll.
func TestWaitFindsAnOutcomeInTheHistory(t *testing.T) {
	kv := bucket(t)
	ctx := context.Background()
	put(t, kv, schema.DatasetState{Dataset: "ds", Seq: 9, Last: &schema.SyncOutcome{Sync: "early", Outcome: schema.OutcomeCommitted, Generation: 4}})
	put(t, kv, schema.DatasetState{Dataset: "ds", Seq: 12, Last: &schema.SyncOutcome{Sync: "later", Outcome: schema.OutcomeCommitted}})
	w, err := Watch(ctx, kv, "ds", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	out, err := w.Wait(ctx, "early", 10*time.Second)
	if err != nil || out.Generation != 4 {
		t.Errorf("outcome %+v err %v", out, err)
	}
}

func TestWaitTimesOut(t *testing.T) {
	kv := bucket(t)
	w, err := Watch(context.Background(), kv, "ds", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := w.Wait(context.Background(), "never", 100*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Errorf("err = %v, want ErrTimeout", err)
	}
}
