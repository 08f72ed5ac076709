package schema

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// conformanceDir holds the csv-spectrum cases shared by every service:
// ../shared beside the repository, as the Makefile's SHARED, unless
// ROWPIPE_CONFORMANCE names another folder.
var conformanceDir = func() string {
	if d := os.Getenv("ROWPIPE_CONFORMANCE"); d != "" {
		return filepath.Join(d, "csv-spectrum")
	}
	return "../../../shared/conformance/csv-spectrum"
}()

// oracleString is what encoding/json writes for s with HTML escaping off.
func oracleString(t testing.TB, s string) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// pair is one member of a JSON object, in the order it appears.
type pair struct{ Key, Value string }

// decodeOrdered decodes one JSON object of string values with
// encoding/json, keeping its members in order. Anything else (another
// value type, trailing bytes) is an error.
func decodeOrdered(b []byte) ([]pair, error) {
	if !json.Valid(b) {
		return nil, errors.New("not valid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("want '{', got %v %v", tok, err)
	}
	var out []pair
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, err
		}
		v, err := dec.Token()
		if err != nil {
			return nil, err
		}
		vs, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("value of %q is %T, want a string", k, v)
		}
		out = append(out, pair{k.(string), vs})
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, fmt.Errorf("want '}', got %v %v", tok, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("bytes after the object: %v", err)
	}
	return out, nil
}

func pairsOf(fields, values []string) []pair {
	p := make([]pair, len(fields))
	for i := range fields {
		p[i] = pair{fields[i], values[i]}
	}
	return p
}

// hardStrings are values whose escaping is easy to get wrong.
var hardStrings = func() []string {
	s := []string{
		"", "plain", `say "hi"`, `back\slash`, `\"`, `"\\"`, "\\u0041",
		"line1\nline2", "crlf\r\nend", "\r", "tab\there", "\b\f", "\x00", "\x1f", "\x7f",
		"\u2028", "\u2029", "a\u2028b\u2029c", "\u2027\u202a", "\u2068",
		"😀", "👩🏽‍💻 family 👨‍👩‍👧", "e\u0301", "\ufeffbom", "\ufffd", "\U0010ffff",
		"<script>alert('x&y')</script>", "&amp;", "Großes Café — 北欧 ʤ",
		"</p>\n<ul><li>Size: 9\" x 12\"</li></ul>", "{\"type\": \"Point\"}",
		strings.Repeat("x", 5000),
	}
	var all strings.Builder
	for c := 0; c < 0x20; c++ {
		all.WriteByte(byte(c))
	}
	return append(s, all.String())
}()

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range hardStrings {
		got, err := AppendJSONString(nil, s)
		if err != nil {
			t.Errorf("AppendJSONString(%q) = %v", s, err)
			continue
		}
		if want := oracleString(t, s); string(got) != want {
			t.Errorf("AppendJSONString(%q) = %s, encoding/json writes %s", s, got, want)
		}
		var back string
		if err := json.Unmarshal(got, &back); err != nil || back != s {
			t.Errorf("AppendJSONString(%q) decodes to %q, %v", s, back, err)
		}
	}
}

func TestAppendJSONStringEveryRune(t *testing.T) {
	// Every ASCII byte and a sample of every UTF-8 length, one at a time.
	var runes []rune
	for r := rune(0); r < 0x800; r++ {
		runes = append(runes, r)
	}
	for r := rune(0x800); r <= utf8.MaxRune; r += 97 {
		runes = append(runes, r)
	}
	runes = append(runes, 0x2028, 0x2029, 0xfffd, 0xffff, 0x10000, utf8.MaxRune)
	for _, r := range runes {
		if !utf8.ValidRune(r) {
			continue // surrogates
		}
		s := "a" + string(r) + "b"
		got, err := AppendJSONString(nil, s)
		if err != nil || string(got) != oracleString(t, s) {
			t.Fatalf("AppendJSONString(%U) = %s, %v; encoding/json writes %s", r, got, err, oracleString(t, s))
		}
	}
}

