package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/datadirtest"
	"github.com/rowpipe/rowpipe/services/api/internal/find"
)

// leaseOn opens a Store on dir and leases dataset name's current
// generation, both released when the test ends.
func leaseOn(t *testing.T, dir, name string) Lease {
	t.Helper()
	s := New(dir, nil)
	t.Cleanup(func() { s.Close() })
	l, err := s.Acquire(name, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Release)
	return l
}

func readRange(t *testing.T, l Lease, first, n uint64) []byte {
	t.Helper()
	start, end, err := l.Range(first, n)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, end-start)
	if _, err := l.ReadAt(b, start); err != nil {
		t.Fatal(err)
	}
	return b
}

func wantLines(t *testing.T, g datadirtest.Gen, first, n int) []byte {
	t.Helper()
	var b []byte
	for i := first; i < first+n; i++ {
		b = append(b, g.Line(t, i)...)
		b = append(b, '\n')
	}
	return b
}

func TestAcquireCurrentServesTheRecordsOfAnyRange(t *testing.T) {
	dir := t.TempDir()
	g := datadirtest.Gen{Dataset: "products", Generation: 7, Rows: 50}
	datadirtest.Publish(t, dir, g)
	s := New(dir, nil)
	l, err := s.Acquire("products", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if l.Header.Generation != 7 || l.Header.Count != 50 || l.Header.State != schema.StateComplete {
		t.Fatalf("header %+v", l.Header)
	}
	for _, c := range [][2]int{{0, 1}, {0, 50}, {10, 7}, {49, 1}} {
		if got, want := readRange(t, l, uint64(c[0]), uint64(c[1])), wantLines(t, g, c[0], c[1]); !bytes.Equal(got, want) {
			t.Errorf("records %d+%d:\n got %q\nwant %q", c[0], c[1], got, want)
		}
	}
	if _, _, err := l.Range(45, 6); err == nil {
		t.Error("a range past the header's count was allowed")
	}
}

func TestAcquireErrorsSayWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	s := New(dir, nil)
	if _, err := s.Acquire("nothing", 0); !errors.Is(err, ErrDatasetNotFound) {
		t.Errorf("no folder: %v, want ErrDatasetNotFound", err)
	}
	// A folder without CURRENT or generation files (the NATS store in stack).
	os.MkdirAll(filepath.Join(dir, "nats", "jetstream"), 0o755)
	if _, err := s.Acquire("nats", 0); !errors.Is(err, ErrDatasetNotFound) {
		t.Errorf("folder of something else: %v, want ErrDatasetNotFound", err)
	}
	// First sync still building: files but no CURRENT.
	datadirtest.Write(t, dir, datadirtest.Gen{Dataset: "building", Generation: 3, Rows: 5, State: schema.StateBuilding})
	if _, err := s.Acquire("building", 0); !errors.Is(err, ErrNoGeneration) {
		t.Errorf("first sync building: %v, want ErrNoGeneration", err)
	}
	if _, err := s.Acquire("building", 3); !errors.Is(err, ErrGenerationNotFound) {
		t.Errorf("pinned to the building generation: %v, want ErrGenerationNotFound", err)
	}
	os.WriteFile(filepath.Join(dir, "building", schema.CurrentFile), []byte("three\n"), 0o644)
	if _, err := s.Acquire("building", 0); !errors.Is(err, ErrUnavailable) {
		t.Errorf("malformed CURRENT: %v, want ErrUnavailable", err)
	}
	if _, leases := s.Stats(); leases != 0 {
		t.Errorf("after failed acquires: %d leases", leases)
	}
}

func TestPinnedGenerationIsServedUntilPrunedThenGone(t *testing.T) {
	dir := t.TempDir()
	a := datadirtest.Gen{Dataset: "d", Generation: 5, Rows: 10, Tag: "A"}
	b := datadirtest.Gen{Dataset: "d", Generation: 9, Rows: 12, Tag: "B"}
	datadirtest.Publish(t, dir, a)
	s := New(dir, nil)
	l, err := s.Acquire("d", 0)
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	datadirtest.Publish(t, dir, b)
	l, err = s.Acquire("d", 0)
	if err != nil || l.Header.Generation != 9 {
		t.Fatalf("current after the swap: %v %+v", err, l.Header)
	}
	l.Release()
	l, err = s.Acquire("d", 5)
	if err != nil || l.Header.Generation != 5 || !bytes.Equal(readRange(t, l, 0, 10), wantLines(t, a, 0, 10)) {
		t.Fatalf("pinned to 5: %v", err)
	}
	l.Release()
	datadirtest.Remove(t, dir, "d", 5)
	if _, err := s.Acquire("d", 5); !errors.Is(err, ErrGenerationGone) {
		t.Errorf("pruned generation: %v, want ErrGenerationGone", err)
	}
	if _, err := s.Acquire("d", 99); !errors.Is(err, ErrGenerationNotFound) {
		t.Errorf("future generation: %v, want ErrGenerationNotFound", err)
	}
	if open, leases := s.Stats(); open != 1 || leases != 0 {
		t.Errorf("after pruning: %d open (want only the current), %d leases", open, leases)
	}
}

