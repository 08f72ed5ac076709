package respond

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

func records(t testing.TB, fields []string, rows [][]string) []byte {
	t.Helper()
	enc, err := schema.NewRecordEncoder(fields)
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, r := range rows {
		if b, err = enc.Append(b, r); err != nil {
			t.Fatal(err)
		}
		b = append(b, '\n')
	}
	return b
}

var tricky = [][]string{
	{"1", "plain", ""},
	{"2", `quote " and \ backslash`, "comma, inside"},
	{"3", "line\nbreak\r\nand\ttab", " leading space"},
	{"4", "üñíçødé 日本語 😀", "\u2028\u2029 separators"},
	{"5", "\x01\x1f controls", `"quoted"`},
	{"6", "</script>&<>", ""},
}

func TestAppendEnvelopeHeadIsTheContractsOrder(t *testing.T) {
	got := AppendEnvelopeHead(nil, Envelope{Dataset: "products", Generation: 42, Count: 25, Offset: 20, Limit: 10, Returned: 5})
	want := `{"dataset":"products","generation":42,"count":25,"offset":20,"limit":10,"returned":5,"next_offset":null,"data":[`
	if string(got) != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
	got = AppendEnvelopeHead(nil, Envelope{Dataset: "p", Generation: 1, Count: 25, Offset: 0, Limit: 10, Returned: 10, NextOffset: 10, HasNext: true})
	if !strings.Contains(string(got), `"next_offset":10,"data":[`) {
		t.Fatalf("next_offset: %s", got)
	}
}

// ways are the ways a page body is produced: whole, or written to a writer.
var ways = []struct {
	name string
	read func(p *Page) ([]byte, error)
}{
	{"Append", func(p *Page) ([]byte, error) { return p.Append([]byte("prefix:")) }},
	{"WriteTo", func(p *Page) ([]byte, error) {
		w := bytes.NewBufferString("prefix:")
		n, err := p.WriteTo(w)
		if err == nil && n != int64(w.Len()-len("prefix:")) {
			err = fmt.Errorf("WriteTo counted %d bytes of %d", n, w.Len()-len("prefix:"))
		}
		return w.Bytes(), err
	}},
}

// produce returns p's body made every way, checking that they agree.
func produce(t *testing.T, p Page) []byte {
	t.Helper()
	var first []byte
	for _, way := range ways {
		got, err := way.read(&p)
		if err != nil {
			t.Fatalf("%s: %v", way.name, err)
		}
		if !bytes.HasPrefix(got, []byte("prefix:")) {
			t.Fatalf("%s: the bytes before the body were lost", way.name)
		}
		got = got[len("prefix:"):]
		if n := p.Size(); n >= 0 && int64(len(got)) != n {
			t.Fatalf("%s: %d bytes, Size %d", way.name, len(got), n)
		}
		if first == nil {
			first = got
		} else if !bytes.Equal(got, first) {
			t.Fatalf("%s: %q, Append gave %q", way.name, got, first)
		}
	}
	return first
}

// bigTricky is tricky repeated past a few ChunkSize, so that WriteTo cuts
// records between chunks.
func bigTricky() [][]string {
	var rows [][]string
	for len(rows) < 3*ChunkSize/40 {
		rows = append(rows, tricky...)
	}
	return rows
}

func TestJSONJoinsLinesIntoAnArray(t *testing.T) {
	fields := []string{"id", "name", "note"}
	for _, rows := range [][][]string{tricky, bigTricky()} {
		file := append([]byte("HEADER\n"), records(t, fields, rows)...)
		p := Page{Head: []byte(`{"data":[`), Tail: []byte(EnvelopeTail), Src: bytes.NewReader(file),
			Start: int64(len("HEADER\n")), End: int64(len(file)), Records: len(rows), Format: JSON}
		got := produce(t, p)
		var v struct {
			Data []map[string]string `json:"data"`
		}
		if err := json.Unmarshal(got, &v); err != nil {
			t.Fatalf("not JSON: %v\n%.300s", err, got)
		}
		if len(v.Data) != len(rows) {
			t.Fatalf("%d records, want %d", len(v.Data), len(rows))
		}
		for i, r := range rows {
			if m := v.Data[i]; m["id"] != r[0] || m["name"] != r[1] || m["note"] != r[2] {
				t.Fatalf("record %d: %q, want %q", i, m, r)
			}
		}
	}
}

