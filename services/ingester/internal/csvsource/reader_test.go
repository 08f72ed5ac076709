package csvsource

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"golang.org/x/text/encoding/charmap"
)

type rejectWant struct {
	line   int
	reason error
}

type readResult struct {
	header  []string
	records [][]string
	lines   []int
	rejects []rejectWant
}

// readAll reads every record, copying the values (Read's strings are only
// valid until the next Read).
func readAll(t *testing.T, r io.Reader, o Options) readResult {
	t.Helper()
	rd, err := NewReader(r, "t.csv", o)
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	res := readResult{header: rd.Header()}
	for {
		rec, err := rd.Read()
		if err == io.EOF {
			return res
		}
		var re *RowError
		if errors.As(err, &re) {
			res.rejects = append(res.rejects, rejectWant{re.Line, re.Err})
			continue
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		cp := make([]string, len(rec))
		for i, v := range rec {
			cp[i] = strings.Clone(v)
		}
		res.records = append(res.records, cp)
		res.lines = append(res.lines, rd.Line())
	}
}

// readers gives the same text whole, one byte per Read, and in odd chunks,
// so every buffer boundary is crossed.
func readers(s string) map[string]func() io.Reader {
	return map[string]func() io.Reader{
		"whole":   func() io.Reader { return strings.NewReader(s) },
		"onebyte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"halves":  func() io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
	}
}

func TestReaderRecords(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		opts    Options
		header  []string
		records [][]string
		lines   []int
		rejects []rejectWant
	}{
		{name: "simple", in: "a,b,c\n1,2,3\n", header: []string{"a", "b", "c"},
			records: [][]string{{"1", "2", "3"}}, lines: []int{2}},
		{name: "no final newline", in: "a,b\n1,2", header: []string{"a", "b"},
			records: [][]string{{"1", "2"}}, lines: []int{2}},
		{name: "crlf", in: "a,b\r\n1,2\r\n3,4\r\n", header: []string{"a", "b"},
			records: [][]string{{"1", "2"}, {"3", "4"}}, lines: []int{2, 3}},
		{name: "crlf inside quotes is kept", in: "a,b\r\n\"x\r\ny\",2\r\n3,4\r\n", header: []string{"a", "b"},
			records: [][]string{{"x\r\ny", "2"}, {"3", "4"}}, lines: []int{2, 4}},
		{name: "lone cr line ends", in: "a,b\r1,2\r3,4", header: []string{"a", "b"},
			records: [][]string{{"1", "2"}, {"3", "4"}}, lines: []int{2, 3}},
		{name: "bom dropped", in: "\xEF\xBB\xBFa,b\n1,2\n", header: []string{"a", "b"},
			records: [][]string{{"1", "2"}}, lines: []int{2}},
		{name: "blank lines are no record", in: "\na,b\n\n1,2\n\r\n3,4\n\n", header: []string{"a", "b"},
			records: [][]string{{"1", "2"}, {"3", "4"}}, lines: []int{4, 6}},
		{name: "doubled quotes", in: "a,b\n\"x\"\"y\",\"\"\n", header: []string{"a", "b"},
			records: [][]string{{"x\"y", ""}}, lines: []int{2}},
		{name: "bare quote in unquoted field kept", in: "a,b\n12\" pizza,1\n", header: []string{"a", "b"},
			records: [][]string{{"12\" pizza", "1"}}, lines: []int{2}},
		{name: "empty last field", in: "a,b\n1,\n,\n", header: []string{"a", "b"},
			records: [][]string{{"1", ""}, {"", ""}}, lines: []int{2, 3}},
		{name: "multi-line field moves line numbers", in: "a,b\n\"l1\nl2\r\nl3\rl4\",x\n1,2,3\n", header: []string{"a", "b"},
			records: [][]string{{"l1\nl2\r\nl3\rl4", "x"}}, lines: []int{2},
			rejects: []rejectWant{{6, ErrFieldCount}}},
		{name: "wrong field count", in: "a,b\n1,2,3\n4,5\n6\n", header: []string{"a", "b"},
			records: [][]string{{"4", "5"}}, lines: []int{3},
			rejects: []rejectWant{{2, ErrFieldCount}, {4, ErrFieldCount}}},
		{name: "text after closing quote", in: "a,b\n\"x\"y,\"1\n2\"\n2,3\n", header: []string{"a", "b"},
			records: [][]string{{"2", "3"}}, lines: []int{4},
			rejects: []rejectWant{{2, ErrQuote}, {3, ErrFieldCount}}},
		{name: "unterminated quote", in: "a,b\n1,2\n\"open,3\n4,5\n", header: []string{"a", "b"},
			records: [][]string{{"1", "2"}}, lines: []int{2},
			rejects: []rejectWant{{3, ErrQuote}}},
		{name: "too large", in: "a,b\n1234567890123,x\n\"12345\n67890123\",y\n1,2\n", opts: Options{MaxRecordBytes: 10},
			header: []string{"a", "b"}, records: [][]string{{"1", "2"}}, lines: []int{5},
			rejects: []rejectWant{{2, ErrTooLarge}, {3, ErrTooLarge}}},
		{name: "semicolon detected", in: "a;b;c\n1;2,5;3\n", header: []string{"a", "b", "c"},
			records: [][]string{{"1", "2,5", "3"}}, lines: []int{2}},
		{name: "tab detected", in: "a\tb\n1,5\t2\n", header: []string{"a", "b"},
			records: [][]string{{"1,5", "2"}}, lines: []int{2}},
		{name: "pipe detected, quoted comma ignored", in: "\"x,y,z\"|b\n1|2\n", header: []string{"x,y,z", "b"},
			records: [][]string{{"1", "2"}}, lines: []int{2}},
		{name: "given delimiter wins", in: "a;b,c\n1;2,3\n", opts: Options{Delimiter: ','}, header: []string{"a;b", "c"},
			records: [][]string{{"1;2", "3"}}, lines: []int{2}},
		{name: "windows-1252", in: "name,price\nCaf\xe9,\x803\n", opts: Options{Encoding: charmap.Windows1252},
			header: []string{"name", "price"}, records: [][]string{{"Café", "€3"}}, lines: []int{2}},
		{name: "header only", in: "a,b\n", header: []string{"a", "b"}},
	}
	for _, tc := range tests {
		for how, open := range readers(tc.in) {
			t.Run(tc.name+"/"+how, func(t *testing.T) {
				got := readAll(t, open(), tc.opts)
				want := readResult{header: tc.header, records: tc.records, lines: tc.lines, rejects: tc.rejects}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("got\n  %#v\nwant\n  %#v", got, want)
				}
			})
		}
	}
}

