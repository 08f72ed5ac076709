package pagereader

import (
	"bytes"
	"os"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/api/internal/datadirtest"
)

// mappedLease publishes a 2000-row generation of dataset "d" in a fresh
// DATA_DIR and leases it.
func mappedLease(t *testing.T) (string, datadirtest.Gen, Lease) {
	t.Helper()
	dir := t.TempDir()
	g := datadirtest.Gen{Dataset: "d", Generation: 1, Rows: 2000}
	datadirtest.Publish(t, dir, g)
	return dir, g, leaseOn(t, dir, "d")
}

// Span reads a page's entries out of the mapped index. An index cut
// shorter than the mapping while a lease reads it (by hand: the writer only
// cuts entries past the count in force) is an error for that span, not a
// crash; restored, it reads again; and the mapped pages dropped now and then
// change nothing.
func TestMappedIndexCutUnderALease(t *testing.T) {
	dir, g, l := mappedLease(t)
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

// Small reads of records are copies out of the mapped data file. The pages
// dropped now and then change nothing; a file cut shorter than the mapping
// while a lease reads it (by hand: the writer never cuts a complete
// generation) is an error for that read, not a crash and not zero bytes;
// restored, it reads again; bytes appended past the mapping, and reads
// over mappedReadMax, are read from the file.
func TestMappedDataCutUnderALease(t *testing.T) {
	dir, g, l := mappedLease(t)
	if l.h.dataMap == nil {
		t.Fatal("the data file is not mapped: the copy path goes untested")
	}
	for i := 0; l.h.dataCopied.Load() < 3*dataSweepBytes; i++ {
		first := uint64(i*7) % 1990
		if got, want := readRange(t, l, first, 10), wantLines(t, g, int(first), 10); !bytes.Equal(got, want) {
			t.Fatalf("read %d, records %d+10: wrong bytes", i, first)
		}
	}
	copied := l.h.dataCopied.Load()
	if got, want := readRange(t, l, 0, 2000), wantLines(t, g, 0, 2000); !bytes.Equal(got, want) {
		t.Fatal("all records: wrong bytes")
	} else if len(got) <= mappedReadMax || l.h.dataCopied.Load() != copied {
		t.Fatalf("a read of %d bytes was copied out of the mapping (max %d)", len(got), mappedReadMax)
	}

	data, _ := datadirtest.Paths(dir, "d", 1)
	whole, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	start, end, err := l.Range(1500, 10)
	if err != nil {
		t.Fatal(err)
	}
	// Cut at 0, the range's pages lie past the end of the file (a fault);
	// cut just before the range's last byte, that byte lies in the page
	// the file now ends in (a zero).
	for _, cut := range []int64{0, end - 1} {
		if err := os.Truncate(data, cut); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Data().ReadAt(make([]byte, end-start), start); err == nil {
			t.Fatalf("cut at %d: records %d..%d read without error", cut, start, end)
		}
	}
	if err := os.WriteFile(data, whole, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := readRange(t, l, 1500, 10), wantLines(t, g, 1500, 10); !bytes.Equal(got, want) {
		t.Fatal("the restored data file reads other bytes")
	}

	more := []byte("bytes appended after the mapping\n")
	if err := os.WriteFile(data, append(whole, more...), 0o644); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(more)+10)
	if _, err := l.Data().ReadAt(got, int64(len(whole))-10); err != nil {
		t.Fatal(err)
	}
	if want := append(whole[len(whole)-10:len(whole):len(whole)], more...); !bytes.Equal(got, want) {
		t.Fatalf("across the end of the mapping: got %q, want %q", got, want)
	}
}
