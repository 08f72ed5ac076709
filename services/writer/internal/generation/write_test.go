package generation

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// A batch is written in chunks of at most writeChunk bytes (a larger
// record on its own) from the caller's records, not from a copy of the
// whole batch; a write that fails half way is retried whole, at the same
// offsets, and the files come out byte for byte as one write would leave
// them.
func TestABatchIsWrittenInChunksAndRetriedWhole(t *testing.T) {
	dir, f, g := createFaulty(t, 3)
	var recs [][]byte
	for i := range 300 {
		size := 700 + i%900
		if i == 150 {
			size = 3 * writeChunk // larger than a write
		}
		r := []byte(`{"a":"` + strings.Repeat(string(rune('a'+i%26)), size) + `"}`)
		recs = append(recs, r)
		g.Append(r, uint64(10+i), t0)
	}
	dataFile := filepath.Join(dir, schema.DataFile(3))
	var dataWrites []int64
	failed := false
	f.Hook(func(op, name string, off int64) error {
		if op != "write" || name != dataFile || off == 0 {
			return nil
		}
		dataWrites = append(dataWrites, off)
		if len(dataWrites) == 3 && !failed {
			failed = true
			return syscall.EIO
		}
		return nil
	})
	if err := g.Flush(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Flush = %v, want the injected EIO", err)
	}
	if g.Header().Count != 0 || g.Records() != 300 {
		t.Fatalf("after a failed Flush: header count %d, records %d", g.Header().Count, g.Records())
	}
	dataWrites = nil
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	g.Close()

	var want []byte
	for _, r := range recs {
		want = append(append(want, r...), '\n')
	}
	data, err := os.ReadFile(dataFile)
	if err != nil {
		t.Fatal(err)
	}
	h, err := schema.ReadHeader(bytes.NewReader(data))
	if err != nil || h.Count != 300 || h.LastSeq != 309 {
		t.Fatalf("header %+v, %v", h, err)
	}
	// The writes follow each other; each carries at most writeChunk bytes
	// but the one of the large record.
	for i, off := range dataWrites {
		end := int64(len(data))
		if i+1 < len(dataWrites) {
			end = dataWrites[i+1]
		}
		if n := end - off; n > writeChunk && n != int64(len(recs[150])) {
			t.Errorf("write %d of the batch carried %d bytes, more than %d", i, n, writeChunk)
		}
	}
	if !bytes.Equal(data[h.Size:], want) {
		t.Fatal("the data file's records differ from the batch")
	}
	idx, err := os.ReadFile(filepath.Join(dir, schema.IndexFile(3)))
	if err != nil {
		t.Fatal(err)
	}
	x, err := schema.OpenIndex(bytes.NewReader(idx))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		s, e, err := x.Range(uint64(i), 1)
		if err != nil || !bytes.Equal(data[s:e], append(r, '\n')) {
			t.Fatalf("record %d: index says [%d,%d), %v", i, s, e, err)
		}
	}
}