func TestReaderRefusesSource(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"zero bytes", "", ErrEmpty},
		{"bom only", "\xEF\xBB\xBF", ErrBOMOnly},
		{"blank lines only", "\n\r\n\n", ErrNoHeader},
		{"bom and blank lines", "\xEF\xBB\xBF\n\n", ErrNoHeader},
		{"header not utf-8", "caf\xe9,b\n1,2\n", ErrBadHeader},
		{"header quote never closes", "\"a,b\n1,2\n", ErrBadHeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(strings.NewReader(tc.in), "in.csv", Options{})
			var se *SourceError
			if !errors.As(err, &se) || !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want a *SourceError wrapping %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "in.csv: ") {
				t.Errorf("error %q does not start with the file name", err)
			}
		})
	}
}

func TestRowErrorNamesFileAndLine(t *testing.T) {
	rd, err := NewReader(strings.NewReader("a,b\n1,2\n3\n"), "data/products.csv", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Read(); err != nil {
		t.Fatal(err)
	}
	_, err = rd.Read()
	var re *RowError
	if !errors.As(err, &re) || !errors.Is(err, ErrFieldCount) {
		t.Fatalf("err = %v, want a *RowError wrapping ErrFieldCount", err)
	}
	if got, want := err.Error(), "data/products.csv:3: wrong number of fields: 1 fields, want 2"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if rj := re.Reject(); rj.Line != 3 || rj.Reason != "wrong number of fields" || rj.Raw != "3" ||
		rj.Error != "products.csv:3: wrong number of fields: 1 fields, want 2" {
		t.Errorf("Reject() = %+v, want the error to name products.csv by its base name", rj)
	}
}

// TestRejectNamesTheSourceByItsBaseName: a reject is kept and served to
// others, so it never carries a directory of the ingester's machine.
func TestRejectNamesTheSourceByItsBaseName(t *testing.T) {
	for name, want := range map[string]string{
		"/home/ana/exports/bad.csv": "bad.csv:3: ",
		"exports/bad.csv":           "bad.csv:3: ",
		"bad.csv":                   "bad.csv:3: ",
		"-":                         "-:3: ",
		"https://shop.example/exports/orders.csv": "orders.csv:3: ",
		"https://shop.example/":                   "https://shop.example/:3: ",
	} {
		re := &RowError{File: name, Line: 3, Err: ErrFieldCount}
		if got := re.Reject().Error; !strings.HasPrefix(got, want) {
			t.Errorf("source %q: reject error %q, want it to start %q", name, got, want)
		}
		if got := re.Error(); !strings.HasPrefix(got, name+":3: ") {
			t.Errorf("source %q: Error() = %q, want the name as given (for the person who ran it)", name, got)
		}
	}
}

// TestReaderRoundTrip reads back what encoding/csv writes, for random
// records full of delimiters, quotes, line breaks and non-ASCII text.
func TestReaderRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", ",", "\"", "\n", " ", "é", "€", "\t", ";", "x\"y", "0850"}
	want := [][]string{{"h1", "h2", "h3"}}
	for range 500 {
		rec := make([]string, 3)
		for i := range rec {
			var b strings.Builder
			for range rng.IntN(12) {
				b.WriteString(alphabet[rng.IntN(len(alphabet))])
			}
			rec[i] = b.String()
		}
		want = append(want, rec)
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	if err := w.WriteAll(want); err != nil {
		t.Fatal(err)
	}
	for how, open := range readers(buf.String()) {
		t.Run(how, func(t *testing.T) {
			got := readAll(t, open(), Options{Delimiter: ','})
			if len(got.rejects) > 0 {
				t.Fatalf("rejects: %v", got.rejects)
			}
			if !reflect.DeepEqual(append([][]string{got.header}, got.records...), want) {
				for i := range min(len(got.records), len(want)-1) {
					if !reflect.DeepEqual(got.records[i], want[i+1]) {
						t.Fatalf("record %d: got %q, want %q", i+1, got.records[i], want[i+1])
					}
				}
				t.Fatalf("got %d records, want %d", len(got.records), len(want)-1)
			}
		})
	}
}

