package schema

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// generation is a data file and its index, written the way the writer does.
type generation struct {
	data, index *os.File
	records     [][]byte // each with its '\n'
	header      Header
}

func writeGeneration(t testing.TB, count int) *generation {
	t.Helper()
	enc, err := NewRecordEncoder([]string{"Handle", "Title", "Body (HTML)"})
	if err != nil {
		t.Fatal(err)
	}
	h := sampleHeader()
	h.Fields = enc.Fields()
	h.Size = HeaderSizeFor(h)
	h.Count, h.State = uint64(count), StateComplete
	hb, err := EncodeHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	g := &generation{header: h}
	data := bytes.Clone(hb)
	idx := AppendIndexHeader(nil, int64(len(hb)))
	for i := range count {
		line, err := enc.Append(nil, []string{fmt.Sprintf("h-%d", i), strings.Repeat("é", i%7), "<p>\"x\"</p>\n"})
		if err != nil {
			t.Fatal(err)
		}
		line = append(line, '\n')
		g.records = append(g.records, line)
		data = append(data, line...)
		idx = AppendIndexEntry(idx, int64(len(data)), uint64(1000+i))
	}
	dir := t.TempDir()
	for _, f := range []struct {
		name string
		b    []byte
		dst  **os.File
	}{{DataFile(h.Generation), data, &g.data}, {IndexFile(h.Generation), idx, &g.index}} {
		path := filepath.Join(dir, f.name)
		if err := os.WriteFile(path, f.b, 0o644); err != nil {
			t.Fatal(err)
		}
		file, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { file.Close() })
		*f.dst = file
	}
	return g
}

func TestIndexHeaderAndEntryBytes(t *testing.T) {
	b := AppendIndexHeader(nil, 4096)
	b = AppendIndexEntry(b, 4200, 7)
	want := []byte{
		'R', 'P', 'I', 'X', 1, 0, 0, 0, 0x00, 0x10, 0, 0, 0, 0, 0, 0, // magic, version, data start 4096
		0x68, 0x10, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, // end 4200, seq 7
	}
	if !bytes.Equal(b, want) {
		t.Errorf("index bytes =\n% x\nwant\n% x", b, want)
	}
	for _, n := range []uint64{0, 1, 1000} {
		if got := IndexSize(n); got != int64(16+16*n) {
			t.Errorf("IndexSize(%d) = %d", n, got)
		}
	}
}

func TestIndexRoundTripThroughAFile(t *testing.T) {
	g := writeGeneration(t, 50)
	x, err := OpenIndex(g.index)
	if err != nil {
		t.Fatal(err)
	}
	if x.DataStart() != int64(g.header.Size) {
		t.Errorf("DataStart = %d, want the header size %d", x.DataStart(), g.header.Size)
	}
	end := x.DataStart()
	for i, rec := range g.records {
		end += int64(len(rec))
		gotEnd, seq, err := x.Entry(uint64(i))
		if err != nil || gotEnd != end || seq != uint64(1000+i) {
			t.Errorf("Entry(%d) = %d, %d, %v; want %d, %d", i, gotEnd, seq, err, end, 1000+i)
		}
	}
	st, err := g.index.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != IndexSize(g.header.Count) {
		t.Errorf("index file is %d bytes, IndexSize(%d) = %d", st.Size(), g.header.Count, IndexSize(g.header.Count))
	}
}

func TestIndexRangeGivesTheRecordsBytes(t *testing.T) {
	g := writeGeneration(t, 50)
	x, err := OpenIndex(g.index)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		first, n uint64
	}{
		{"first record", 0, 1},
		{"first page", 0, 10},
		{"middle page", 20, 10},
		{"one in the middle", 27, 1},
		{"last page", 40, 10},
		{"last record", 49, 1},
		{"everything", 0, 50},
	}
	for _, tt := range tests {
		start, end, err := x.Range(tt.first, tt.n)
		if err != nil {
			t.Errorf("%s: Range(%d, %d) = %v", tt.name, tt.first, tt.n, err)
			continue
		}
		got := make([]byte, end-start)
		if _, err := g.data.ReadAt(got, start); err != nil {
			t.Fatal(err)
		}
		if want := bytes.Join(g.records[tt.first:tt.first+tt.n], nil); !bytes.Equal(got, want) {
			t.Errorf("%s: Range(%d, %d) = [%d, %d) holds\n%q\nwant\n%q", tt.name, tt.first, tt.n, start, end, got, want)
		}
	}
}

func TestIndexRangeRefusesWhatTheIndexDoesNotHold(t *testing.T) {
	g := writeGeneration(t, 5)
	x, err := OpenIndex(g.index)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x.Range(0, 0); err == nil {
		t.Error("Range(0, 0) = nil error")
	}
	for _, r := range [][2]uint64{{5, 1}, {4, 2}, {0, 6}, {1 << 40, 1}} {
		if _, _, err := x.Range(r[0], r[1]); !errors.Is(err, io.EOF) {
			t.Errorf("Range(%d, %d) past the last entry = %v, want io.EOF", r[0], r[1], err)
		}
	}
	if _, _, err := x.Entry(5); !errors.Is(err, io.EOF) {
		t.Errorf("Entry(5) of 5 = %v, want io.EOF", err)
	}
}

