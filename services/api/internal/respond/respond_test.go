package respond

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

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

func TestBodyJoinsLinesIntoAJSONArray(t *testing.T) {
	fields := []string{"id", "name", "note"}
	file := append([]byte("HEADER\n"), records(t, fields, tricky)...)
	start := int64(len("HEADER\n"))
	head := []byte(`{"data":[`)
	for _, tc := range []struct {
		name string
		read func(b *Body) ([]byte, error)
	}{
		{"WriteTo", func(b *Body) ([]byte, error) { var w bytes.Buffer; _, err := b.WriteTo(&w); return w.Bytes(), err }},
		{"Read one byte at a time", func(b *Body) ([]byte, error) { return io.ReadAll(iotest.OneByteReader(b)) }},
		{"Read 7 bytes at a time", func(b *Body) ([]byte, error) {
			var out []byte
			p := make([]byte, 7)
			for {
				n, err := b.Read(p)
				out = append(out, p[:n]...)
				if err == io.EOF {
					return out, nil
				}
				if err != nil {
					return out, err
				}
			}
		}},
	} {
		for _, known := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{false: ", scanned", true: ", at known line ends"}[known], func(t *testing.T) {
				var done []int64
				b := NewBody(head, bytes.NewReader(file), start, int64(len(file)), true, []byte(EnvelopeTail), func(n int64, err error) {
					if err != nil {
						t.Errorf("done with %v", err)
					}
					done = append(done, n)
				})
				if known {
					b.SetEnds(lineEndsOf(file[start:], start))
				}
				size := b.Size()
				got, err := tc.read(b)
				if err != nil {
					t.Fatal(err)
				}
				b.Close()
				b.Close()
				if int64(len(got)) != size || len(done) != 1 || done[0] != size {
					t.Fatalf("%d bytes, Size %d, done %v", len(got), size, done)
				}
				var v struct {
					Data []map[string]string `json:"data"`
				}
				if err := json.Unmarshal(got, &v); err != nil {
					t.Fatalf("not JSON: %v\n%s", err, got)
				}
				for i, r := range tricky {
					if m := v.Data[i]; m["id"] != r[0] || m["name"] != r[1] || m["note"] != r[2] {
						t.Errorf("record %d: %q, want %q", i, m, r)
					}
				}
			})
		}
	}
}

func TestBodyNDJSONIsTheBytesUnchanged(t *testing.T) {
	file := records(t, []string{"a"}, [][]string{{"1"}, {"2"}, {"3"}})
	b := NewBody(nil, bytes.NewReader(file), 0, int64(len(file)), false, nil, nil)
	got, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(got, file) || b.Size() != int64(len(file)) {
		t.Fatalf("%q %v", got, err)
	}
}

func TestBodyEmptyRangeIsAnEmptyArray(t *testing.T) {
	b := NewBody([]byte(`{"data":[`), bytes.NewReader(nil), 0, 0, true, []byte(EnvelopeTail), nil)
	got, _ := io.ReadAll(b)
	if string(got) != `{"data":[]}` || b.Size() != int64(len(got)) {
		t.Fatalf("%q size %d", got, b.Size())
	}
}

func TestBodyRefusesARangeThatDoesNotEndALine(t *testing.T) {
	file := []byte(`{"a":"1"}` + "\n" + `{"a":"2"}`)
	var doneErr error
	b := NewBody(nil, bytes.NewReader(file), 0, int64(len(file)), true, nil, func(_ int64, err error) { doneErr = err })
	if _, err := b.WriteTo(io.Discard); !errors.Is(err, ErrCorrupt) || !IsSourceError(err) {
		t.Fatalf("WriteTo: %v, want a SourceError wrapping ErrCorrupt", err)
	}
	b.Close()
	if !errors.Is(doneErr, ErrCorrupt) {
		t.Fatalf("done got %v", doneErr)
	}
	// A file shorter than the index says.
	b = NewBody(nil, bytes.NewReader(file[:5]), 0, int64(len(file)), false, nil, nil)
	if _, err := b.WriteTo(io.Discard); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short file: %v", err)
	}
}

func TestBodyClosedEarlyReportsIt(t *testing.T) {
	file := records(t, []string{"a"}, [][]string{{"1"}, {"2"}})
	var doneErr error
	b := NewBody(nil, bytes.NewReader(file), 0, int64(len(file)), false, nil, func(_ int64, err error) { doneErr = err })
	b.Read(make([]byte, 3))
	b.Close()
	if !errors.Is(doneErr, io.ErrUnexpectedEOF) {
		t.Fatalf("closed after 3 bytes: %v", doneErr)
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("connection reset by peer")
	}
	f.after--
	return len(p), nil
}

func TestBodyStopsAtTheFirstWriteError(t *testing.T) {
	big := records(t, []string{"a"}, [][]string{{strings.Repeat("x", 3*ChunkSize)}})
	var doneErr error
	b := NewBody([]byte("["), bytes.NewReader(big), 0, int64(len(big)), true, []byte("]"), func(_ int64, err error) { doneErr = err })
	if _, err := b.WriteTo(&failWriter{after: 2}); err == nil || IsSourceError(err) {
		t.Fatalf("a failed write: %v, want a client-side error", err)
	}
	b.Close()
	if doneErr == nil {
		t.Fatal("done saw no error")
	}
}