// lineEnds are the offsets just past each '\n' of file[start:].
func lineEnds(file []byte, start int64) []int64 {
	var ends []int64
	for i := start; i < int64(len(file)); i++ {
		if file[i] == '\n' {
			ends = append(ends, i+1)
		}
	}
	return ends
}

// With the index's line ends, the join rewrites exactly those bytes: the
// same page; ends that are not line ends are refused.
func TestJSONAtKnownLineEnds(t *testing.T) {
	file := append([]byte("HEADER\n"), records(t, []string{"id", "name", "note"}, tricky)...)
	start := int64(len("HEADER\n"))
	p := Page{Head: []byte(`{"data":[`), Tail: []byte(EnvelopeTail), Src: bytes.NewReader(file),
		Start: start, End: int64(len(file)), Records: len(tricky), Format: JSON}
	want, err := p.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Ends = lineEnds(file, start)
	if got := produce(t, p); !bytes.Equal(got, want) {
		t.Fatalf("at known ends:\n%s\nwant\n%s", got, want)
	}
	p.Ends[1]-- // not a line end
	for _, way := range ways {
		if _, err := way.read(&p); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: an end that is not a newline: %v", way.name, err)
		}
	}
}

func TestNDJSONIsTheBytesUnchanged(t *testing.T) {
	for _, rows := range [][][]string{tricky, bigTricky()} {
		file := records(t, []string{"id", "name", "note"}, rows)
		p := Page{Src: bytes.NewReader(file), End: int64(len(file)), Records: len(rows), Format: NDJSON}
		if got := produce(t, p); !bytes.Equal(got, file) {
			t.Fatalf("%d bytes, want the %d of the file", len(got), len(file))
		}
	}
}

func TestEmptyRangeIsAnEmptyArray(t *testing.T) {
	p := Page{Head: []byte(`{"data":[`), Tail: []byte(EnvelopeTail), Src: bytes.NewReader(nil), Format: JSON}
	if got := produce(t, p); string(got) != `{"data":[]}` {
		t.Fatalf("%q", got)
	}
}

// A range whose bytes do not hold the lines the index says, or that a
// short file cuts, is a SourceError, whichever way the body is produced.
func TestRangesThatAreNotTheIndexsRecordsAreRefused(t *testing.T) {
	file := []byte(`{"a":"1"}` + "\n" + `{"a":"2"}` + "\n")
	for _, tc := range []struct {
		name string
		p    Page
		want error
	}{
		{"not ending a line", Page{Src: bytes.NewReader(file), End: int64(len(file)) - 1, Records: 2}, ErrCorrupt},
		{"fewer lines than records", Page{Src: bytes.NewReader(file), End: int64(len(file)), Records: 3}, ErrCorrupt},
		{"more lines than records", Page{Src: bytes.NewReader(file), End: int64(len(file)), Records: 1}, ErrCorrupt},
		{"a short file", Page{Src: bytes.NewReader(file[:5]), End: int64(len(file)), Records: 2}, io.ErrUnexpectedEOF},
	} {
		for _, f := range []Format{JSON, NDJSON, CSV} {
			for _, way := range ways {
				p := tc.p
				p.Format, p.Fields = f, []string{"a"}
				if _, err := way.read(&p); !errors.Is(err, tc.want) || !IsSourceError(err) {
					t.Errorf("%s, format %d, %s: %v, want a SourceError wrapping %v", tc.name, f, way.name, err, tc.want)
				}
			}
		}
	}
}

type failWriter struct{ after, calls int }

func (f *failWriter) Write(p []byte) (int, error) {
	f.calls++
	if f.after <= 0 {
		return 0, errors.New("connection reset by peer")
	}
	f.after--
	return len(p), nil
}