func TestLeaseKeepsReadingAPrunedGeneration(t *testing.T) {
	dir := t.TempDir()
	a := datadirtest.Gen{Dataset: "d", Generation: 1, Rows: 100, Tag: "A"}
	datadirtest.Publish(t, dir, a)
	s := New(dir, nil)
	held, err := s.Acquire("d", 0)
	if err != nil {
		t.Fatal(err)
	}
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "d", Generation: 2, Rows: 3, Tag: "B"})
	datadirtest.Remove(t, dir, "d", 1)
	l, err := s.Acquire("d", 0)
	if err != nil || l.Header.Generation != 2 {
		t.Fatalf("after the swap: %v %+v", err, l.Header)
	}
	l.Release()
	if got := readRange(t, held, 0, 100); !bytes.Equal(got, wantLines(t, a, 0, 100)) {
		t.Fatal("a lease on the pruned generation reads other bytes")
	}
	if open, _ := s.Stats(); open != 2 {
		t.Errorf("%d generations open while a lease holds the retired one, want 2", open)
	}
	held.Release()
	if open, leases := s.Stats(); open != 1 || leases != 0 {
		t.Errorf("after the last release: %d open, %d leases; want 1, 0", open, leases)
	}
}

func TestReplacedFilesAreReopened(t *testing.T) {
	dir := t.TempDir()
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "d", Generation: 4, Rows: 3, Tag: "old"})
	s := New(dir, nil)
	l, err := s.Acquire("d", 0)
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	acquireGen(t, s, "d")
	// A rebuild (writer --rebuild) removes CURRENT and the files, writes the
	// same generation again as new files, then CURRENT.
	datadirtest.RemoveCurrent(t, dir, "d")
	datadirtest.Remove(t, dir, "d", 4)
	g := datadirtest.Gen{Dataset: "d", Generation: 4, Rows: 6, Tag: "new"}
	datadirtest.Publish(t, dir, g)
	l, err = s.Acquire("d", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if l.Header.Count != 6 || !bytes.Equal(readRange(t, l, 0, 6), wantLines(t, g, 0, 6)) {
		t.Fatalf("served the replaced file: count %d", l.Header.Count)
	}
}

func TestAppendedRecordsAreSeenOnTheNextAcquire(t *testing.T) {
	dir := t.TempDir()
	g := datadirtest.Gen{Dataset: "d", Generation: 2, Rows: 4, Mode: schema.ModeAppend}
	h := datadirtest.Publish(t, dir, g)
	s := New(dir, nil)
	l, _ := s.Acquire("d", 0)
	l.Release()
	datadirtest.Append(t, dir, g, h, 3)
	l, err := s.Acquire("d", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if l.Header.Count != 7 || !bytes.Equal(readRange(t, l, 0, 7), wantLines(t, g, 0, 7)) {
		t.Fatalf("after appending 3: count %d", l.Header.Count)
	}
}

// tear writes the first half of a and the second half of b: what a reader
// sees in the middle of a rewrite that is not atomic.
func tear(t *testing.T, path string, a, b schema.Header) {
	t.Helper()
	ea, _ := schema.EncodeHeader(a)
	eb, _ := schema.EncodeHeader(b)
	// Cut inside the JSON (the second half of a header is padding): a's
	// count and b's checksum.
	cut := bytes.Index(ea, []byte(`"updated_at"`))
	mixed := append(append([]byte(nil), ea[:cut]...), eb[cut:]...)
	if _, err := schema.DecodeHeader(mixed); !errors.Is(err, schema.ErrHeaderTorn) {
		t.Fatalf("the mixed header decodes as %v, want ErrHeaderTorn", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(mixed, 0); err != nil {
		t.Fatal(err)
	}
}

func TestTornHeaderIsReadAgain(t *testing.T) {
	for _, cached := range []bool{false, true} {
		name := map[bool]string{false: "first open", true: "cached handle"}[cached]
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			g := datadirtest.Gen{Dataset: "d", Generation: 3, Rows: 20}
			full := datadirtest.Publish(t, dir, g)
			short := full
			short.Count, short.LastSeq = 12, 15
			datadirtest.RewriteHeader(t, filepath.Join(dir, "d", schema.DataFile(3)), short)
			s := New(dir, nil)
			if cached {
				l, err := s.Acquire("d", 0)
				if err != nil || l.Header.Count != 12 {
					t.Fatal(err)
				}
				l.Release()
			}
			path, _ := datadirtest.Paths(dir, "d", 3)
			tear(t, path, short, full)
			type result struct {
				h   schema.Header
				err error
			}
			done := make(chan result, 1)
			go func() {
				l, err := s.Acquire("d", 0)
				l.Release()
				done <- result{l.Header, err}
			}()
			// Finish the rewrite once the reader has met the torn header.
			for s.TornRetries() == 0 {
				runtime.Gosched()
			}
			datadirtest.RewriteHeader(t, path, full)
			r := <-done
			if r.err != nil || r.h.Count != 20 {
				t.Fatalf("after the rewrite finished: %v, count %d; want the full header", r.err, r.h.Count)
			}
		})
	}
}

func TestHeaderTornForGoodIsUnavailable(t *testing.T) {
	dir := t.TempDir()
	h := datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "d", Generation: 3, Rows: 2})
	other := h
	other.Count = 1
	path, _ := datadirtest.Paths(dir, "d", 3)
	tear(t, path, h, other)
	if _, err := New(dir, nil).Acquire("d", 0); !errors.Is(err, ErrUnavailable) || !errors.Is(err, schema.ErrHeaderTorn) {
		t.Fatalf("a header that stays torn: %v, want ErrUnavailable wrapping ErrHeaderTorn", err)
	}
}

