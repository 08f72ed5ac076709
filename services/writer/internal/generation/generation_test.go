package generation

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

func newHeader(gen uint64) schema.Header {
	return schema.Header{Dataset: "products", Generation: gen, State: schema.StateBuilding, Mode: schema.ModeReplace,
		Sync: "abc123", Fields: []string{"a", "b"}, Source: schema.Source{Name: "p.csv", Size: -1},
		CreatedAt: t0, UpdatedAt: t0, LastSeq: gen}
}

func rec(i int) []byte { return []byte(fmt.Sprintf(`{"a":"%d","b":"value %d"}`, i, i)) }

// appendBatch adds records from..to-1 with stream sequence 100+i.
func appendBatch(g *Gen, from, to int) {
	for i := from; i < to; i++ {
		g.Append(rec(i), uint64(100+i), t0.Add(time.Duration(i)*time.Second))
	}
}

// check reads generation gen through the schema readers and compares it
// with records 0..n-1, and nothing after them.
func check(t *testing.T, dir string, gen uint64, n int) schema.Header {
	t.Helper()
	return checkFiles(t, dir, gen, n, true)
}

// checkFiles is check; with exact false, bytes past the counted records
// (a batch that failed half way) are allowed.
func checkFiles(t *testing.T, dir string, gen uint64, n int, exact bool) schema.Header {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, schema.DataFile(gen)))
	if err != nil {
		t.Fatal(err)
	}
	h, err := schema.ReadHeader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("header: %v", err)
	}
	if h.Count != uint64(n) {
		t.Fatalf("count %d, want %d", h.Count, n)
	}
	idx, _ := os.ReadFile(filepath.Join(dir, schema.IndexFile(gen)))
	if int64(len(idx)) < schema.IndexSize(h.Count) || exact && int64(len(idx)) != schema.IndexSize(h.Count) {
		t.Fatalf("index %d bytes for %d records", len(idx), n)
	}
	x, err := schema.OpenIndex(bytes.NewReader(idx))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{}
	for i := range n {
		want = append(append(want, rec(i)...), '\n')
		s, e, err := x.Range(uint64(i), 1)
		if err != nil || string(data[s:e]) != string(rec(i))+"\n" {
			t.Fatalf("record %d: [%d,%d) %v", i, s, e, err)
		}
	}
	got := data[h.Size:]
	if !exact && len(got) > len(want) {
		got = got[:len(want)]
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("records differ:\n%q\n%q", got, want)
	}
	return h
}

func files(dir string, fsys disk.FS, p Policy) Files { return Files{FS: fsys, Dir: dir, Policy: p} }

func TestBatchesAreCountedOnlyOnceWritten(t *testing.T) {
	for _, p := range []Policy{SyncBatch, SyncAlways, SyncOff} {
		t.Run(p.String(), func(t *testing.T) {
			dir := t.TempDir()
			g, err := Create(files(dir, disk.OS{}, p), newHeader(7))
			if err != nil {
				t.Fatal(err)
			}
			check(t, dir, 7, 0)
			appendBatch(g, 0, 10)
			if g.Records() != 10 || g.Header().Count != 0 {
				t.Fatalf("before Flush: records %d, header count %d", g.Records(), g.Header().Count)
			}
			check(t, dir, 7, 0)
			if err := g.Flush(); err != nil {
				t.Fatal(err)
			}
			appendBatch(g, 10, 25)
			if err := g.Flush(); err != nil {
				t.Fatal(err)
			}
			h := check(t, dir, 7, 25)
			if h.LastSeq != 124 || !h.UpdatedAt.Equal(t0.Add(24*time.Second)) || !h.CreatedAt.Equal(t0) {
				t.Errorf("header %+v", h)
			}
			g.Close()
			g, rec, err := Open(files(dir, disk.OS{}, p), 7, Recovery{})
			if err != nil || rec != (Recovered{}) {
				t.Fatalf("Open: %v %+v", err, rec)
			}
			appendBatch(g, 25, 30)
			if err := g.Flush(); err != nil {
				t.Fatal(err)
			}
			check(t, dir, 7, 30)
			g.Close()
		})
	}
}

