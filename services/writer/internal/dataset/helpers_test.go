package dataset

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
	"github.com/rowpipe/rowpipe/services/writer/internal/generation"
	"github.com/rowpipe/rowpipe/services/writer/internal/metrics"
)

// fakeEffects is the broker as the dataset sees it: the states published,
// the purges asked for and the stream timestamps. A fake of our own seam,
// so these tests need no NATS server.
type fakeEffects struct {
	mu       sync.Mutex
	states   []schema.DatasetState
	purged   []uint64
	times    map[uint64]time.Time
	failWith error // PublishState fails with it while set
}

func newFakeEffects() *fakeEffects { return &fakeEffects{times: map[uint64]time.Time{}} }

func (f *fakeEffects) PublishState(ctx context.Context, s schema.DatasetState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return f.failWith
	}
	if n := len(f.states); n > 0 && f.states[n-1].Seq >= s.Seq {
		return nil
	}
	if len(schema.EncodeState(s)) > schema.MaxMessageBytes {
		return errors.New("nats: maximum payload exceeded")
	}
	f.states = append(f.states, s)
	return nil
}

func (f *fakeEffects) Purge(ctx context.Context, dataset string, before uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.purged = append(f.purged, before)
	return nil
}

func (f *fakeEffects) MessageTime(ctx context.Context, seq uint64) (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.times[seq]
	if !ok {
		return time.Time{}, fmt.Errorf("no message %d", seq)
	}
	return t, nil
}

// last is the state published last.
func (f *fakeEffects) last() schema.DatasetState {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.states) == 0 {
		return schema.DatasetState{}
	}
	return f.states[len(f.states)-1]
}

// rig is one DATA_DIR with dataset "products" on a file layer.
type rig struct {
	t    testing.TB
	dir  string
	fs   disk.FS
	keep int
	// policy is the fsync policy (SyncBatch unless set before open).
	policy generation.Policy
	fx     *fakeEffects
	d      *Dataset
}

func newRig(t testing.TB, fsys disk.FS, keep int) *rig {
	t.Helper()
	return newRigPolicy(t, fsys, keep, generation.SyncBatch)
}

func newRigPolicy(t testing.TB, fsys disk.FS, keep int, p generation.Policy) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), fs: fsys, keep: keep, policy: p, fx: newFakeEffects()}
	r.open()
	return r
}

func (r *rig) config() Config {
	return Config{
		Name: "products", Dir: filepath.Join(r.dir, "products"), StatePath: StatePath(r.dir, "products"),
		FS: r.fs, Policy: r.policy, Keep: r.keep,
		Log: slog.New(slog.DiscardHandler), Metrics: metrics.New(nil), Effects: r.fx,
	}
}

// open opens the dataset from its files, as a start of the writer does.
func (r *rig) open() {
	r.t.Helper()
	d, err := Open(context.Background(), r.config())
	if err != nil {
		r.t.Fatalf("Open: %v", err)
	}
	if err := d.Repair(context.Background()); err != nil {
		r.t.Fatalf("Repair: %v", err)
	}
	r.d = d
}

// restart closes the dataset (what was not flushed is lost) and opens it again.
func (r *rig) restart() {
	r.t.Helper()
	r.d.Close()
	r.open()
}

// apply applies m and flushes, as the writer does for a batch of one.
func (r *rig) apply(m Msg) error {
	r.fx.mu.Lock()
	r.fx.times[m.Seq] = m.Time
	r.fx.mu.Unlock()
	if err := r.d.Apply(context.Background(), m); err != nil {
		return err
	}
	return r.d.Flush(context.Background())
}

// mustApply applies every message, failing the test on any error.
func (r *rig) mustApply(ms ...Msg) {
	r.t.Helper()
	for _, m := range ms {
		if err := r.apply(m); err != nil {
			r.t.Fatalf("apply %s seq %d: %v", m.Env.Event, m.Seq, err)
		}
	}
}

// stream numbers messages as a stream does and builds rowpipe's messages.
type stream struct {
	seq    uint64
	fields []string
	enc    *schema.RecordEncoder
}

func newStream(fields ...string) *stream {
	if len(fields) == 0 {
		fields = []string{"Handle", "Title", "Body (HTML)"}
	}
	enc, err := schema.NewRecordEncoder(fields)
	if err != nil {
		panic(err)
	}
	return &stream{fields: fields, enc: enc}
}

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func (s *stream) msg(ev schema.Event, sync string, row uint64, body []byte) Msg {
	s.seq++
	return Msg{Seq: s.seq, Time: epoch.Add(s.seqTime()), Env: schema.Envelope{Event: ev, Sync: sync, Row: row}, Body: body}
}

// seqTime is the stream timestamp of the last message, after epoch.
func (s *stream) seqTime() time.Duration { return time.Duration(s.seq) * time.Millisecond }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func (s *stream) beginBody(sync string, mode schema.Mode, fields []string) schema.Begin {
	return schema.Begin{Version: schema.EnvelopeVersion, Dataset: "products", Sync: sync, Mode: mode, Fields: fields,
		Source: schema.Source{Name: "products.csv", Size: -1}, StartedAt: epoch}
}

func (s *stream) begin(sync string, mode schema.Mode) Msg {
	return s.msg(schema.EventBegin, sync, 0, mustJSON(s.beginBody(sync, mode, s.fields)))
}

// record is the body of row i of sync.
func (s *stream) record(sync string, i uint64) []byte {
	vals := make([]string, len(s.fields))
	for k := range vals {
		vals[k] = fmt.Sprintf("%s-%d-%d <p>\"é\"</p>", sync, i, k)
	}
	b, err := s.enc.Append(nil, vals)
	if err != nil {
		panic(err)
	}
	return b
}

