package schema

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
)

func TestStreamConfig(t *testing.T) {
	c := StreamConfig(StreamOptions{Name: "ROWS", MaxBytes: 1 << 30})
	if c.Name != "ROWS" || !reflect.DeepEqual(c.Subjects, []string{"rows.>"}) {
		t.Errorf("name %q subjects %q", c.Name, c.Subjects)
	}
	if c.Discard != jetstream.DiscardNew || c.Retention != jetstream.LimitsPolicy || c.Storage != jetstream.FileStorage {
		t.Errorf("discard %v retention %v storage %v; want new, limits, file", c.Discard, c.Retention, c.Storage)
	}
	if c.MaxBytes != 1<<30 || c.MaxMsgSize != MaxMessageBytes || c.Duplicates != DuplicateWindow || c.Replicas != 1 {
		t.Errorf("max bytes %d, max msg %d, duplicates %v, replicas %d", c.MaxBytes, c.MaxMsgSize, c.Duplicates, c.Replicas)
	}
	if got := StreamConfig(StreamOptions{Name: "ROWS", Replicas: 3}).Replicas; got != 3 {
		t.Errorf("Replicas 3 gave %d", got)
	}
	if MaxRecordBytes >= MaxMessageBytes || MaxRecordBytes < MaxMessageBytes-16<<10 {
		t.Errorf("MaxRecordBytes %d leaves %d bytes for headers", MaxRecordBytes, MaxMessageBytes-MaxRecordBytes)
	}
}

func testJetStream(t *testing.T) (jetstream.JetStream, context.Context) {
	t.Helper()
	srv := jstest.Start(t)
	js, err := jetstream.New(srv.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return js, ctx
}

func TestEnsureStreamCreatesThenUpdates(t *testing.T) {
	js, ctx := testJetStream(t)
	o := StreamOptions{Name: "ROWS", MaxBytes: 8 << 20}
	for range 2 { // calling twice is fine
		c := ensureInfo(t, ctx, js, o).Config
		if c.Discard != jetstream.DiscardNew || c.MaxBytes != o.MaxBytes || !reflect.DeepEqual(c.Subjects, []string{AllSubjects}) ||
			c.MaxMsgSize != MaxMessageBytes || c.Duplicates != DuplicateWindow || c.Storage != jetstream.FileStorage {
			t.Errorf("server holds %+v", c)
		}
	}
	o.MaxBytes = 16 << 20 // a new STREAM_MAX_BYTES is applied to the existing stream
	if _, err := EnsureStream(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "ROWS")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxBytes; got != 16<<20 {
		t.Errorf("MaxBytes after update = %d", got)
	}
}

func TestStreamRefusesNewRowsWhenFull(t *testing.T) {
	js, ctx := testJetStream(t)
	if _, err := EnsureStream(ctx, js, StreamOptions{Name: "ROWS", MaxBytes: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 1000)
	var err error
	n := 0
	for ; n < 1000; n++ {
		if _, err = js.Publish(ctx, Subject("products"), body); err != nil {
			break
		}
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("after %d messages: publish = %v, want the stream to refuse (DiscardNew)", n, err)
	}
	t.Logf("refused after %d messages: %v", n, err)
	s, err := js.Stream(ctx, "ROWS")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMsg(ctx, 1); err != nil {
		t.Errorf("the first message is gone (%v): the stream dropped old rows instead of refusing new ones", err)
	}
	if _, err := js.Publish(ctx, "other.subject", body, jetstream.WithRetryAttempts(0)); err == nil {
		t.Error("the stream took a message outside rows.>")
	}
}

func TestEnsureStateBucket(t *testing.T) {
	js, ctx := testJetStream(t)
	o := StreamOptions{Name: "ROWS"}
	kv, err := EnsureStateBucket(ctx, js, o)
	if err != nil {
		t.Fatal(err)
	}
	if kv.Bucket() != "ROWS_STATE" {
		t.Errorf("bucket %q", kv.Bucket())
	}
	want := DatasetState{Dataset: "products", Seq: 3, Last: &SyncOutcome{Sync: testSync, Outcome: OutcomeCommitted}}
	if _, err := kv.Put(ctx, "products", EncodeState(want)); err != nil {
		t.Fatal(err)
	}
	again, err := EnsureStateBucket(ctx, js, o) // calling twice binds the same bucket
	if err != nil {
		t.Fatal(err)
	}
	e, err := again.Get(ctx, "products")
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeState(e.Value())
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("state read back = %+v, %v", got, err)
	}
	st, err := again.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.History() < 2 {
		t.Errorf("bucket history %d: a watcher could miss an outcome", st.History())
	}
}

// TestStreamIsMigrated: a stream created before batch publishing (as
// rowpipe did) is made to allow batches by EnsureStream, keeping its
// messages; an unset MaxBytes or Compression keeps the existing stream's,
// a set Compression switches it, and a new stream gets the defaults.
func TestStreamIsMigrated(t *testing.T) {
	js, ctx := testJetStream(t)
	old := StreamConfig(StreamOptions{Name: "ROWS", MaxBytes: 8 << 20, Compression: CompressionS2})
	old.AllowBatchPublish = false
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, Subject("products"), []byte(`{"a":"1"}`)); err != nil {
		t.Fatal(err)
	}
	ensure := func(o StreamOptions) jetstream.StreamConfig {
		t.Helper()
		info := ensureInfo(t, ctx, js, o)
		if info.State.Msgs != 1 {
			t.Errorf("%d messages after EnsureStream, want the 1 stored before", info.State.Msgs)
		}
		return info.Config
	}
	cfg := ensure(StreamOptions{Name: "ROWS"})
	if !cfg.AllowBatchPublish {
		t.Error("the stream does not allow batch publishing after EnsureStream")
	}
	if cfg.MaxBytes != 8<<20 || cfg.Compression != jetstream.S2Compression {
		t.Errorf("MaxBytes %d, compression %v: an unset STREAM_MAX_BYTES or STREAM_COMPRESSION changed the stream's", cfg.MaxBytes, cfg.Compression)
	}
	if cfg = ensure(StreamOptions{Name: "ROWS", Compression: CompressionNone}); cfg.Compression != jetstream.NoCompression {
		t.Errorf("compression %v after STREAM_COMPRESSION=none, want none", cfg.Compression)
	}
	if cfg = ensure(StreamOptions{Name: "ROWS", Compression: CompressionS2}); cfg.Compression != jetstream.S2Compression {
		t.Errorf("compression %v after STREAM_COMPRESSION=s2, want s2", cfg.Compression)
	}
	js2, ctx2 := testJetStream(t)
	fresh, err := EnsureStream(ctx2, js2, StreamOptions{Name: "ROWS"})
	if err != nil {
		t.Fatal(err)
	}
	if got := fresh.CachedInfo().Config; got.MaxBytes != DefaultStreamMaxBytes || got.Compression != storeCompression(DefaultCompression) {
		t.Errorf("a new stream with nothing set has MaxBytes %d and compression %v, want DefaultStreamMaxBytes and DefaultCompression", got.MaxBytes, got.Compression)
	}
}