func TestConcurrentAcquireSharesOneHandle(t *testing.T) {
	dir := t.TempDir()
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "d", Generation: 1, Rows: 10})
	s := New(dir, nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				l, err := s.Acquire("d", 0)
				if err != nil {
					t.Error(err)
					return
				}
				l.Release()
			}
		}()
	}
	wg.Wait()
	if open, leases := s.Stats(); open != 1 || leases != 0 {
		t.Fatalf("%d open, %d leases; want 1, 0", open, leases)
	}
	s.Close()
	if open, _ := s.Stats(); open != 0 {
		t.Fatalf("%d open after Close", open)
	}
}

func TestCloseWaitsForLeases(t *testing.T) {
	dir := t.TempDir()
	g := datadirtest.Gen{Dataset: "d", Generation: 1, Rows: 10}
	datadirtest.Publish(t, dir, g)
	s := New(dir, nil)
	l, err := s.Acquire("d", 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !bytes.Equal(readRange(t, l, 0, 10), wantLines(t, g, 0, 10)) {
		t.Fatal("a lease stopped reading at Close")
	}
	l.Release()
	if open, leases := s.Stats(); open != 0 || leases != 0 {
		t.Fatalf("%d open, %d leases", open, leases)
	}
}

func BenchmarkAcquireRange(b *testing.B) {
	dir := b.TempDir()
	const rows = 100_000
	datadirtest.Publish(b, dir, datadirtest.Gen{Dataset: "d", Generation: 1, Rows: rows})
	s := New(dir, nil)
	for _, c := range []struct {
		name  string
		first uint64
	}{{"offset=0", 0}, {"offset=last", rows - 100}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				l, err := s.Acquire("d", 0)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := l.Range(c.first, 100); err != nil {
					b.Fatal(err)
				}
				l.Release()
			}
		})
	}
}

func BenchmarkRange(b *testing.B) {
	dir := b.TempDir()
	datadirtest.Publish(b, dir, datadirtest.Gen{Dataset: "d", Generation: 1, Rows: 100_000})
	s := New(dir, nil)
	l, err := s.Acquire("d", 0)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Release()
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		if _, _, err := l.Range(i%99_000, 1000); err != nil {
			b.Fatal(err)
		}
		i += 7919
	}
}

// However many datasets are read, at most MaxOpen generations stay open
// between requests, and an evicted one opens again when asked for.
func TestOpenGenerationsAreBounded(t *testing.T) {
	dir := t.TempDir()
	n := MaxOpen + 10
	for i := range n {
		datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: fmt.Sprintf("d%03d", i), Generation: 1, Rows: 1})
	}
	s := New(dir, nil)
	defer s.Close()
	for range 2 {
		for i := range n {
			if got := acquireGen(t, s, fmt.Sprintf("d%03d", i)); got != 1 {
				t.Fatalf("d%03d: generation %d", i, got)
			}
		}
	}
	if open, leases := s.Stats(); open != MaxOpen || leases != 0 {
		t.Fatalf("%d open, %d leases; want %d, 0", open, leases, MaxOpen)
	}
}