func TestAppendJSONStringRefusesInvalidUTF8(t *testing.T) {
	tests := []struct {
		s      string
		offset int
	}{
		{"\xff", 0},
		{"abc\xfe", 3},
		{"é\xc3", 2},                  // truncated 2-byte sequence
		{"\xc3\x28", 0},               // bad continuation
		{"\xc0\xaf", 0},               // overlong '/'
		{"ok\xed\xa0\x80", 2},         // UTF-16 surrogate
		{"\xf4\x90\x80\x80", 0},       // beyond U+10FFFF
		{"x\xe2\x80", 1},              // the start of U+2028, cut
		{"\x80", 0},                   // lone continuation byte
		{"valid 😀 then \xf0\x9f", 16}, // cut emoji
	}
	for _, tt := range tests {
		dst := []byte("kept")
		got, err := AppendJSONString(dst, tt.s)
		if !errors.Is(err, ErrInvalidUTF8) {
			t.Errorf("AppendJSONString(%q) error = %v, want ErrInvalidUTF8", tt.s, err)
			continue
		}
		if want := fmt.Sprintf("at offset %d", tt.offset); !strings.Contains(err.Error(), want) {
			t.Errorf("AppendJSONString(%q) error %q, want %q", tt.s, err, want)
		}
		if string(got) != "kept" {
			t.Errorf("AppendJSONString(%q) changed dst to %q", tt.s, got)
		}
	}
}

func TestRecordEncoderDecodesToSameValuesInHeaderOrder(t *testing.T) {
	fields := []string{"z", "a", "m", `quote"key`, "<&>", "é", "Tags", "Tags_2", "column_9", "back\\slash"}
	enc, err := NewRecordEncoder(fields)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(hardStrings); i++ {
		values := make([]string, len(fields))
		for j := range values {
			values[j] = hardStrings[(i+j)%len(hardStrings)]
		}
		line, err := enc.Append(nil, values)
		if err != nil {
			t.Fatalf("Append(%q) = %v", values, err)
		}
		got, err := decodeOrdered(line)
		if err != nil {
			t.Fatalf("Append(%q) = %s: %v", values, line, err)
		}
		if want := pairsOf(fields, values); !reflect.DeepEqual(got, want) {
			t.Errorf("Append(%q) = %s, decodes to %q", values, line, got)
		}
		if bytes.ContainsAny(line, "\n\r") {
			t.Errorf("Append(%q) = %q holds a line break: it would not be one NDJSON line", values, line)
		}
	}
}

func TestRecordEncoderIsCompactAndByteExact(t *testing.T) {
	enc, err := NewRecordEncoder([]string{"Handle", "Body (HTML)", "a\"b", "Price"})
	if err != nil {
		t.Fatal(err)
	}
	line, err := enc.Append([]byte("prefix:"), []string{"tee", "<p>Size: 9\" x 12\"</p>\n<b>\u2028</b>", "", "19.99"})
	if err != nil {
		t.Fatal(err)
	}
	want := `prefix:{"Handle":"tee","Body (HTML)":"<p>Size: 9\" x 12\"</p>\n<b>\u2028</b>","a\"b":"","Price":"19.99"}`
	if string(line) != want {
		t.Errorf("Append =\n%s\nwant\n%s", line, want)
	}
}

// The csv-spectrum cases: the expected records in json/X.json, encoded,
// decode back to the same members in the same order.
func TestRecordEncoderCSVSpectrum(t *testing.T) {
	if _, err := os.Stat(conformanceDir); errors.Is(err, os.ErrNotExist) {
		t.Skipf("no conformance cases at %s (set ROWPIPE_CONFORMANCE)", conformanceDir)
	}
	files, err := filepath.Glob(filepath.Join(conformanceDir, "json", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no csv-spectrum cases under %s (%v)", conformanceDir, err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var records []json.RawMessage
			if err := json.Unmarshal(raw, &records); err != nil {
				// json/location_coordinates.json is an object that disagrees
				// with its CSV (see SOURCE.md): the CSV is the oracle.
				records = csvRecords(t, filepath.Join(conformanceDir, "csvs", name+".csv"))
			}
			var fields []string
			var enc *RecordEncoder
			for i, rec := range records {
				want, err := decodeOrdered(rec)
				if err != nil {
					t.Fatal(err)
				}
				values := make([]string, len(want))
				if i == 0 {
					for _, p := range want {
						fields = append(fields, p.Key)
					}
					if enc, err = NewRecordEncoder(fields); err != nil {
						t.Fatal(err)
					}
				}
				for j, p := range want {
					values[j] = p.Value
				}
				line, err := enc.Append(nil, values)
				if err != nil {
					t.Fatalf("record %d: %v", i+1, err)
				}
				got, err := decodeOrdered(line)
				if err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("record %d: %s decodes to %q, %v; want %q", i+1, line, got, err, want)
				}
			}
		})
	}
}

// csvRecords reads a CSV file with encoding/csv (fine for files with no
// CRLF inside quotes) and returns each data row as a JSON object built with
// encoding/json's string encoding.
func csvRecords(t *testing.T, path string) []json.RawMessage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.LazyQuotes = true // a bare '"' inside a field, as Python's csv module takes it
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []json.RawMessage
	for _, row := range rows[1:] {
		b := []byte{'{'}
		for j, v := range row {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, oracleString(t, rows[0][j])...)
			b = append(b, ':')
			b = append(b, oracleString(t, v)...)
		}
		out = append(out, append(b, '}'))
	}
	return out
}

