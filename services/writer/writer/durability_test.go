package writer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

func TestKeepGenerationsPrunesFilesAndPurgesTheStream(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir, func(c *Config, _ *[]Option) { c.KeepGenerations = 2 })
	other := e.sync("orders", schema.ModeReplace) // another dataset: never purged by products' commits
	otherBegin := other.begin()
	other.rows(1, 3)
	other.end(3, 0)

	var gens []uint64
	var syncs []*syncPub
	for range 3 {
		s := e.sync("products", schema.ModeReplace)
		gens = append(gens, s.begin())
		s.rows(1, 5)
		w.waitApplied(s.end(5, 0))
		syncs = append(syncs, s)
	}
	if got := generations(t, dir, "products"); !slices.Equal(got, gens[1:]) {
		t.Fatalf("generations on disk %v, want %v", got, gens[1:])
	}
	if cur := current(t, dir, "products"); cur != gens[2] {
		t.Fatalf("CURRENT = %d, want %d", cur, gens[2])
	}
	ctx := context.Background()
	stream, err := e.js.Stream(ctx, schema.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	// Everything of products before the current generation is gone (the
	// older generation kept on disk is served from its files, see
	// dataset.purge), from the current generation on everything is there.
	for seq := uint64(1); seq < gens[2]; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err == nil && m.Subject == schema.Subject("products") {
			t.Fatalf("message %d of products survived the purge", seq)
		}
	}
	if _, err := stream.GetMsg(ctx, gens[2]); err != nil {
		t.Fatalf("the begin of the current generation was purged: %v", err)
	}
	if _, err := stream.GetMsg(ctx, otherBegin); err != nil {
		t.Fatalf("another dataset's message was purged: %v", err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(schema.Subject("products")))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[schema.Subject("products")]; n != 7 {
		t.Errorf("products has %d messages in the stream, want %d (the current sync's)", n, 7)
	}
}

// A stream holding one dataset is purged without a subject filter (whole
// blocks dropped): what stays is exactly the current generation on.
func TestPurgeOfTheOnlyDatasetKeepsTheCurrentGeneration(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	var gens []uint64
	for range 3 {
		s := e.sync("products", schema.ModeReplace)
		gens = append(gens, s.begin())
		s.rows(1, 5)
		w.waitApplied(s.end(5, 0))
	}
	ctx := context.Background()
	stream, err := e.js.Stream(ctx, schema.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := info.State; st.FirstSeq != gens[2] || st.Msgs != 7 {
		t.Fatalf("stream holds %d messages from %d, want 7 from %d (the current sync's)", st.Msgs, st.FirstSeq, gens[2])
	}
}

// mixedHistory publishes a bit of everything on two datasets and returns
// the last sequence.
func mixedHistory(e *env) uint64 {
	s1 := e.sync("products", schema.ModeReplace)
	s1.begin()
	s1.rows(1, 30)
	s1.reject(12)
	s1.end(30, 1)
	half := e.sync("products", schema.ModeReplace)
	half.begin()
	half.rows(1, 5)
	resumed := e.sync("products", schema.ModeReplace)
	resumed.begin()
	resumed.rows(1, 10)
	resumed.begin()
	resumed.rows(1, 20)
	resumed.end(20, 0)
	aborted := e.sync("products", schema.ModeReplace)
	aborted.begin()
	aborted.rows(1, 3)
	aborted.abort(schema.AbortStrict)
	a := e.sync("orders", schema.ModeAppend)
	a.begin()
	a.rows(1, 8)
	a.end(8, 0)
	b := e.sync("orders", schema.ModeAppend)
	b.begin()
	b.rows(1, 4)
	b.reject(3)
	b.end(4, 1)
	c := e.sync("orders", schema.ModeAppend)
	c.begin()
	c.rows(1, 4)
	c.abort(schema.AbortFailed)
	e.publish("rows.products", nil, []byte("garbage"))
	open := e.sync("products", schema.ModeReplace)
	open.begin()
	return open.rows(1, 9) // a sync still building
}

func TestRebuildIsByteIdentical(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	last := mixedHistory(e)
	w.waitApplied(last)
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, dir)
	if len(want) < 6 {
		t.Fatalf("only %d files: %v", len(want), want)
	}
	want = rebuildable(t, dir, want)

	t.Run("empty DATA_DIR", func(t *testing.T) {
		dir2 := t.TempDir()
		w2 := e.startWriter(dir2)
		w2.waitApplied(last)
		w2.close()
		sameFiles(t, want, snapshot(t, dir2))
	})
	t.Run("--rebuild", func(t *testing.T) {
		// Damage the files first: a rebuild does not read them.
		os.WriteFile(filepath.Join(dir, "products", schema.CurrentFile), []byte("999\n"), 0o644)
		w3 := e.startWriter(dir, func(c *Config, _ *[]Option) { c.Rebuild = true })
		w3.waitApplied(last)
		w3.close()
		sameFiles(t, want, snapshot(t, dir))
	})
}

