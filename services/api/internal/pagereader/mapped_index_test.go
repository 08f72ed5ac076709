package pagereader

import (
	"bytes"
	"os"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/api/internal/datadirtest"
)

// Span reads a page's entries out of the mapped index. An index cut
// shorter than the mapping while a lease reads it (by hand: the writer only
// cuts entries past the count in force) is an error for that span, not a
// crash; restored, it reads again; and the mapped pages dropped now and then
// change nothing.
func TestMappedIndexCutUnderALease(t *testing.T) {
	dir := t.TempDir()
	g := datadirtest.Gen{Dataset: "d", Generation: 1, Rows: 2000}
	datadirtest.Publish(t, dir, g)
	l := leaseOn(t, dir, "d")
	if l.h.idxMap == nil {
		t.Fatal("the index is not mapped: the copy path goes untested")
	}
	for i := range 3 * idxSweepEvery {
		first := uint64(i*7) % 1990
		if got, want := readRange(t, l, first, 10), wantLines(t, g, int(first), 10); !bytes.Equal(got, want) {
			t.Fatalf("read %d, records %d+10: wrong bytes", i, first)
		}
	}
	_, idx := datadirtest.Paths(dir, "d", 1)
	whole, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(idx, schema.IndexSize(1)); err != nil {
		t.Fatal(err)
	}
	var sp Span
	if err := l.Span(1500, 10, &sp); err == nil {
		t.Fatal("a span past the end of a cut index read without error")
	}
	if err := os.WriteFile(idx, whole, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := readRange(t, l, 1500, 10), wantLines(t, g, 1500, 10); !bytes.Equal(got, want) {
		t.Fatal("the restored index reads other bytes")
	}
}