func TestRecordEncoderReportsInvalidUTF8AsFieldError(t *testing.T) {
	enc, err := NewRecordEncoder([]string{"Handle", "Title", "Body"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		values []string
		column int
		field  string
	}{
		{[]string{"\xff", "ok", "ok"}, 1, "Handle"},
		{[]string{"ok", "Caf\xe9", "ok"}, 2, "Title"}, // Latin-1 é
		{[]string{"ok", "ok", "end\xc3"}, 3, "Body"},
		{[]string{"ok", "\xed\xa0\x80", "\xff"}, 2, "Title"}, // the first bad one
	}
	for _, tt := range tests {
		dst := make([]byte, 0, 4096)
		dst = append(dst, `{"earlier":"record"}`+"\n"...)
		before := string(dst)
		got, err := enc.Append(dst, tt.values)
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("Append(%q) error = %v (%T), want *FieldError", tt.values, err, err)
			continue
		}
		if !errors.Is(err, ErrInvalidUTF8) {
			t.Errorf("Append(%q) error %v does not wrap ErrInvalidUTF8", tt.values, err)
		}
		if fe.Column != tt.column || fe.Field != tt.field {
			t.Errorf("Append(%q) = column %d field %q, want %d %q", tt.values, fe.Column, fe.Field, tt.column, tt.field)
		}
		if want := fmt.Sprintf("column %d (%s): invalid UTF-8", tt.column, tt.field); !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Append(%q) error %q, want it to start %q", tt.values, err, want)
		}
		if string(got) != before {
			t.Errorf("Append(%q) left dst = %q, want it unchanged %q", tt.values, got, before)
		}
	}
}

func TestRecordEncoderRefusesWrongFieldCount(t *testing.T) {
	enc, err := NewRecordEncoder([]string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	for _, values := range [][]string{nil, {"1"}, {"1", "2", "3"}} {
		got, err := enc.Append([]byte("x"), values)
		if err == nil || string(got) != "x" {
			t.Errorf("Append(%q) = %q, %v; want an error and dst unchanged", values, got, err)
		} else if !strings.Contains(err.Error(), fmt.Sprintf("has %d fields, want 2", len(values))) {
			t.Errorf("Append(%q) error %q", values, err)
		}
	}
}

func TestNewRecordEncoder(t *testing.T) {
	if _, err := NewRecordEncoder(nil); err == nil {
		t.Error("NewRecordEncoder(nil) accepted a record with no field")
	}
	_, err := NewRecordEncoder([]string{"ok", "bad\xff"})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Column != 2 || !errors.Is(err, ErrInvalidUTF8) {
		t.Errorf("NewRecordEncoder with an invalid UTF-8 name = %v, want a *FieldError for column 2", err)
	}
	fields := []string{"a", "b"}
	enc, err := NewRecordEncoder(fields)
	if err != nil {
		t.Fatal(err)
	}
	fields[0] = "changed"
	if got := enc.Fields(); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("Fields() = %q: the encoder kept the caller's slice", got)
	}
}

func TestUniqueFields(t *testing.T) {
	tests := []struct {
		header  []string
		fields  []string
		renamed []Rename
	}{
		{[]string{"a", "b", "c"}, []string{"a", "b", "c"}, nil},
		{[]string{"Tags", "Tags"}, []string{"Tags", "Tags_2"}, []Rename{{2, "Tags", "Tags_2"}}},
		{[]string{"Tags", "Tags", "Tags"}, []string{"Tags", "Tags_2", "Tags_3"},
			[]Rename{{2, "Tags", "Tags_2"}, {3, "Tags", "Tags_3"}}},
		{[]string{"a", "", "c"}, []string{"a", "column_2", "c"}, []Rename{{2, "", "column_2"}}},
		{[]string{"", ""}, []string{"column_1", "column_2"}, []Rename{{1, "", "column_1"}, {2, "", "column_2"}}},
		// A made-up name never takes one the header already uses.
		{[]string{"a", "a", "a_2"}, []string{"a", "a_2", "a_2_2"},
			[]Rename{{2, "a", "a_2"}, {3, "a_2", "a_2_2"}}},
		{[]string{"a_2", "a", "a"}, []string{"a_2", "a", "a_3"}, []Rename{{3, "a", "a_3"}}},
		{[]string{"column_2", ""}, []string{"column_2", "column_2_2"}, []Rename{{2, "", "column_2_2"}}},
		{[]string{"", "column_1"}, []string{"column_1", "column_1_2"}, []Rename{{1, "", "column_1"}, {2, "column_1", "column_1_2"}}},
		// Names differ by case: JSON keys are case-sensitive, so they stay.
		{[]string{"tags", "Tags"}, []string{"tags", "Tags"}, nil},
		{nil, []string{}, nil},
	}
	for _, tt := range tests {
		fields, renamed := UniqueFields(tt.header)
		if !reflect.DeepEqual(fields, tt.fields) || !reflect.DeepEqual(renamed, tt.renamed) {
			t.Errorf("UniqueFields(%q) = %q, %v; want %q, %v", tt.header, fields, renamed, tt.fields, tt.renamed)
		}
		checkUniqueFields(t, tt.header, fields, renamed)
	}
}

