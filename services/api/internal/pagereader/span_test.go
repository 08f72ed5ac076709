package pagereader

import (
	"errors"
	"os"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/api/internal/datadirtest"
)

// An index whose entries do not go forward is refused, never served as a
// range of the data file.
func TestSpanRefusesEntriesThatDoNotGoForward(t *testing.T) {
	dir := t.TempDir()
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "d", Generation: 1, Rows: 20})
	_, idx := datadirtest.Paths(dir, "d", 1)
	f, err := os.OpenFile(idx, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Record 5 ends where record 3 does.
	var e [8]byte
	r, err := os.Open(idx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadAt(e[:], schema.IndexSize(3)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := f.WriteAt(e[:], schema.IndexSize(5)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	l := leaseOn(t, dir, "d")
	var sp Span
	for _, first := range []uint64{0, 2} {
		if err := l.Span(first, 10, &sp); !errors.Is(err, schema.ErrIndexFormat) {
			t.Fatalf("span from %d over a bad entry: %v, want ErrIndexFormat", first, err)
		}
	}
	if err := l.Span(6, 10, &sp); err != nil {
		t.Fatalf("span after the bad entry: %v", err)
	}
}

// A page's span costs no allocation.
func TestSpanDoesNotAllocate(t *testing.T) {
	dir := t.TempDir()
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "d", Generation: 1, Rows: 300})
	l := leaseOn(t, dir, "d")
	var sp Span
	if n := testing.AllocsPerRun(100, func() {
		if err := l.Span(7, 100, &sp); err != nil {
			t.Fatal(err)
		}
		if _, _, err := l.Range(0, 290); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per span", n)
	}
}