func TestRestartMidSyncResumesExactly(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	s := e.sync("products", schema.ModeReplace)
	w := e.startWriter(dir)
	g := s.begin()
	w.waitApplied(s.rows(1, 300))
	w.close()
	// Published while no writer runs.
	s.rows(301, 400)
	w = e.startWriter(dir)
	s.rows(401, 500)
	w.waitApplied(s.end(500, 0))
	got := readGen(t, dir, "products", g)
	if len(got.records) != 500 {
		t.Fatalf("%d records", len(got.records))
	}
	for i, r := range got.records {
		if string(r) != string(s.record(uint64(i+1))) {
			t.Fatalf("record %d is wrong", i)
		}
	}
}

// stopMidSync runs a writer until it has applied part of a sync, stops it
// (as a crash would leave things, minus the checkpoint's lag), and returns
// the sync and its generation.
func stopMidSync(t *testing.T, e *env, dir string) (*syncPub, uint64) {
	s := e.sync("products", schema.ModeReplace)
	w := e.startWriter(dir)
	g := s.begin()
	s.reject(2)
	w.waitApplied(s.rows(1, 200))
	w.close()
	return s, g
}

func finishAndCompare(t *testing.T, e *env, dir string, s *syncPub) {
	t.Helper()
	w := e.startWriter(dir)
	s.rows(150, 300) // overlaps what is on disk: the writer drops the repeats
	last := s.end(300, 1)
	w.waitApplied(last)
	w.close()
	clean := t.TempDir()
	w2 := e.startWriter(clean)
	w2.waitApplied(last)
	w2.close()
	sameFiles(t, snapshot(t, clean), snapshot(t, dir))
}

