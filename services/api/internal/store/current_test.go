package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/datadirtest"
)

// acquireGen acquires the current generation of d and returns its number.
func acquireGen(t *testing.T, s *Store, name string) uint64 {
	t.Helper()
	l, err := s.Acquire(name, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	return l.Header.Generation
}

// A CURRENT renamed into place must be seen by the very next Acquire,
// however fast the renames come (same size, same clock tick, inode numbers
// freed and reused by the file system in between).
func TestCurrentRenamedIsSeenByTheNextAcquire(t *testing.T) {
	dir := t.TempDir()
	for _, g := range []uint64{1, 2, 3} {
		datadirtest.Write(t, dir, datadirtest.Gen{Dataset: "d", Generation: g, Rows: 5})
	}
	datadirtest.SetCurrent(t, dir, "d", 1)
	s := New(dir, nil)
	defer s.Close()
	acquireGen(t, s, "d")
	acquireGen(t, s, "d") // the dataset is kept now: CURRENT is remembered
	for i := range 500 {
		want := uint64(i%3 + 1)
		datadirtest.SetCurrent(t, dir, "d", want)
		if got := acquireGen(t, s, "d"); got != want {
			t.Fatalf("swap %d: CURRENT names %d, Acquire served %d", i, want, got)
		}
		if got := acquireGen(t, s, "d"); got != want {
			t.Fatalf("swap %d, second read: CURRENT names %d, Acquire served %d", i, want, got)
		}
	}
}

// An edit of CURRENT in place (not the writer's way) that changes its size
// is seen by the next Acquire.
func TestCurrentEditedInPlaceIsSeen(t *testing.T) {
	dir := t.TempDir()
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "d", Generation: 7, Rows: 2})
	datadirtest.Write(t, dir, datadirtest.Gen{Dataset: "d", Generation: 12, Rows: 3})
	s := New(dir, nil)
	defer s.Close()
	if got := acquireGen(t, s, "d"); got != 7 {
		t.Fatalf("got %d", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "d", schema.CurrentFile), schema.FormatCurrent(12), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := acquireGen(t, s, "d"); got != 12 {
		t.Fatalf("CURRENT rewritten in place to 12: served %d", got)
	}
}

// CURRENT removed the way a rebuild does: the dataset has no complete
// generation at once; written again, it is served again.
func TestCurrentRemovedThenWrittenAgain(t *testing.T) {
	dir := t.TempDir()
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "d", Generation: 3, Rows: 2})
	s := New(dir, nil)
	defer s.Close()
	acquireGen(t, s, "d")
	acquireGen(t, s, "d")
	datadirtest.RemoveCurrent(t, dir, "d")
	if _, err := s.Acquire("d", 0); !errors.Is(err, ErrNoGeneration) {
		t.Fatalf("without CURRENT: %v, want ErrNoGeneration", err)
	}
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "d", Generation: 9, Rows: 4})
	if got := acquireGen(t, s, "d"); got != 9 {
		t.Fatalf("after CURRENT came back: %d", got)
	}
}

// The dataset folder moved away by hand and made again: the next Acquire
// serves the new folder.
func TestDatasetFolderMovedAwayIsSeen(t *testing.T) {
	dir := t.TempDir()
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "d", Generation: 3, Rows: 2})
	s := New(dir, nil)
	defer s.Close()
	acquireGen(t, s, "d")
	acquireGen(t, s, "d")
	if err := os.Rename(filepath.Join(dir, "d"), filepath.Join(dir, "d-moved")); err != nil {
		t.Fatal(err)
	}
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "d", Generation: 9, Rows: 4})
	if got := acquireGen(t, s, "d"); got != 9 {
		t.Fatalf("dataset folder made again: generation %d, want 9", got)
	}
}