func TestCSVWritesTheFieldsThenEveryRecord(t *testing.T) {
	fields := []string{"id", "name", "note"}
	file := records(t, fields, tricky)
	{
		var w bytes.Buffer
		if _, err := (CSV{Fields: fields, Src: bytes.NewReader(file), Start: 0, End: int64(len(file))}).WriteTo(&w); err != nil {
			t.Fatal(err)
		}
		r := csv.NewReader(&w)
		got, err := r.ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		want := append([][]string{fields}, tricky...)
		if len(got) != len(want) {
			t.Fatalf("%d rows, want %d", len(got), len(want))
		}
		for i := range want {
			for j := range want[i] {
				if got[i][j] != strings.ReplaceAll(want[i][j], "\r\n", "\n") { // encoding/csv reads CRLF in a quoted field as LF
					t.Errorf("row %d field %d: %q, want %q", i, j, got[i][j], want[i][j])
				}
			}
		}
	}
}

func TestCSVKeepsLongRecordsWhole(t *testing.T) {
	fields := []string{"k", "v"}
	rows := [][]string{{"a", strings.Repeat("é", ChunkSize)}, {"b", "short"}, {"c", strings.Repeat("x,\"", ChunkSize/2)}}
	file := records(t, fields, rows)
	var w bytes.Buffer
	if _, err := (CSV{Fields: fields, Src: bytes.NewReader(file), End: int64(len(file))}).WriteTo(&w); err != nil {
		t.Fatal(err)
	}
	got, err := csv.NewReader(&w).ReadAll()
	if err != nil || len(got) != 4 || got[1][1] != rows[0][1] || got[3][1] != rows[2][1] {
		t.Fatalf("%v, %d rows", err, len(got))
	}
}

func TestDecodeRecordMatchesEncodingJSON(t *testing.T) {
	lines := []string{
		`{"a":"x","b":"y"}`,
		`{"b":"y","a":"x"}`,                   // another key order
		`{"a":"\ud83d\ude00 \u00e9 \/ \b\f"}`, // escapes encoding/json also accepts
		`{"a":"\ud800 lone","b":"\udc00\ud800"}`,
		`{"a":1,"b":null}`, // not strings: the slow path
		`{"a":"x","extra":"z"}`,
	}
	fields := []string{"a", "b"}
	for _, line := range lines {
		offs := make([]int, 4)
		scratch, err := decodeRecord([]byte(line), fields, offs, nil)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		var m map[string]any
		json.Unmarshal([]byte(line), &m)
		for f, name := range fields {
			got := string(scratch[offs[2*f]:offs[2*f+1]])
			want := ""
			switch v := m[name].(type) {
			case string:
				want = v
			case float64:
				want = "1"
			}
			if got != want {
				t.Errorf("%s field %s: %q, want %q", line, name, got, want)
			}
		}
	}
	if _, err := decodeRecord([]byte(`{"a":`), fields, make([]int, 4), nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("broken record: %v", err)
	}
}

func TestGzipRoundTrips(t *testing.T) {
	file := records(t, []string{"id", "name", "note"}, tricky)
	var w bytes.Buffer
	n, err := Gzip(&w, NewBody([]byte("["), bytes.NewReader(file), 0, int64(len(file)), true, []byte("]"), nil))
	if err != nil || n != int64(w.Len()) {
		t.Fatal(n, err)
	}
	zr, err := gzip.NewReader(&w)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !json.Valid(got) {
		t.Fatalf("%v %s", err, got)
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

func BenchmarkBody(b *testing.B) {
	rows := make([][]string, 1000)
	for i := range rows {
		rows[i] = []string{"id-" + strings.Repeat("7", 6), strings.Repeat("Shopify product title ", 40), "tag"}
	}
	file := records(b, []string{"id", "title", "tag"}, rows)
	src := bytes.NewReader(file)
	for _, mode := range []struct {
		name string
		join bool
	}{{"json-1000", true}, {"ndjson-1000", false}} {
		b.Run(mode.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(file)))
			for b.Loop() {
				body := NewBody([]byte(`{"data":[`), src, 0, int64(len(file)), mode.join, []byte(EnvelopeTail), nil)
				if _, err := body.WriteTo(io.Discard); err != nil {
					b.Fatal(err)
				}
				body.Close()
			}
		})
	}
	b.Run("csv-1000", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(file)))
		for b.Loop() {
			if _, err := (CSV{Fields: []string{"id", "title", "tag"}, Src: src, End: int64(len(file))}).WriteTo(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gzip-json-1000", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(file)))
		for b.Loop() {
			body := NewBody([]byte(`{"data":[`), src, 0, int64(len(file)), true, []byte(EnvelopeTail), nil)
			if _, err := Gzip(io.Discard, body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