func TestRecoveryCutsTornTails(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	s, g := stopMidSync(t, e, dir)
	folder := filepath.Join(dir, "products")
	appendTo := func(name string, b []byte) {
		f, err := os.OpenFile(filepath.Join(folder, name), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(b)
		f.Close()
	}
	// A crash between writing a batch and rewriting the header: records
	// and index entries past the header's count, the last ones torn.
	appendTo(schema.DataFile(g), []byte(`{"Handle":"torn","Title":"half a rec`))
	appendTo(schema.IndexFile(g), schema.AppendIndexEntry(nil, 1<<40, 1<<40)[:9])
	appendTo(schema.RejectsFile(g), []byte(`{"line":99,"reason":"tor`))
	finishAndCompare(t, e, dir, s)
}

func TestRecoveryRebuildsATornHeader(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	s, g := stopMidSync(t, e, dir)
	path := filepath.Join(dir, "products", schema.DataFile(g))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A header write torn by a power loss: its second half is of another
	// version (here: zeroes), the checksum no longer matches.
	f.WriteAt(make([]byte, 100), 200)
	f.Close()
	if _, err := schema.ReadHeader(mustOpen(t, path)); !errors.Is(err, schema.ErrHeaderTorn) {
		t.Fatalf("the damaged header reads as %v, want ErrHeaderTorn", err)
	}
	finishAndCompare(t, e, dir, s)
}

func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestHostileMessagesAreNeverWritten(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s := e.sync("products", schema.ModeReplace)
	g := s.begin()
	s.rows(1, 3)
	row := func(i uint64) nats.Header {
		return nats.Header(schema.Envelope{Event: schema.EventRow, Sync: s.id, Row: i}.Headers())
	}
	e.publish("rows.products", nil, []byte("garbage"))                                       // no envelope
	e.publish("rows.Products!", row(4), s.record(4))                                         // bad dataset token
	e.publish("rows.products.x", row(4), s.record(4))                                        // too many tokens
	e.publish("rows.products", row(4), []byte(`not json`))                                   // not an object
	e.publish("rows.products", row(4), []byte(`["an","array"]`))                             // not an object
	e.publish("rows.products", row(4), []byte(`{"Handle":"x"}`))                             // not this generation's record
	e.publish("rows.products", row(4), []byte("{\"Handle\":\"a\nb\"}"))                      // a raw line break
	e.publish("rows.products", row(4), []byte(strings.Repeat("x", schema.MaxRecordBytes+1))) // oversize
	other := nats.Header(schema.Envelope{Event: schema.EventRow, Sync: "0000000000000000", Row: 1}.Headers())
	e.publish("rows.products", other, s.record(1)) // a row outside any sync
	e.publish("rows.nosuch", nats.Header(schema.Envelope{Event: schema.EventRow, Sync: s.id, Row: 1}.Headers()), s.record(1))
	v2 := schema.Begin{Version: 2, Dataset: "products", Sync: "1111111111111111", Mode: schema.ModeReplace, Fields: testFields}
	e.publish("rows.products", nats.Header(schema.Envelope{Event: schema.EventBegin, Sync: v2.Sync}.Headers()), mustJSON(v2))
	bad := row(4)
	bad.Set(schema.HeaderRow, "-1")
	e.publish("rows.products", bad, s.record(4))
	s.rows(4, 6)
	last := s.end(6, 0)
	w.waitApplied(last)

	got := readGen(t, dir, "products", g)
	if len(got.records) != 6 {
		t.Fatalf("%d records, want 6", len(got.records))
	}
	for i, r := range got.records {
		if string(r) != string(s.record(uint64(i+1))) {
			t.Fatalf("record %d = %s", i, r)
		}
	}
	if cur := current(t, dir, "products"); cur != g {
		t.Fatalf("CURRENT %d, want %d (the version-2 begin must not discard the sync)", cur, g)
	}
	if _, err := os.Stat(filepath.Join(dir, "nosuch")); !os.IsNotExist(err) {
		t.Errorf("a folder was made for a dataset that never began: %v", err)
	}
	total := 0.0
	for _, reason := range []string{"bad_envelope", "bad_subject", "bad_body", "oversize", "outside_sync", "unknown_version"} {
		n := counter(t, w.w.m.Hostile.WithLabelValues(reason))
		if n == 0 {
			t.Errorf("hostile_messages_total{reason=%q} = 0", reason)
		}
		total += n
	}
	if total != 12 {
		t.Errorf("hostile_messages_total adds up to %v, want 12", total)
	}
}

func TestASecondWriterIsRefused(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s := e.sync("products", schema.ModeReplace)
	w.waitApplied(s.begin())
	w2, err := New(Config{DataDir: dir}, e.nc, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.Lock(); !errors.Is(err, ErrLocked) {
		t.Fatalf("second writer's Lock: %v, want ErrLocked", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = w2.Run(ctx)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), ".writer.lock") {
		t.Fatalf("second writer: %v, want ErrLocked naming the lock", err)
	}
	if w.w.Healthy() != nil {
		t.Errorf("the first writer is unhealthy: %v", w.w.Healthy())
	}
}

func TestARecreatedStreamIsRefused(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s := e.sync("products", schema.ModeReplace)
	s.begin()
	w.waitApplied(s.end(0, 0))
	w.close()
	ctx := context.Background()
	if err := e.js.DeleteStream(ctx, schema.DefaultStream); err != nil {
		t.Fatal(err)
	}
	w2, err := New(Config{DataDir: dir}, e.nc, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w2.Run(ctx); !errors.Is(err, ErrStreamReplaced) || !strings.Contains(err.Error(), "--rebuild") {
		t.Fatalf("Run = %v, want ErrStreamReplaced saying --rebuild", err)
	}
}

func TestRecoveryRebuildsATornHeaderDuringAnAppend(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	a1 := e.sync("products", schema.ModeAppend)
	w := e.startWriter(dir)
	g := a1.begin()
	a1.rows(1, 50)
	a1.end(50, 0)
	a2 := e.sync("products", schema.ModeAppend)
	a2.begin()
	a2.reject(5)
	w.waitApplied(a2.rows(1, 120))
	w.close()
	path := filepath.Join(dir, "products", schema.DataFile(g))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte(`"count":9999`), 100) // torn
	f.Close()
	w = e.startWriter(dir)
	a2.rows(100, 130)
	last := a2.end(130, 1)
	w.waitApplied(last)
	w.close()
	clean := t.TempDir()
	w2 := e.startWriter(clean)
	w2.waitApplied(last)
	w2.close()
	sameFiles(t, snapshot(t, clean), snapshot(t, dir))
	if got := readGen(t, dir, "products", g); got.hdr.Count != 180 || got.hdr.Sync != a2.id {
		t.Fatalf("header %+v", got.hdr)
	}
}

func TestABrokerRestartMidSyncLosesNothing(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s := e.sync("products", schema.ModeReplace)
	g := s.begin()
	w.waitApplied(s.rows(1, 200))
	e.srv.Restart() // file store: the stream survives
	waitFor(t, "the publisher to reconnect", func() bool { return e.nc.IsConnected() })
	t.Log("restarted")
	s.rows(201, 400)
	t.Log("published")
	w.waitApplied(s.end(400, 0))
	got := readGen(t, dir, "products", g)
	if len(got.records) != 400 || got.hdr.State != schema.StateComplete {
		t.Fatalf("%d records, state %s", len(got.records), got.hdr.State)
	}
	for i, r := range got.records {
		if string(r) != string(s.record(uint64(i+1))) {
			t.Fatalf("record %d is wrong", i)
		}
	}
}