// Append mode: every header rewrite (growth, and a rollback) is seen by
// the next Acquire.
func TestEveryHeaderRewriteIsSeen(t *testing.T) {
	dir := t.TempDir()
	g := datadirtest.Gen{Dataset: "d", Generation: 2, Rows: 1, Mode: schema.ModeAppend}
	h := datadirtest.Publish(t, dir, g)
	s := New(dir, nil)
	defer s.Close()
	path, _ := datadirtest.Paths(dir, "d", 2)
	for i := range 200 {
		h = datadirtest.Append(t, dir, g, h, 1)
		l, err := s.Acquire("d", 0)
		if err != nil {
			t.Fatal(err)
		}
		if l.Header.Count != h.Count || l.Header.LastSeq != h.LastSeq {
			l.Release()
			t.Fatalf("append %d: served count %d seq %d, header says %d %d", i, l.Header.Count, l.Header.LastSeq, h.Count, h.LastSeq)
		}
		if got, want := readRange(t, l, h.Count-1, 1), wantLines(t, g, int(h.Count-1), 1); !bytes.Equal(got, want) {
			t.Fatalf("append %d: last record %q, want %q", i, got, want)
		}
		l.Release()
	}
	// A rollback rewrites the header with a smaller count (then cuts the
	// files): the smaller count is served at once.
	back := h
	back.Count, back.LastSeq = 50, h.LastSeq-uint64(h.Count-50)
	datadirtest.RewriteHeader(t, path, back)
	l, err := s.Acquire("d", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if l.Header.Count != 50 {
		t.Fatalf("after the rollback: count %d, want 50", l.Header.Count)
	}
}

// The current generation's files replaced by rename, by hand (CURRENT left
// alone), while a lease reads the old ones: the lease keeps its bytes, and
// the next Acquire serves the new files.
func TestFilesReplacedByRenameUnderALease(t *testing.T) {
	dir := t.TempDir()
	old := datadirtest.Gen{Dataset: "d", Generation: 4, Rows: 30, Tag: "old"}
	datadirtest.Publish(t, dir, old)
	s := New(dir, nil)
	defer s.Close()
	acquireGen(t, s, "d")
	acquireGen(t, s, "d")
	held, err := s.Acquire("d", 0)
	if err != nil {
		t.Fatal(err)
	}
	// The new files are written elsewhere and renamed over the old names.
	other := t.TempDir()
	fresh := datadirtest.Gen{Dataset: "d", Generation: 4, Rows: 8, Tag: "new"}
	datadirtest.Write(t, other, fresh)
	newData, newIdx := datadirtest.Paths(other, "d", 4)
	oldData, oldIdx := datadirtest.Paths(dir, "d", 4)
	if err := os.Rename(newIdx, oldIdx); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(newData, oldData); err != nil {
		t.Fatal(err)
	}
	l, err := s.Acquire("d", 0)
	if err != nil {
		t.Fatal(err)
	}
	if l.Header.Count != 8 || !bytes.Equal(readRange(t, l, 0, 8), wantLines(t, fresh, 0, 8)) {
		t.Fatalf("after the rename: count %d, want the new files", l.Header.Count)
	}
	l.Release()
	if !bytes.Equal(readRange(t, held, 0, 30), wantLines(t, old, 0, 30)) {
		t.Fatal("the lease taken before the rename reads other bytes")
	}
	held.Release()
	if open, leases := s.Stats(); open != 1 || leases != 0 {
		t.Fatalf("%d open, %d leases; want 1, 0", open, leases)
	}
}

// A data file cut inside its header (by hand: the writer never does) is
// unavailable; the
// file restored, it serves again.
func TestFileCutInsideItsHeaderIsUnavailable(t *testing.T) {
	dir := t.TempDir()
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "d", Generation: 1, Rows: 10})
	s := New(dir, nil)
	defer s.Close()
	acquireGen(t, s, "d")
	path, _ := datadirtest.Paths(dir, "d", 1)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire("d", 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("header cut short: %v, want ErrUnavailable", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(whole, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := acquireGen(t, s, "d"); got != 1 {
		t.Fatalf("restored: %d", got)
	}
	if _, leases := s.Stats(); leases != 0 {
		t.Fatalf("%d leases", leases)
	}
}

// DATA_DIR deleted by hand and made again (with other contents): the next
// Acquire serves the new contents.
func TestDataDirMadeAgainIsSeen(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "data")
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "d", Generation: 1, Rows: 3})
	s := New(dir, nil)
	defer s.Close()

	acquireGen(t, s, "d")
	acquireGen(t, s, "d")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "d", Generation: 5, Rows: 6})
	for i := range 3 {
		if got := acquireGen(t, s, "d"); got != 5 {
			t.Fatalf("read %d after DATA_DIR was made again: generation %d, want 5", i, got)
		}
	}
}