func (s *stream) row(sync string, i uint64) Msg {
	return s.msg(schema.EventRow, sync, i, s.record(sync, i))
}

func (s *stream) rows(sync string, from, to uint64) []Msg {
	var out []Msg
	for i := from; i <= to; i++ {
		out = append(out, s.row(sync, i))
	}
	return out
}

func (s *stream) reject(sync string, line uint64) Msg {
	return s.msg(schema.EventReject, sync, line, mustJSON(schema.Reject{Line: int(line), Reason: "wrong number of fields", Error: fmt.Sprintf("products.csv:%d: wrong number of fields", line)}))
}

func (s *stream) end(sync string, rows, rejected uint64) Msg {
	return s.msg(schema.EventEnd, sync, 0, mustJSON(schema.End{Rows: rows, Rejected: rejected, Source: schema.Source{Name: "products.csv", Size: 1234, SHA256: strings.Repeat("ab", 32)}}))
}

func (s *stream) abort(sync, code string) Msg {
	return s.msg(schema.EventAbort, sync, 0, mustJSON(schema.Abort{Code: code, Reason: "line 7: wrong number of fields"}))
}

// sync is a whole sync: begin, rows 1..n, end.
func (s *stream) sync(sync string, mode schema.Mode, n uint64) []Msg {
	out := []Msg{s.begin(sync, mode)}
	out = append(out, s.rows(sync, 1, n)...)
	return append(out, s.end(sync, n, 0))
}

// snapshot is every file under dir (dataset folder and writer state), by
// path relative to dir.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(t testing.TB, want, got map[string]string) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s is missing", name)
		case w != g:
			i := 0
			for i < min(len(w), len(g)) && w[i] == g[i] {
				i++
			}
			t.Errorf("%s differs at byte %d: %.80q vs %.80q", name, i, w[i:], g[i:])
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s is extra", name)
		}
	}
}

// checkFiles proves what a reader and a restart rely on: CURRENT, if any,
// names a complete generation whose header, index and records decode and
// agree; the state file names only generations whose files exist, and its
// current generation is the one CURRENT names.
func checkFiles(t testing.TB, dir string) {
	t.Helper()
	if err := filesError(dir); err != nil {
		t.Fatal(err)
	}
}

func filesError(root string) error {
	dir := filepath.Join(root, "products")
	fsys := disk.OS{}
	cur, hasCur := readCurrent(fsys, dir)
	p, hasState, err := loadState(fsys, StatePath(root, "products"))
	if err != nil {
		return err
	}
	if hasState {
		// CURRENT names the state's current generation, or, between a
		// commit's rename and its record, the one the state says is built.
		named := func(g uint64) bool {
			return p.Current != nil && p.Current.Generation == g || p.Building != nil && p.Building.Begin == g ||
				p.Append != nil && p.Append.Header.Generation == g
		}
		if hasCur && !named(cur) {
			return fmt.Errorf("CURRENT names %d, the state %+v", cur, p)
		}
		if c := p.Current; c != nil {
			if err := generationError(dir, c.Generation, false); err != nil {
				return fmt.Errorf("the state's current generation: %w", err)
			}
		}
		if b := p.Building; b != nil {
			if _, err := os.Stat(filepath.Join(dir, schema.DataFile(b.Begin))); err != nil {
				return fmt.Errorf("the state names building generation %d: %w", b.Begin, err)
			}
		}
	}
	if !hasCur {
		return nil
	}
	return generationError(dir, cur, true)
}

// generationError decodes generation g: header, index, every record; and
// if complete is set, checks that its header says complete.
func generationError(dir string, g uint64, complete bool) error {
	data, err := os.ReadFile(filepath.Join(dir, schema.DataFile(g)))
	if err != nil {
		return fmt.Errorf("CURRENT names %d: %w", g, err)
	}
	h, err := schema.ReadHeader(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("generation %d: %w", g, err)
	}
	if complete && h.State != schema.StateComplete || h.Generation != g {
		return fmt.Errorf("generation %d: header of generation %d, state %s", g, h.Generation, h.State)
	}
	idx, err := os.ReadFile(filepath.Join(dir, schema.IndexFile(g)))
	if err != nil {
		return err
	}
	if int64(len(idx)) < schema.IndexSize(h.Count) {
		return fmt.Errorf("generation %d: index of %d bytes for %d records", g, len(idx), h.Count)
	}
	x, err := schema.OpenIndex(bytes.NewReader(idx))
	if err != nil {
		return err
	}
	shape, err := schema.NewRecordDecoder(h.Fields)
	if err != nil {
		return err
	}
	for i := uint64(0); i < h.Count; i++ {
		start, end, err := x.Range(i, 1)
		if err != nil {
			return fmt.Errorf("generation %d record %d: %w", g, i, err)
		}
		if end > int64(len(data)) || data[end-1] != '\n' {
			return fmt.Errorf("generation %d record %d: not a whole line", g, i)
		}
		if err := shape.Check(data[start : end-1]); err != nil {
			return fmt.Errorf("generation %d record %d: %w", g, i, err)
		}
	}
	return nil
}

// records reads the current generation's records.
func records(t testing.TB, dir string) []string {
	t.Helper()
	d := filepath.Join(dir, "products")
	g, ok := readCurrent(disk.OS{}, d)
	if !ok {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(d, schema.DataFile(g)))
	if err != nil {
		t.Fatal(err)
	}
	h, err := schema.ReadHeader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data[h.Size:]), "\n"), "\n")
	if h.Count == 0 {
		return nil
	}
	return lines[:h.Count]
}