// TestStoredBytesIsWhatTheStreamCounts publishes messages and compares
// the stream's byte count with StoredBytes.
func TestStoredBytesIsWhatTheStreamCounts(t *testing.T) {
	js, ctx := testJetStream(t)
	if _, err := EnsureStream(ctx, js, StreamOptions{Name: "ROWS", MaxBytes: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	var want int64
	for i, body := range []string{`{"Handle":"a"}`, `{"Handle":"b","Title":"Crème"}`, ""} {
		env := Envelope{Event: EventRow, Sync: testSync, Row: uint64(i + 1)}
		h := env.Headers()
		msg := &nats.Msg{Subject: Subject("products"), Header: nats.Header(h), Data: []byte(body)}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
		want += StoredBytes(Subject("products"), h, len(body))
	}
	if _, err := js.Publish(ctx, Subject("products"), []byte("no headers")); err != nil {
		t.Fatal(err)
	}
	want += StoredBytes(Subject("products"), nil, len("no headers"))
	s, err := js.Stream(ctx, "ROWS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if int64(info.State.Bytes) != want {
		t.Errorf("the stream counts %d bytes, StoredBytes says %d", info.State.Bytes, want)
	}
}

// ensureInfo runs EnsureStream and returns the stream's info.
func ensureInfo(t *testing.T, ctx context.Context, js jetstream.JetStream, o StreamOptions) *jetstream.StreamInfo {
	t.Helper()
	s, err := EnsureStream(ctx, js, o)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}