// Every page, at every offset, is the file's records.
func TestRangeEveryPageSizeAndOffset(t *testing.T) {
	dir := t.TempDir()
	g := datadirtest.Gen{Dataset: "d", Generation: 1, Rows: 1200, Row: func(i int, vals []string) {
		vals[0] = strconv.Itoa(i)
		vals[1] = string(bytes.Repeat([]byte{'x'}, i%37)) // records of varied length
		vals[2] = "r"
	}}
	datadirtest.Publish(t, dir, g)
	l := leaseOn(t, dir, "d")
	all := wantLines(t, g, 0, 1200)
	starts := make([]int, 1201) // byte offset of record i in all
	for i, p := 0, 0; i < 1200; i++ {
		starts[i] = p
		p += bytes.IndexByte(all[p:], '\n') + 1
		starts[i+1] = p
	}
	for _, n := range []int{1, 2, 10, 100, 254, 255, 256, 257, 1000, 1200} {
		for _, first := range []int{0, 1, 7, 600, 1200 - n} {
			if first+n > 1200 || first < 0 {
				continue
			}
			got := readRange(t, l, uint64(first), uint64(n))
			if want := all[starts[first]:starts[first+n]]; !bytes.Equal(got, want) {
				t.Fatalf("records %d+%d: %d bytes, want %d", first, n, len(got), len(want))
			}
		}
	}
}

// Within Fresh of a look at CURRENT and at the header, Acquire serves what
// that look found, touching no file; the first Acquire later than Fresh
// after a change serves the change: a new CURRENT, and an append.
func TestChangesAreServedOnceFreshHasPassed(t *testing.T) {
	dir := t.TempDir()
	g := datadirtest.Gen{Dataset: "d", Generation: 2, Rows: 4, Mode: schema.ModeAppend}
	h := datadirtest.Publish(t, dir, g)
	datadirtest.Write(t, dir, datadirtest.Gen{Dataset: "d", Generation: 3, Rows: 9})
	s := New(dir, nil)
	defer s.Close()
	s.fresh = time.Hour // no test is that slow: the window never ends by itself
	count := func() (uint64, uint64) {
		t.Helper()
		l, err := s.Acquire("d", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release()
		return l.Header.Generation, l.Header.Count
	}
	if gen, n := count(); gen != 2 || n != 4 {
		t.Fatalf("first look: generation %d count %d, want 2 and 4", gen, n)
	}
	datadirtest.Append(t, dir, g, h, 3)
	if gen, n := count(); gen != 2 || n != 4 {
		t.Fatalf("within Fresh of the last look: generation %d count %d, want what that look found, 2 and 4", gen, n)
	}
	s.fresh = 0 // the window is over
	if gen, n := count(); gen != 2 || n != 7 {
		t.Fatalf("after Fresh: generation %d count %d, want the append, 2 and 7", gen, n)
	}
	s.fresh = time.Hour
	datadirtest.SetCurrent(t, dir, "d", 3)
	if gen, _ := count(); gen != 2 {
		t.Fatalf("within Fresh: generation %d, want 2", gen)
	}
	s.fresh = 0
	if gen, n := count(); gen != 3 || n != 9 {
		t.Fatalf("after Fresh: generation %d count %d, want the new CURRENT, 3 and 9", gen, n)
	}
}