// A generation's lookup indexes open with the first lease that asks and
// close with the generation: a lease holding them keeps them usable after
// the generation is evicted, until it is released.
func TestLookupsCloseWithTheirGeneration(t *testing.T) {
	dir := t.TempDir()
	g := datadirtest.Gen{Dataset: "d", Generation: 1, Rows: 30}
	datadirtest.Publish(t, dir, g)
	datadirtest.WriteLookup(t, dir, g, "name")
	s := New(dir, nil)
	defer s.Close()
	held, err := s.Acquire("d", 0)
	if err != nil {
		t.Fatal(err)
	}
	x, release, err := held.Lookups(time.Now())
	defer release()
	lk := x.For(1, 30)
	if err != nil || lk == nil {
		t.Fatalf("the index of name is not there: %v", err)
	}
	for i := range MaxOpen { // other generations push d out
		name := fmt.Sprintf("o%03d", i)
		datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: name, Generation: 1, Rows: 1})
		acquireGen(t, s, name)
	}
	if _, ok, err := lk.Find([]byte("item 7")); err != nil || !ok {
		t.Fatalf("an index in use was closed: %v %v", ok, err)
	}
	held.Release()
	if _, _, err := lk.Find([]byte("item 7")); err == nil {
		t.Fatal("an evicted generation's index stayed open after its last lease")
	}
}

// An append leaves a generation's lookup indexes stale until the writer
// rebuilds them (a new file renamed over each): the rebuilt ones are used
// once find.ReopenEvery has passed, and the ones they replace close when
// no request uses them, so their disk space is freed however many appends
// the generation sees.
func TestLookupsReplacedByRebuildsAreClosed(t *testing.T) {
	dir := t.TempDir()
	g := datadirtest.Gen{Dataset: "d", Generation: 1, Rows: 30}
	h := datadirtest.Publish(t, dir, g)
	datadirtest.WriteLookup(t, dir, g, "name")
	s := New(dir, nil)
	defer s.Close()
	now := time.Now()
	indexed := func() bool {
		t.Helper()
		l, err := s.Acquire("d", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release()
		x, release, err := l.Lookups(now)
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		return x.For(1, l.Header.Count) != nil
	}
	for range 10 {
		if !indexed() {
			t.Fatalf("the index of all %d records is not used", h.Count)
		}
		h = datadirtest.Append(t, dir, g, h, 1)
		if indexed() {
			t.Fatal("a stale index is used")
		}
		now = now.Add(find.ReopenEvery)
		g.Rows = int(h.Count)
		if err := os.Remove(filepath.Join(dir, "d", schema.LookupFile(1, 1))); err != nil {
			t.Fatal(err)
		}
		datadirtest.WriteLookup(t, dir, g, "name")
		now = now.Add(find.ReopenEvery)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	var open []string
	for _, fd := range fds {
		if target, _ := os.Readlink("/proc/self/fd/" + fd.Name()); strings.HasPrefix(target, dir) {
			open = append(open, target)
		}
	}
	if len(open) > 3 { // the data file, its offset index, one lookup index
		t.Errorf("%d files open: %s", len(open), strings.Join(open, ", "))
	}
}

// A generation pruned while no request asks for its dataset is closed by
// the next Sweep, which frees its disk space; one a lease holds closes on
// its release.
func TestSweepClosesPrunedGenerationsNobodyAsksFor(t *testing.T) {
	dir := t.TempDir()
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "d", Generation: 1, Rows: 10})
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "e", Generation: 1, Rows: 10})
	s := New(dir, nil)
	defer s.Close()
	acquireGen(t, s, "d")
	held, err := s.Acquire("e", 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Sweep()
	if open, _ := s.Stats(); open != 2 {
		t.Fatalf("%d open after a sweep that found every file in place, want 2", open)
	}
	for _, name := range []string{"d", "e"} {
		datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: name, Generation: 2, Rows: 3})
		datadirtest.Remove(t, dir, name, 1)
	}
	s.Sweep()
	if open, _ := s.Stats(); open != 1 {
		t.Fatalf("%d open after the sweep, want 1: the leased generation", open)
	}
	held.Release()
	if open, leases := s.Stats(); open != 0 || leases != 0 {
		t.Fatalf("%d open, %d leases after the release; want 0, 0", open, leases)
	}
}