// createFaulty creates generation gen in a fresh folder, on a file layer
// that can inject faults, syncing batches.
func createFaulty(t *testing.T, gen uint64) (string, *disk.Faulty, *Gen) {
	t.Helper()
	dir := t.TempDir()
	f := disk.NewFaulty(disk.OS{})
	g, err := Create(files(dir, f, SyncBatch), newHeader(gen))
	if err != nil {
		t.Fatal(err)
	}
	return dir, f, g
}

func TestOpenCutsATornTail(t *testing.T) {
	dir, f, g := createFaulty(t, 3)
	appendBatch(g, 0, 5)
	g.AppendReject([]byte(`{"line":4,"reason":"x"}`), 4, 104, t0)
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	// The next batch reaches the disk, the header that would count it
	// does not (the process dies between the two).
	appendBatch(g, 5, 9)
	g.AppendReject([]byte(`{"line":8,"reason":"x"}`), 8, 108, t0)
	f.Hook(func(op, name string, off int64) error {
		if op == "write" && off == 0 {
			return syscall.EIO
		}
		return nil
	})
	if err := g.Flush(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Flush = %v", err)
	}
	g.Close()
	// ... and a half-written record and index entry after that.
	appendFile(t, filepath.Join(dir, schema.DataFile(3)), []byte(`{"a":"9","b":"val`))
	appendFile(t, filepath.Join(dir, schema.IndexFile(3)), make([]byte, 7))

	g, rec, err := Open(files(dir, disk.OS{}, SyncBatch), 3, Recovery{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.DataTruncated == 0 || rec.IndexTruncated == 0 || rec.RejectsTruncated == 0 || rec.TornHeader {
		t.Errorf("recovered %+v", rec)
	}
	if g.Rejects() != 1 || g.LastRejectLine() != 4 {
		t.Errorf("rejects %d, last line %d", g.Rejects(), g.LastRejectLine())
	}
	check(t, dir, 3, 5)
	appendBatch(g, 5, 12)
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	check(t, dir, 3, 12)
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRebuildsATornHeaderFromTheIndex(t *testing.T) {
	dir, f, g := createFaulty(t, 3)
	base := g.Header()
	appendBatch(g, 0, 5)
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	appendBatch(g, 5, 9)
	g.AppendReject([]byte(`{"line":3,"reason":"x"}`), 3, 200, t0)
	// The header rewrite is torn: half of it reaches the disk.
	f.Hook(func(op, name string, off int64) error {
		if op == "write" && off == 0 && strings.HasSuffix(name, schema.DataFile(3)) {
			return errors.New("torn")
		}
		return nil
	})
	hb, _ := schema.EncodeHeader(func() schema.Header { h := g.Header(); h.Count = 9; return h }())
	if err := g.Flush(); err == nil {
		t.Fatal("Flush succeeded")
	}
	g.Close()
	path := filepath.Join(dir, schema.DataFile(3))
	w, _ := os.OpenFile(path, os.O_RDWR, 0)
	w.WriteAt(hb[:bytes.Index(hb, []byte(`"count"`))+10], 0) // the new count, the old checksum
	w.Close()
	appendFile(t, filepath.Join(dir, schema.IndexFile(3)), schema.AppendIndexEntry(nil, 1<<30, 999)) // a wild entry

	if _, _, err := Open(files(dir, disk.OS{}, SyncBatch), 3, Recovery{}); !errors.Is(err, schema.ErrHeaderTorn) {
		t.Fatalf("Open without a base = %v, want ErrHeaderTorn", err)
	}
	timeOf := func(seq uint64) (time.Time, error) { return t0.Add(time.Duration(seq) * time.Minute), nil }
	g, rec, err := Open(files(dir, disk.OS{}, SyncBatch), 3, Recovery{Base: &base, TimeOf: timeOf})
	if err != nil {
		t.Fatal(err)
	}
	if !rec.TornHeader || rec.IndexTruncated != schema.IndexEntrySize {
		t.Errorf("recovered %+v", rec)
	}
	h := check(t, dir, 3, 9)
	if h.LastSeq != 108 || !h.UpdatedAt.Equal(t0.Add(108*time.Minute)) || h.Rejected != 1 || h.Sync != base.Sync || h.State != schema.StateBuilding {
		t.Errorf("rebuilt header %+v", h)
	}
	g.Close()
}

func TestRollBackRestoresTheEarlierGeneration(t *testing.T) {
	dir := t.TempDir()
	fs := files(dir, disk.OS{}, SyncBatch)
	h := newHeader(5)
	h.State, h.Mode = schema.StateComplete, schema.ModeAppend
	g, err := Create(fs, h)
	if err != nil {
		t.Fatal(err)
	}
	appendBatch(g, 0, 4)
	g.AppendReject([]byte(`{"line":2}`), 2, 102, t0)
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	at := g.Header()
	before, _ := os.ReadFile(filepath.Join(dir, schema.DataFile(5)))
	appendBatch(g, 4, 20)
	g.AppendReject([]byte(`{"line":9}`), 9, 109, t0)
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	appendBatch(g, 20, 22) // not even flushed
	if err := g.RollBack(at); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, schema.DataFile(5)))
	if !bytes.Equal(before, after) {
		t.Fatal("data file differs after the roll back")
	}
	check(t, dir, 5, 4)
	if rj, _ := os.ReadFile(filepath.Join(dir, schema.RejectsFile(5))); string(rj) != "{\"line\":2}\n" {
		t.Fatalf("rejects = %q", rj)
	}
	if g.LastRejectLine() != 2 {
		t.Errorf("last reject line %d", g.LastRejectLine())
	}
	appendBatch(g, 4, 6)
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	check(t, dir, 5, 6)
}

func TestAFullDiskNeverLeavesAPartialHeader(t *testing.T) {
	dir, f, g := createFaulty(t, 9)
	appendBatch(g, 0, 10)
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	// Each round leaves a partial batch behind, which the next round
	// overwrites; the rounds stay short of a whole batch (~500 bytes).
	for space := int64(0); space < 150; space += 37 {
		f.SetSpace(space)
		appendBatch(g, int(g.Records()), int(g.Records())+20)
		err := g.Flush()
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("space %d: Flush = %v, want ENOSPC", space, err)
		}
		// Whatever got written, the header is whole and counts only whole
		// records.
		checkFiles(t, dir, 9, 10, false)
		g.drop() // forget the batch; the next round writes a new one
	}
	f.SetSpace(-1)
	appendBatch(g, 10, 40)
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	check(t, dir, 9, 40)
	// The same, retried: the failed batch is kept and written again at the
	// same offsets.
	f.SetSpace(100)
	appendBatch(g, 40, 60)
	if err := g.Flush(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush = %v", err)
	}
	checkFiles(t, dir, 9, 40, false)
	f.SetSpace(-1)
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	check(t, dir, 9, 60)
	g.Close()
}

func TestScanLinesStopsAtTheFirstDamagedLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r")
	content := strings.Repeat(`{"line":1}`+"\n", 3) + `{"line":17,"raw":"` + strings.Repeat("x", 70000) + `"}` + "\n" + `{"line":18}` + "\nnot json\n"
	os.WriteFile(path, []byte(content), 0o644)
	f, _ := disk.OS{}.OpenFile(path, os.O_RDONLY, 0)
	defer f.Close()
	end, lines, last, err := scanLines(f, int64(len(content)), ^uint64(0))
	if err != nil || lines != 5 || last != 18 || end != int64(len(content)-len("not json\n")) {
		t.Fatalf("scanLines = %d %d %d %v", end, lines, last, err)
	}
	end, lines, last, _ = scanLines(f, int64(len(content)), 4)
	if lines != 4 || last != 17 || end != int64(strings.Index(content, `{"line":18}`)) {
		t.Fatalf("first 4 lines: %d %d %d", end, lines, last)
	}
}
