package writer

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
)

// TestMain lets the test binary run as a writer process (for kill -9).
func TestMain(m *testing.M) {
	if os.Getenv("ROWPIPE_WRITER_CHILD") == "1" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

func runChild() int {
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		return 1
	}
	cfg := Config{DataDir: os.Getenv("DATA_DIR"), Fsync: os.Getenv("FSYNC"), CheckpointInterval: 10 * time.Millisecond}
	w, err := New(cfg, nc, WithLogger(testLoggerTo(os.Stderr)))
	if err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := w.Run(ctx); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	return 0
}

// stalledFiles checks what a reader would see while the writer is stuck:
// a whole header, and every record it counts whole and right.
func stalledFiles(t *testing.T, dir string, g uint64, s *syncPub) uint64 {
	t.Helper()
	folder := filepath.Join(dir, "products")
	data, err := os.ReadFile(filepath.Join(folder, schema.DataFile(g)))
	if err != nil {
		t.Fatal(err)
	}
	h, err := schema.ReadHeader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("header while the disk is full: %v", err)
	}
	idx, err := os.ReadFile(filepath.Join(folder, schema.IndexFile(g)))
	if err != nil {
		t.Fatal(err)
	}
	x, err := schema.OpenIndex(bytes.NewReader(idx))
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < h.Count; i++ {
		start, end, err := x.Range(i, 1)
		if err != nil || end > int64(len(data)) || string(data[start:end]) != string(s.record(i+1))+"\n" {
			t.Fatalf("record %d counted by the header is not whole: %v", i, err)
		}
	}
	return h.Count
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAFullDiskStopsConsumingKeepsWhatIsDurableAndRecovers(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	f := disk.NewFaulty(disk.OS{})
	w := e.startWriter(dir, func(_ *Config, o *[]Option) { *o = append(*o, withFS(f)) })
	s := e.sync("products", schema.ModeReplace)
	g := s.begin()
	w.waitApplied(s.rows(1, 100))
	before := stalledFiles(t, dir, g, s)

	f.SetSpace(3000) // a few more records, then ENOSPC in the middle of one
	s.rows(101, 400)
	end := s.end(400, 0)
	waitFor(t, "the writer to report the full disk", func() bool {
		err := w.w.Healthy()
		return err != nil && strings.Contains(err.Error(), "no space left")
	})
	if w.w.Applied() >= end {
		t.Fatalf("applied %d with a full disk", w.w.Applied())
	}
	if n := stalledFiles(t, dir, g, s); n < before || n >= 400 {
		t.Fatalf("count %d while the disk is full (was %d)", n, before)
	}
	if _, err := os.Stat(filepath.Join(dir, "products", schema.CurrentFile)); !os.IsNotExist(err) {
		t.Fatalf("CURRENT exists before the end was applied: %v", err)
	}

	f.SetSpace(-1)
	w.waitApplied(end)
	if err := w.w.Healthy(); err != nil {
		t.Fatalf("still unhealthy: %v", err)
	}
	if counter(t, w.w.m.StorageError.WithLabelValues("no_space")) == 0 {
		t.Error("apply_errors_total{kind=no_space} = 0")
	}
	w.close()
	clean := t.TempDir()
	w2 := e.startWriter(clean)
	w2.waitApplied(end)
	w2.close()
	sameFiles(t, snapshot(t, clean), snapshot(t, dir))
}

func TestAFailingCommitIsRetried(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	f := disk.NewFaulty(disk.OS{})
	w := e.startWriter(dir, func(_ *Config, o *[]Option) { *o = append(*o, withFS(f)) })
	s1 := e.sync("products", schema.ModeReplace)
	g1 := s1.begin()
	s1.rows(1, 10)
	w.waitApplied(s1.end(10, 0))

	f.Hook(func(op, name string, _ int64) error {
		if op == "rename" && filepath.Base(name) == schema.CurrentFile {
			return syscall.EIO
		}
		return nil
	})
	s2 := e.sync("products", schema.ModeReplace)
	g2 := s2.begin()
	s2.rows(1, 10)
	end := s2.end(10, 0)
	waitFor(t, "the failing commit", func() bool { return w.w.Healthy() != nil })
	if cur := current(t, dir, "products"); cur != g1 {
		t.Fatalf("CURRENT = %d while the commit fails, want %d", cur, g1)
	}
	f.Hook(nil)
	w.waitApplied(end)
	if cur := current(t, dir, "products"); cur != g2 {
		t.Fatalf("CURRENT = %d, want %d", cur, g2)
	}
	if st := e.state("products"); st.Last == nil || st.Last.Outcome != schema.OutcomeCommitted || st.Last.Sync != s2.id {
		t.Fatalf("state.Last = %+v", st.Last)
	}
}

