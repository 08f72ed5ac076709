package faults

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/writer"
)

// Binaries built once, by the first test that needs them, from the
// services' main packages: the process-level tests drive them only through
// their CLI and environment (CONTRACT.md), exactly as a deployment does.
var (
	binDir      string
	writerBin   string
	ingesterBin string
	buildOnce   sync.Once
	buildErr    error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// needBinaries builds bin/writer and bin/ingester (go build, so the build
// cache makes it cheap after the first time) or fails the test.
func needBinaries(t testing.TB) {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "rowpipe-faults-bin-"); buildErr != nil {
			return
		}
		writerBin, ingesterBin = filepath.Join(binDir, "writer"), filepath.Join(binDir, "ingester")
		var wg sync.WaitGroup
		var mu sync.Mutex
		for bin, pkg := range map[string]string{
			writerBin:   "github.com/rowpipe/rowpipe/services/writer",
			ingesterBin: "github.com/rowpipe/rowpipe/services/ingester",
		} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
					mu.Lock()
					buildErr = errors.Join(buildErr, fmt.Errorf("go build %s: %v\n%s", pkg, err, out))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// seed is the test's random seed: ROWPIPE_FAULT_SEED if set (to replay a
// failure), else a fresh one; it is logged either way.
func seed(t *testing.T) *rand.Rand {
	t.Helper()
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("ROWPIPE_FAULT_SEED"); v != "" {
		var err error
		if s, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("ROWPIPE_FAULT_SEED=%q: %v", v, err)
		}
	}
	t.Logf("seed %d (replay with ROWPIPE_FAULT_SEED=%d)", s, s)
	return rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15))
}

// syncBuffer is a bytes.Buffer safe for a process's output copier and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a child process; it is SIGKILLed at the end of the test if it
// is still running.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	done   chan struct{}
	err    error
}

func startProc(t testing.TB, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s (pid %d) stdout %q, stderr:\n%s", p.name, p.cmd.Process.Pid, tail(p.stdout.String(), 1000), tail(p.stderr.String(), 3000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	if !p.exited() {
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// wait waits up to d for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%s did not exit within %s; stderr:\n%s", p.name, d, tail(p.stderr.String(), 3000))
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("%s: %v", p.name, p.err)
	return -1
}

// startWriterProc runs bin/writer on dataDir against natsURL.
func startWriterProc(t testing.TB, natsURL, dataDir string, extra ...string) *proc {
	t.Helper()
	env := append([]string{"NATS_URL=" + natsURL, "DATA_DIR=" + dataDir, "METRICS_ADDR=127.0.0.1:0", "LOG_LEVEL=info"}, extra...)
	return startProc(t, "writer", writerBin, env)
}