func TestDetectDelimiter(t *testing.T) {
	for in, want := range map[string]byte{
		"a,b,c\n":              ',',
		"a;b;c\n1,2;3\n":       ';',
		"a\tb\n":               '\t',
		"a|b|c\n":              '|',
		"single\n":             ',',
		"\n\na;b\n":            ';',
		"\"a;b;c\",d\n":        ',',
		"a,b;c;d\nx,y,z,w,v\n": ';',
	} {
		if got := DetectDelimiter([]byte(in)); got != want {
			t.Errorf("DetectDelimiter(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseDelimiter(t *testing.T) {
	for in, want := range map[string]byte{"": 0, "auto": 0, ",": ',', ";": ';', "tab": '\t', "\t": '\t', "|": '|', "pipe": '|'} {
		if got, err := ParseDelimiter(in); err != nil || got != want {
			t.Errorf("ParseDelimiter(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"\"", "ab", "x", "1", "\n"} {
		if _, err := ParseDelimiter(in); err == nil {
			t.Errorf("ParseDelimiter(%q) accepted", in)
		}
	}
}

func TestLookupEncoding(t *testing.T) {
	for _, name := range []string{"", "utf-8", "UTF8"} {
		if e, err := LookupEncoding(name); e != nil || err != nil {
			t.Errorf("LookupEncoding(%q) = %v, %v; want nil, nil", name, e, err)
		}
	}
	for _, name := range []string{"windows-1252", "latin-1", "iso-8859-1", "utf-16le", "windows-1250"} {
		if e, err := LookupEncoding(name); e == nil || err != nil {
			t.Errorf("LookupEncoding(%q) = %v, %v", name, e, err)
		}
	}
	if _, err := LookupEncoding("klingon"); err == nil {
		t.Error("LookupEncoding(klingon) accepted")
	}
}