// TestKill9AtRandomPointsLosesNothing runs the writer as a process and
// kills it with SIGKILL at random moments while syncs stream in; the files
// it ends with are byte for byte those of a writer that never stopped.
func TestKill9AtRandomPointsLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs writer processes")
	}
	e := newEnv(t)
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), "ROWPIPE_WRITER_CHILD=1", "NATS_URL="+e.srv.URL(), "DATA_DIR="+dir, "FSYNC=batch")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	// The publisher: a replace sync with rejects, an append, a resumed
	// sync, each published asynchronously.
	const rows = 60000
	done := make(chan uint64, 1)
	go func() {
		ctx := context.Background()
		pub := func(ds string, ev schema.Envelope, body []byte) {
			h := nats.Header(ev.Headers())
			for {
				_, err := e.js.PublishMsgAsync(&nats.Msg{Subject: schema.Subject(ds), Header: h, Data: body})
				if err == nil {
					break
				}
				// Too many in flight on a loaded machine: let them land.
				select {
				case <-e.js.PublishAsyncComplete():
				case <-time.After(time.Second):
				}
			}
		}
		s := e.sync("products", schema.ModeReplace)
		b := schema.Begin{Version: 1, Dataset: "products", Sync: s.id, Mode: schema.ModeReplace, Fields: testFields, Source: schema.Source{Name: "p.csv", Size: -1}}
		pub("products", schema.Envelope{Event: schema.EventBegin, Sync: s.id}, mustJSON(b))
		for i := uint64(1); i <= rows; i++ {
			pub("products", schema.Envelope{Event: schema.EventRow, Sync: s.id, Row: i}, s.record(i))
			if i%1000 == 0 {
				pub("products", schema.Envelope{Event: schema.EventReject, Sync: s.id, Row: i + 1}, mustJSON(schema.Reject{Line: int(i + 1), Reason: "x"}))
			}
		}
		pub("products", schema.Envelope{Event: schema.EventEnd, Sync: s.id}, mustJSON(schema.End{Rows: rows, Rejected: rows / 1000}))

		a := e.sync("orders", schema.ModeAppend)
		ba := schema.Begin{Version: 1, Dataset: "orders", Sync: a.id, Mode: schema.ModeAppend, Fields: testFields}
		for pass := range 2 { // the ingester resumed: begin and the first rows again
			pub("orders", schema.Envelope{Event: schema.EventBegin, Sync: a.id}, mustJSON(ba))
			for i := uint64(1); i <= rows/2/uint64(2-pass); i++ {
				pub("orders", schema.Envelope{Event: schema.EventRow, Sync: a.id, Row: i}, a.record(i))
			}
		}
		pub("orders", schema.Envelope{Event: schema.EventEnd, Sync: a.id}, mustJSON(schema.End{Rows: rows / 2}))
		select {
		case <-e.js.PublishAsyncComplete():
		case <-time.After(60 * time.Second):
			t.Error("publishing did not complete")
		}
		st, err := e.js.Stream(ctx, schema.DefaultStream)
		if err != nil {
			t.Error(err)
		}
		info, _ := st.Info(ctx)
		done <- info.State.LastSeq
	}()

	progress := func() uint64 { return buildingLastSeq(dir, "products") + buildingLastSeq(dir, "orders") }
	var last, prev uint64
	kills := 0
	cmd := start()
	for kills < 10 {
		// Kill it a random moment after it has made some progress.
		waitFor(t, "the writer to make progress", func() bool {
			select {
			case last = <-done:
			default:
			}
			return progress() > prev || last != 0 && headerLastSeq(dir, "orders") >= last
		})
		time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		kills++
		prev = progress()
		t.Logf("kill %d: products at sequence %d, orders at %d", kills, buildingLastSeq(dir, "products"), buildingLastSeq(dir, "orders"))
		cmd = start()
	}
	if last == 0 {
		last = <-done
	}
	// Let the last one finish.
	waitFor(t, "the killed writer's files to catch up", func() bool {
		return headerLastSeq(dir, "orders") >= last
	})
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("writer exit after SIGTERM: %v", err)
	}
	t.Logf("killed the writer %d times", kills)

	clean := t.TempDir()
	w := e.startWriter(clean)
	w.waitApplied(last)
	w.close()
	sameFiles(t, snapshot(t, clean), snapshot(t, dir))
	if got := readGen(t, dir, "products", current(t, dir, "products")); len(got.records) != rows {
		t.Fatalf("%d records", len(got.records))
	}
}

// buildingLastSeq is the highest last_seq of the dataset's generations.
func buildingLastSeq(dir, ds string) uint64 {
	entries, _ := os.ReadDir(filepath.Join(dir, ds))
	var last uint64
	for _, e := range entries {
		if g, ok := schema.GenerationOf(e.Name()); ok && strings.HasSuffix(e.Name(), ".ndjson") && !strings.Contains(e.Name(), "rejects") {
			if f, err := os.Open(filepath.Join(dir, ds, schema.DataFile(g))); err == nil {
				if h, err := schema.ReadHeader(f); err == nil {
					last = max(last, h.LastSeq)
				}
				f.Close()
			}
		}
	}
	return last
}

func headerLastSeq(dir, ds string) uint64 {
	b, err := os.ReadFile(filepath.Join(dir, ds, schema.CurrentFile))
	if err != nil {
		return 0
	}
	g, _ := schema.ParseCurrent(b)
	f, err := os.Open(filepath.Join(dir, ds, schema.DataFile(g)))
	if err != nil {
		return 0
	}
	defer f.Close()
	h, err := schema.ReadHeader(f)
	if err != nil {
		return 0
	}
	return h.LastSeq
}