// checkUniqueFields checks the promises of UniqueFields for any header.
func checkUniqueFields(t testing.TB, header, fields []string, renamed []Rename) {
	t.Helper()
	if len(fields) != len(header) {
		t.Fatalf("UniqueFields(%q) gave %d fields", header, len(fields))
	}
	seen := map[string]bool{}
	r := 0
	for i, f := range fields {
		if f == "" || seen[f] {
			t.Fatalf("UniqueFields(%q) = %q: field %d is empty or repeated", header, fields, i+1)
		}
		seen[f] = true
		if f != header[i] {
			if r >= len(renamed) || renamed[r] != (Rename{Column: i + 1, From: header[i], To: f}) {
				t.Fatalf("UniqueFields(%q) = %q, %v: the change of column %d is not reported in order", header, fields, renamed, i+1)
			}
			r++
		}
	}
	if r != len(renamed) {
		t.Fatalf("UniqueFields(%q) reported %v, more than it changed", header, renamed)
	}
}

func FuzzRecordEncoding(f *testing.F) {
	f.Add("a,b,c", "", "", "")
	f.Add("Tags,Tags,,a_2,a", `say "hi"`, "back\\slash", "crlf\r\nend")
	f.Add("Handle,Body (HTML)", "<p>9\" x 12\"</p>\n<ul><li>Großes</li></ul>", "\u2028\u2029", "😀")
	f.Add("x", "\x00\x01\x1f\x7f\b\f", "\xff", "ok")
	f.Add("k", "a\xe2\x80", "\xe2\x80\xa8", "\xed\xa0\x80")
	f.Add("\xff,b", "v", "w", "x")
	f.Add("\",\\,<&>", "&amp;", "\ufeff", "\U0010ffff")
	f.Add(",,,", "", "", "")
	f.Fuzz(func(t *testing.T, header, a, b, c string) {
		fields, renamed := UniqueFields(strings.Split(header, ","))
		checkUniqueFields(t, strings.Split(header, ","), fields, renamed)
		enc, err := NewRecordEncoder(fields)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidUTF8) || utf8.ValidString(fields[fe.Column-1]) {
				t.Fatalf("NewRecordEncoder(%q) = %v", fields, err)
			}
			return
		}
		pool := []string{a, b, c, a + b, c + a + b}
		values := make([]string, len(fields))
		firstBad := 0
		for i := range values {
			values[i] = pool[i%len(pool)]
			if firstBad == 0 && !utf8.ValidString(values[i]) {
				firstBad = i + 1
			}
		}
		dst := append(make([]byte, 0, 8), "old"...)
		line, err := enc.Append(dst, values)
		if firstBad > 0 {
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidUTF8) || fe.Column != firstBad || fe.Field != fields[firstBad-1] {
				t.Fatalf("Append(%q) = %v, want a *FieldError for column %d", values, err, firstBad)
			}
			if string(line) != "old" {
				t.Fatalf("Append(%q) changed dst to %q", values, line)
			}
			return
		}
		if err != nil {
			t.Fatalf("Append(%q) = %v", values, err)
		}
		if !bytes.HasPrefix(line, []byte("old")) {
			t.Fatalf("Append(%q) lost dst: %q", values, line)
		}
		line = line[3:]
		got, err := decodeOrdered(line)
		if err != nil {
			t.Fatalf("Append(%q) = %s: %v", values, line, err)
		}
		if want := pairsOf(fields, values); !reflect.DeepEqual(got, want) {
			t.Fatalf("Append(%q) = %s decodes to %q, want %q", values, line, got, want)
		}
		if bytes.ContainsAny(line, "\n\r") {
			t.Fatalf("Append(%q) = %q holds a line break", values, line)
		}
		for _, v := range pool {
			if s, err := AppendJSONString(nil, v); err == nil && string(s) != oracleString(t, v) {
				t.Fatalf("AppendJSONString(%q) = %s, encoding/json writes %s", v, s, oracleString(t, v))
			}
		}
	})
}
