package respond

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// lineEndsOf is what pagereader.Span.Ends says of recs found at file
// offset start: the offset just past each '\n'.
func lineEndsOf(recs []byte, start int64) []int64 {
	var ends []int64
	for i, c := range recs {
		if c == '\n' {
			ends = append(ends, start+int64(i)+1)
		}
	}
	return ends
}

// An index that disagrees with the data file (a known line end that is
// not a newline) stops the body with ErrCorrupt, as a range that does not
// end a line does.
func TestJoinAtAnEndThatIsNotANewlineIsCorrupt(t *testing.T) {
	file := records(t, []string{"a"}, [][]string{{"1"}, {"22"}, {"333"}})
	ends := lineEndsOf(file, 0)
	ends[1]-- // inside the third record
	b := NewBody([]byte("["), bytes.NewReader(file), 0, int64(len(file)), true, []byte("]"), nil)
	b.SetEnds(ends)
	_, err := io.ReadAll(b)
	if !IsSourceError(err) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read: %v, want ErrCorrupt", err)
	}
	if _, err := Buffer([]byte("["), bytes.NewReader(file), 0, int64(len(file)), ends, true, []byte("]")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Buffer: %v, want ErrCorrupt", err)
	}
}

// Ends that are not those of the range (another range's, or none) are not
// trusted: the range is scanned.
func TestJoinIgnoresEndsOfAnotherRange(t *testing.T) {
	file := records(t, []string{"a"}, [][]string{{"1"}, {"22"}, {"333"}})
	want := joined("[", file, "]")
	for _, ends := range [][]int64{nil, {}, lineEndsOf(file[:8], 0), lineEndsOf(file, 5)} {
		b, err := Buffer([]byte("["), bytes.NewReader(file), 0, int64(len(file)), ends, true, []byte("]"))
		if err != nil || !bytes.Equal(b.Bytes(), want) {
			t.Fatalf("ends %v: %q, %v; want %q", ends, b.Bytes(), err, want)
		}
		b.Close()
	}
}

// BenchmarkJoin is a page of 10 records read whole (the api's inline
// answer, Buffer) and one of 100 streamed through a Body: the JSON join
// scanning the bytes for newlines, at the line ends the index gives, and
// NDJSON (no join) for comparison. Records are about 1.2 KB, like a
// Shopify product row; the source is in memory, so a read costs a copy and
// no system call.
func BenchmarkJoin(b *testing.B) {
	rows := make([][]string, 100)
	for i := range rows {
		rows[i] = []string{"id-" + strings.Repeat("7", 6), strings.Repeat("Shopify product title ", 55), "tag"}
	}
	file := records(b, []string{"id", "title", "tag"}, rows)
	src := bytes.NewReader(file)
	for _, n := range []int{10, 100} {
		recs := lineEndsOf(file, 0)[:n]
		end := recs[n-1]
		head := []byte(`{"data":[`)
		for _, mode := range []struct {
			name string
			join bool
			ends []int64
		}{{"json-scanned", true, nil}, {"json-at-ends", true, recs}, {"ndjson", false, nil}} {
			b.Run(fmt.Sprintf("%s-%d", mode.name, n), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(end)
				body := new(Body)
				for b.Loop() {
					if !Fits(head, 0, end, nil) {
						body.Reset(head, src, 0, end, mode.join, []byte(EnvelopeTail), nil)
						body.SetEnds(mode.ends)
						if _, err := body.WriteTo(io.Discard); err != nil {
							b.Fatal(err)
						}
						continue
					}
					buf, err := Buffer(head, src, 0, end, mode.ends, mode.join, []byte(EnvelopeTail))
					if err != nil {
						b.Fatal(err)
					}
					buf.Close()
				}
			})
		}
	}
}
