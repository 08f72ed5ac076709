package writer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
)

// testLogger writes the writer's log into the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// env is one broker and a publisher of rowpipe's message format.
type env struct {
	t   testing.TB
	srv *jstest.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newEnv(t testing.TB) *env {
	t.Helper()
	srv := jstest.Start(t)
	nc := srv.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := schema.StreamOptions{Name: schema.DefaultStream, Replicas: 1, MaxBytes: schema.DefaultStreamMaxBytes}
	if _, err := schema.EnsureStream(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, srv: srv, nc: nc, js: js}
}

// publish sends one message and returns its stream sequence. It retries
// for a while, as an ingester does, so that it outlives a broker restart.
func (e *env) publish(subject string, h nats.Header, body []byte) uint64 {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ack, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: h, Data: body})
		cancel()
		if err == nil {
			return ack.Sequence
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("publish on %s: %v", subject, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) send(ds string, ev schema.Envelope, body []byte) uint64 {
	e.t.Helper()
	h := nats.Header(ev.Headers())
	return e.publish(schema.Subject(ds), h, body)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

var testFields = []string{"Handle", "Title", "Body (HTML)", "Vendor", "Tags", "Variant Price"}

// syncPub publishes one sync.
type syncPub struct {
	e      *env
	ds, id string
	mode   schema.Mode
	fields []string
	enc    *schema.RecordEncoder
	index  []string // the begin's index
}

func (e *env) sync(ds string, mode schema.Mode) *syncPub {
	enc, err := schema.NewRecordEncoder(testFields)
	if err != nil {
		e.t.Fatal(err)
	}
	return &syncPub{e: e, ds: ds, id: schema.NewSyncID(), mode: mode, fields: testFields, enc: enc}
}

func (s *syncPub) begin() uint64 {
	s.e.t.Helper()
	b := schema.Begin{Version: schema.EnvelopeVersion, Dataset: s.ds, Sync: s.id, Mode: s.mode, Fields: s.fields, Index: s.index,
		Source: schema.Source{Name: s.ds + ".csv", Size: -1}, StartedAt: time.Unix(1700000000, 0).UTC()}
	return s.e.send(s.ds, schema.Envelope{Event: schema.EventBegin, Sync: s.id}, mustJSON(b))
}

// record is the body of row i of this sync.
func (s *syncPub) record(i uint64) []byte {
	b, err := s.enc.Append(nil, []string{
		fmt.Sprintf("%s-%s-%d", s.ds, s.id[:6], i), "Product \"" + strconv.FormatUint(i, 10) + "\"",
		"<p>line one\nline two</p>", "Vendör", "a, b, c", strconv.FormatUint(i*7%1000, 10) + ".99",
	})
	if err != nil {
		panic(err)
	}
	return b
}

func (s *syncPub) row(i uint64) uint64 {
	s.e.t.Helper()
	return s.e.send(s.ds, schema.Envelope{Event: schema.EventRow, Sync: s.id, Row: i}, s.record(i))
}

func (s *syncPub) rows(from, to uint64) uint64 {
	s.e.t.Helper()
	var seq uint64
	for i := from; i <= to; i++ {
		seq = s.row(i)
	}
	return seq
}

func (s *syncPub) reject(line uint64) uint64 {
	s.e.t.Helper()
	r := schema.Reject{Line: int(line), Reason: "wrong number of fields", Error: fmt.Sprintf("%s.csv:%d: wrong number of fields", s.ds, line), Raw: "a,b"}
	return s.e.send(s.ds, schema.Envelope{Event: schema.EventReject, Sync: s.id, Row: line}, mustJSON(r))
}

func (s *syncPub) end(rows, rejected uint64) uint64 {
	s.e.t.Helper()
	body := schema.End{Rows: rows, Rejected: rejected, Source: schema.Source{Name: s.ds + ".csv", Size: 1234, SHA256: strings.Repeat(s.id[:1], 64)}}
	return s.e.send(s.ds, schema.Envelope{Event: schema.EventEnd, Sync: s.id}, mustJSON(body))
}

func (s *syncPub) abort(code string) uint64 {
	s.e.t.Helper()
	return s.e.send(s.ds, schema.Envelope{Event: schema.EventAbort, Sync: s.id}, mustJSON(schema.Abort{Code: code, Reason: "test"}))
}

// running is a writer running in the background.
type running struct {
	t    testing.TB
	w    *Writer
	stop context.CancelFunc
	done chan struct{}
	err  error // what Run returned, once done is closed
	reg  *prometheus.Registry
}

func (e *env) startWriter(dir string, mod ...func(*Config, *[]Option)) *running {
	e.t.Helper()
	cfg := Config{DataDir: dir, CheckpointInterval: 20 * time.Millisecond}
	reg := prometheus.NewRegistry()
	opts := []Option{WithLogger(testLogger(e.t)), WithRegisterer(reg)}
	for _, m := range mod {
		m(&cfg, &opts)
	}
	w, err := New(cfg, e.nc, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: e.t, w: w, stop: cancel, done: make(chan struct{}), reg: reg}
	go func() {
		r.err = w.Run(ctx)
		close(r.done)
	}()
	e.t.Cleanup(func() { r.close() })
	return r
}

// close stops the writer and returns what Run returned.
func (r *running) close() error {
	r.stop()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		r.t.Error("writer did not stop")
	}
	return r.err
}

// waitApplied waits until the writer has applied stream sequence seq.
func (r *running) waitApplied(seq uint64) {
	r.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for r.w.Applied() < seq {
		if time.Now().After(deadline) {
			r.t.Fatalf("writer applied %d, waiting for %d", r.w.Applied(), seq)
		}
		select {
		case <-r.done:
			r.t.Fatalf("writer stopped: %v", r.err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// gen is what a generation's files hold, checked for consistency.
type gen struct {
	hdr     schema.Header
	records [][]byte
	rejects []string
}

// readGen reads generation g of ds and checks that the header, the index
// and the data agree exactly: every record through the index, nothing
// after the last one.
func readGen(t testing.TB, dir, ds string, g uint64) gen {
	t.Helper()
	folder := filepath.Join(dir, ds)
	data, err := os.ReadFile(filepath.Join(folder, schema.DataFile(g)))
	if err != nil {
		t.Fatal(err)
	}
	h, err := schema.ReadHeader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("generation %d header: %v", g, err)
	}
	idxb, err := os.ReadFile(filepath.Join(folder, schema.IndexFile(g)))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(idxb)) != schema.IndexSize(h.Count) {
		t.Fatalf("index of %d bytes for %d records", len(idxb), h.Count)
	}
	x, err := schema.OpenIndex(bytes.NewReader(idxb))
	if err != nil {
		t.Fatal(err)
	}
	out := gen{hdr: h}
	prev := int64(h.Size)
	var prevSeq uint64
	for i := uint64(0); i < h.Count; i++ {
		start, end, err := x.Range(i, 1)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		_, seq, _ := x.Entry(i)
		if start != prev || seq <= prevSeq || seq > h.LastSeq {
			t.Fatalf("record %d: range [%d,%d) after %d, seq %d after %d (last_seq %d)", i, start, end, prev, seq, prevSeq, h.LastSeq)
		}
		rec := data[start:end]
		if rec[len(rec)-1] != '\n' {
			t.Fatalf("record %d does not end with a newline", i)
		}
		out.records = append(out.records, rec[:len(rec)-1])
		prev, prevSeq = end, seq
	}
	if int64(len(data)) != prev {
		t.Fatalf("generation %d: %d bytes after the last record", g, int64(len(data))-prev)
	}
	if rj, err := os.ReadFile(filepath.Join(folder, schema.RejectsFile(g))); err == nil {
		for _, l := range strings.Split(strings.TrimSuffix(string(rj), "\n"), "\n") {
			if l != "" {
				out.rejects = append(out.rejects, l)
			}
		}
	}
	if uint64(len(out.rejects)) != h.Rejected {
		t.Fatalf("generation %d: %d rejects in the file, header says %d", g, len(out.rejects), h.Rejected)
	}
	return out
}

func current(t testing.TB, dir, ds string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ds, schema.CurrentFile))
	if err != nil {
		t.Fatal(err)
	}
	g, ok := schema.ParseCurrent(b)
	if !ok {
		t.Fatalf("CURRENT %q", b)
	}
	return g
}

func generations(t testing.TB, dir, ds string) []uint64 {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, ds))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	var out []uint64
	for _, e := range entries {
		if g, ok := schema.GenerationOf(e.Name()); ok && !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (e *env) state(ds string) schema.DatasetState {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, schema.StateBucket(schema.DefaultStream))
	if err != nil {
		e.t.Fatal(err)
	}
	entry, err := kv.Get(ctx, ds)
	if err != nil {
		e.t.Fatalf("state of %s: %v", ds, err)
	}
	s, err := schema.DecodeState(entry.Value())
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// msgTime is the stream timestamp of message seq.
func (e *env) msgTime(seq uint64) time.Time {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, schema.DefaultStream)
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		e.t.Fatalf("message %d: %v", seq, err)
	}
	return m.Time
}

// snapshot returns every file of the dataset folders under dir (not the
// writer's own dot files), by relative path.
func snapshot(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() && path != dir && strings.HasPrefix(d.Name(), ".") {
			return fs.SkipDir // the writer's own bookkeeping, not the files it serves
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".") || !strings.Contains(rel, string(filepath.Separator)) {
			return nil
		}
		b, err := os.ReadFile(path)
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameFiles(t testing.TB, want, got map[string][]byte) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s is missing", name)
			continue
		}
		if !bytes.Equal(w, g) {
			i := 0
			for i < min(len(w), len(g)) && w[i] == g[i] {
				i++
			}
			t.Errorf("%s differs at byte %d (%d vs %d bytes): %q vs %q", name, i, len(w), len(g), w[i:min(i+80, len(w))], g[i:min(i+80, len(g))])
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s is extra", name)
		}
	}
}

func counter(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

func testLoggerTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