// startWriter runs the writer in-process (its exported front door) on a
// connection that reconnects forever; it stops at the end of the test, or
// earlier with stopWriter.
func startWriter(t testing.TB, nc *nats.Conn, dataDir string) func() {
	t.Helper()
	w, err := writer.New(writer.Config{DataDir: dataDir, MetricsAddr: "unused"}, nc, writer.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("writer Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// streamLastSeq is the ROWS stream's last sequence.
func streamLastSeq(t *testing.T, nc *nats.Conn) uint64 {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, schema.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// datasetState reads the writer's published state of ds.
func datasetState(t *testing.T, nc *nats.Conn, ds string) schema.DatasetState {
	t.Helper()
	st, err := stateOf(nc, ds)
	if err != nil {
		t.Fatalf("state of %s: %v", ds, err)
	}
	return st
}

func stateOf(nc *nats.Conn, ds string) (schema.DatasetState, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return schema.DatasetState{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, schema.StateBucket(schema.DefaultStream))
	if err != nil {
		return schema.DatasetState{}, err
	}
	e, err := kv.Get(ctx, ds)
	if err != nil {
		return schema.DatasetState{}, err
	}
	return schema.DecodeState(e.Value())
}

// ---- generated CSVs and their expected records ----

// genCSV writes a deterministic CSV of rows data rows (quoted commas,
// doubled quotes, embedded newlines, non-ASCII text, a variable-length
// field) and returns the expected record bodies, computed from an
// independent encoding/csv read of the file and schema's record encoder.
// version goes into every row, so two files never share a record.
func genCSV(t testing.TB, path string, rows, version int, seed uint64) [][]byte {
	t.Helper()
	return genCSVPad(t, path, rows, version, seed, 0)
}

// genCSVPad is genCSV with pad more bytes in every row's body.
func genCSVPad(t testing.TB, path string, rows, version int, seed uint64, pad int) [][]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	r := rand.New(rand.NewPCG(seed, uint64(version)))
	words := []string{"Classic", "Crème", "Großes", "北欧", "O'Reilly & Sons", "Señorita", "Tote, Bag", `the "best"`, "Café"}
	w.Write([]string{"Handle", "Version", "Row", "Title", "Body (HTML)", "Price", "Tags", "Tags"})
	for i := 1; i <= rows; i++ {
		body := "<p>" + words[r.IntN(len(words))] + "</p>" + strings.Repeat("x", r.IntN(120)+pad)
		if i%97 == 0 {
			body += "\nsecond line, \"quoted\""
		}
		w.Write([]string{
			fmt.Sprintf("item-%d-%d", version, i), strconv.Itoa(version), strconv.Itoa(i),
			words[r.IntN(len(words))] + " " + words[r.IntN(len(words))],
			body,
			fmt.Sprintf("%d.%02d", r.IntN(500), r.IntN(100)),
			"summer, sale", "",
		})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return expectedRecords(t, path)
}

func expectedRecords(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := csv.NewReader(f)
	header, err := rd.Read()
	if err != nil {
		t.Fatal(err)
	}
	fields, _ := schema.UniqueFields(header)
	enc, err := schema.NewRecordEncoder(fields)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		rec, err := rd.Read()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := enc.Append(nil, rec)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
}

// ---- files on disk ----

// currentGen reads DATA_DIR/<ds>/CURRENT; 0 if there is none.
func currentGen(dir, ds string) uint64 {
	b, err := os.ReadFile(filepath.Join(dir, ds, schema.CurrentFile))
	if err != nil {
		return 0
	}
	g, _ := schema.ParseCurrent(b)
	return g
}

// headerOf reads the header of generation g; ok false if it is not readable.
func headerOf(dir, ds string, g uint64) (schema.Header, bool) {
	f, err := os.Open(filepath.Join(dir, ds, schema.DataFile(g)))
	if err != nil {
		return schema.Header{}, false
	}
	defer f.Close()
	h, err := schema.ReadHeader(f)
	return h, err == nil
}

// generationsOn lists the generations that have a data file.
func generationsOn(dir, ds string) []uint64 {
	entries, _ := os.ReadDir(filepath.Join(dir, ds))
	var gens []uint64
	for _, e := range entries {
		if g, ok := schema.GenerationOf(e.Name()); ok && e.Name() == schema.DataFile(g) {
			gens = append(gens, g)
		}
	}
	return gens
}

// newestHeader is the header of the dataset's highest generation (the one
// being built, or the current one).
func newestHeader(dir, ds string) schema.Header {
	var best schema.Header
	for _, g := range generationsOn(dir, ds) {
		if h, ok := headerOf(dir, ds, g); ok && g >= best.Generation {
			best = h
		}
	}
	return best
}

// committedAt reports whether CURRENT names a complete generation whose
// header has applied the stream up to seq.
func committedAt(dir, ds string, seq uint64) bool {
	g := currentGen(dir, ds)
	if g == 0 {
		return false
	}
	h, ok := headerOf(dir, ds, g)
	return ok && h.State == schema.StateComplete && h.LastSeq >= seq
}

// checkGeneration proves the current generation of ds is exactly want: a
// complete header that counts len(want) records, an index of exactly that
// many entries whose ranges hold, in order, each expected record and its
// newline, and a data file that ends with the last one. It returns the header.
func checkGeneration(t *testing.T, dir, ds string, want [][]byte) schema.Header {
	t.Helper()
	g := currentGen(dir, ds)
	if g == 0 {
		t.Fatalf("%s: no CURRENT", ds)
	}
	data, err := os.ReadFile(filepath.Join(dir, ds, schema.DataFile(g)))
	if err != nil {
		t.Fatal(err)
	}
	h, err := schema.ReadHeader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("generation %d header: %v", g, err)
	}
	if h.Generation != g || h.State != schema.StateComplete || h.Count != uint64(len(want)) || h.Dataset != ds {
		t.Fatalf("generation %d header: generation %d, state %s, count %d, dataset %s; want generation %d complete with %d records",
			g, h.Generation, h.State, h.Count, h.Dataset, g, len(want))
	}
	idx, err := os.ReadFile(filepath.Join(dir, ds, schema.IndexFile(g)))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(idx)) != schema.IndexSize(h.Count) {
		t.Fatalf("index of generation %d: %d bytes, want %d for %d records", g, len(idx), schema.IndexSize(h.Count), h.Count)
	}
	x, err := schema.OpenIndex(bytes.NewReader(idx))
	if err != nil {
		t.Fatal(err)
	}
	if x.DataStart() != int64(h.Size) {
		t.Fatalf("index data start %d, header size %d", x.DataStart(), h.Size)
	}
	var prevSeq uint64
	for i := range want {
		start, end, err := x.Range(uint64(i), 1)
		if err != nil {
			t.Fatalf("index entry %d: %v", i, err)
		}
		if end > int64(len(data)) || !bytes.Equal(data[start:end], append(append([]byte(nil), want[i]...), '\n')) {
			t.Fatalf("record %d (row %d) differs from the CSV:\n got %.200q\nwant %.200q", i, i+1, data[start:min(end, int64(len(data)))], want[i])
		}
		_, seq, _ := x.Entry(uint64(i))
		if seq <= prevSeq {
			t.Fatalf("index entry %d: stream seq %d after %d", i, seq, prevSeq)
		}
		prevSeq = seq
	}
	if _, end, _ := x.Range(h.Count-1, 1); end != int64(len(data)) {
		t.Fatalf("data file has %d bytes after its last counted record", int64(len(data))-end)
	}
	return h
}

// datasetFiles returns the files of DATA_DIR/<ds>/ (not the writer's own
// dot files) by name.
func datasetFiles(t *testing.T, dir, ds string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, ds))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, ds, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func sameFiles(t *testing.T, want, got map[string][]byte) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s is missing", name)
		case !bytes.Equal(w, g):
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