func TestIndexRangeRefusesEntriesThatGoBackwards(t *testing.T) {
	b := AppendIndexHeader(nil, 4096)
	b = AppendIndexEntry(b, 4200, 1)
	b = AppendIndexEntry(b, 4100, 2) // before its predecessor: damaged
	b = AppendIndexEntry(b, 10, 3)   // inside the header
	x, err := OpenIndex(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	// Range reads only the two entries at the ends of the range (O(1)), so
	// it can see a damaged one only there.
	for _, r := range [][2]uint64{{1, 1}, {2, 1}, {0, 3}, {1, 2}} {
		if _, _, err := x.Range(r[0], r[1]); !errors.Is(err, ErrIndexFormat) {
			t.Errorf("Range(%d, %d) = %v, want ErrIndexFormat", r[0], r[1], err)
		}
	}
}

func TestOpenIndexRefusesOtherFiles(t *testing.T) {
	good := AppendIndexHeader(nil, 4096)
	tests := map[string][]byte{
		"empty":          nil,
		"short":          good[:10],
		"bad magic":      append([]byte("RPIY"), good[4:]...),
		"lower magic":    append([]byte("rpix"), good[4:]...),
		"version 0":      append(append(bytes.Clone(good[:4]), 0), good[5:]...),
		"version 2":      append(append(bytes.Clone(good[:4]), 2), good[5:]...),
		"an NDJSON file": []byte(`{"version":1,"dataset":"p"}` + "\n"),
	}
	for name, b := range tests {
		if _, err := OpenIndex(bytes.NewReader(b)); !errors.Is(err, ErrIndexFormat) {
			t.Errorf("%s: OpenIndex = %v, want ErrIndexFormat", name, err)
		}
	}
	x, err := OpenIndex(bytes.NewReader(good)) // an index with no entry yet
	if err != nil || x.DataStart() != 4096 {
		t.Errorf("OpenIndex(empty index) = %v", err)
	}
}

// eofAtEnd is an io.ReaderAt that, as io.ReaderAt allows, returns io.EOF
// along with a read that fills the buffer up to the end of its input.
type eofAtEnd struct{ b []byte }

func (r eofAtEnd) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r.b)) {
		return 0, io.EOF
	}
	n := copy(p, r.b[off:])
	if off+int64(n) == int64(len(r.b)) {
		return n, io.EOF
	}
	return n, nil
}

func TestIndexAcceptsEOFWithAFullRead(t *testing.T) {
	b := AppendIndexHeader(nil, 100)
	b = AppendIndexEntry(b, 150, 1)
	b = AppendIndexEntry(b, 200, 2)
	x, err := OpenIndex(eofAtEnd{b[:IndexHeaderSize]})
	if err != nil {
		t.Fatalf("OpenIndex on a ReaderAt that ends with the header: %v", err)
	}
	x, err = OpenIndex(eofAtEnd{b})
	if err != nil {
		t.Fatal(err)
	}
	if start, end, err := x.Range(1, 1); err != nil || start != 150 || end != 200 {
		t.Errorf("Range(1, 1) of the last entry = %d, %d, %v", start, end, err)
	}
	if end, seq, err := x.Entry(1); err != nil || end != 200 || seq != 2 {
		t.Errorf("Entry(1) = %d, %d, %v", end, seq, err)
	}
}

func TestIndexEntriesPastCountAreNotRead(t *testing.T) {
	// The writer appends entries before it rewrites the header: entries past
	// Header.Count may exist, torn. Range over the first Count entries
	// does not look at them.
	g := writeGeneration(t, 3)
	raw, err := io.ReadAll(io.NewSectionReader(g.index, 0, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	raw = append(raw, 0xde, 0xad, 0xbe) // a torn fourth entry
	x, err := OpenIndex(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	start, end, err := x.Range(0, 3)
	want := binary.LittleEndian.Uint64(raw[IndexSize(2):])
	if err != nil || start != int64(g.header.Size) || end != int64(want) {
		t.Errorf("Range(0, 3) = %d, %d, %v", start, end, err)
	}
}

func TestIndexEntryEndReadsBackAppendIndexEntry(t *testing.T) {
	for _, end := range []int64{0, 1, 4096, 1<<40 + 7} {
		b := AppendIndexEntry(nil, end, 99)
		if len(b) != IndexEntrySize {
			t.Fatalf("an entry is %d bytes, want %d", len(b), IndexEntrySize)
		}
		if got := IndexEntryEnd(b); got != end {
			t.Fatalf("IndexEntryEnd = %d, want %d", got, end)
		}
	}
}

func TestIndexEndsAreRangesRecordByRecord(t *testing.T) {
	const dataStart = 4096
	idx := AppendIndexHeader(nil, dataStart)
	end := int64(dataStart)
	var want []int64
	for i := range 600 {
		end += int64(10 + i%7)
		want = append(want, end)
		idx = AppendIndexEntry(idx, end, uint64(i+1))
	}
	x, err := OpenIndex(bytes.NewReader(idx))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range [][2]uint64{{0, 1}, {0, EndsMax}, {1, 10}, {599, 1}, {300, EndsMax}} {
		ends := make([]int64, c[1])
		start, err := x.Ends(c[0], ends)
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		s, e, err := x.Range(c[0], c[1])
		if err != nil || start != s || ends[len(ends)-1] != e || !slices.Equal(ends, want[c[0]:c[0]+c[1]]) {
			t.Fatalf("%v: start %d ends %v; Range [%d, %d) %v", c, start, ends, s, e, err)
		}
	}
	if _, err := x.Ends(0, make([]int64, EndsMax+1)); err == nil {
		t.Fatal("more than EndsMax ends")
	}
	bad := AppendIndexEntry(append([]byte(nil), idx[:IndexSize(1)]...), dataStart, 2) // record 1 ends where it starts
	x, _ = OpenIndex(bytes.NewReader(bad))
	if _, err := x.Ends(0, make([]int64, 2)); !errors.Is(err, ErrIndexFormat) {
		t.Fatalf("ends that do not go forward: %v", err)
	}
}