func TestWriteToStopsAtTheFirstWriteError(t *testing.T) {
	big := records(t, []string{"a"}, [][]string{{strings.Repeat("x", 3*ChunkSize)}})
	for _, gz := range []bool{false, true} {
		p := Page{Head: []byte("["), Tail: []byte("]"), Src: bytes.NewReader(big), End: int64(len(big)), Records: 1, Format: JSON, Gzip: gz}
		w := &failWriter{after: 2}
		if _, err := p.WriteTo(w); err == nil || IsSourceError(err) {
			t.Fatalf("gzip %v: a failed write: %v, want a client-side error", gz, err)
		}
		if w.after != 0 || w.calls != 3 {
			t.Fatalf("gzip %v: %d writes after the failed one", gz, w.calls-3)
		}
	}
}

func TestCSVIsTheFieldsThenEveryRecord(t *testing.T) {
	fields := []string{"id", "name", "note"}
	long := [][]string{{"a", strings.Repeat("é", ChunkSize), ""}, {"b", "short", ""}, {"c", strings.Repeat("x,\"", ChunkSize/2), ""}}
	for _, rows := range [][][]string{tricky, bigTricky(), long} {
		file := records(t, fields, rows)
		got := produce(t, Page{Src: bytes.NewReader(file), End: int64(len(file)), Records: len(rows), Format: CSV, Fields: fields})
		if !bytes.HasSuffix(got, []byte("\r\n")) {
			t.Fatal("rows do not end in CRLF")
		}
		all, err := csv.NewReader(bytes.NewReader(got)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		want := append([][]string{fields}, rows...)
		if len(all) != len(want) {
			t.Fatalf("%d rows, want %d", len(all), len(want))
		}
		for i := range want {
			for j := range want[i] {
				if all[i][j] != strings.ReplaceAll(want[i][j], "\r\n", "\n") { // encoding/csv reads CRLF in a quoted field as LF
					t.Fatalf("row %d field %d: %.40q, want %.40q", i, j, all[i][j], want[i][j])
				}
			}
		}
	}
}

func TestGzipRoundTrips(t *testing.T) {
	fields := []string{"id", "name", "note"}
	file := records(t, fields, bigTricky())
	for _, f := range []Format{JSON, NDJSON, CSV} {
		p := Page{Src: bytes.NewReader(file), End: int64(len(file)), Records: len(bigTricky()), Format: f, Fields: fields}
		if f == JSON {
			p.Head, p.Tail = []byte("["), []byte("]")
		}
		plain := produce(t, p)
		p.Gzip = true
		zr, err := gzip.NewReader(bytes.NewReader(produce(t, p)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("format %d: %v, %d bytes unzipped, want %d", f, err, len(got), len(plain))
		}
	}
}

func TestAppendErrorShape(t *testing.T) {
	got := AppendError(nil, "invalid_parameter", "limit must be \"1\"\xff")
	var v struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(got, &v); err != nil || v.Error.Code != "invalid_parameter" || !strings.HasPrefix(v.Error.Message, `limit must be "1"`) {
		t.Fatalf("%s: %v", got, err)
	}
}

func BenchmarkPage(b *testing.B) {
	rows := make([][]string, 1000)
	for i := range rows {
		rows[i] = []string{"id-" + strings.Repeat("7", 6), strings.Repeat("Shopify product title ", 40), "tag"}
	}
	fields := []string{"id", "title", "tag"}
	file := records(b, fields, rows)
	for _, tc := range []struct {
		name string
		p    Page
	}{
		{"json-1000", Page{Head: []byte(`{"data":[`), Tail: []byte(EnvelopeTail), Format: JSON}},
		{"ndjson-1000", Page{Format: NDJSON}},
		{"csv-1000", Page{Format: CSV, Fields: fields}},
		{"gzip-json-1000", Page{Head: []byte(`{"data":[`), Tail: []byte(EnvelopeTail), Format: JSON, Gzip: true}},
	} {
		p := tc.p
		p.Src, p.End, p.Records = bytes.NewReader(file), int64(len(file)), len(rows)
		b.Run(tc.name+"/append", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(file)))
			var buf []byte
			for b.Loop() {
				var err error
				if buf, err = p.Append(buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/writeto", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(file)))
			for b.Loop() {
				if _, err := p.WriteTo(io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
