package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"testing"
)

var decodeFields = []string{"Handle", "Title (EN)", "Body \"HTML\""}

// decodeAll returns the values Decode gives for line.
func decodeAll(t testing.TB, d *RecordDecoder, line []byte) ([]string, error) {
	t.Helper()
	var got []string
	_, err := d.Decode(line, nil, func(i int, v []byte) error {
		if i != len(got) {
			t.Fatalf("field %d called as %d", len(got), i)
		}
		got = append(got, string(v))
		return nil
	})
	return got, err
}

// jsonValues decodes line with encoding/json, keeping key order.
func jsonValues(t testing.TB, line []byte) (keys, values []string) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatalf("encoding/json key: %v", err)
		}
		v, err := dec.Token()
		if err != nil {
			t.Fatalf("encoding/json value: %v", err)
		}
		keys, values = append(keys, k.(string)), append(values, v.(string))
	}
	return keys, values
}

func TestRecordDecoderReadsWhatTheEncoderWrites(t *testing.T) {
	enc, err := NewRecordEncoder(decodeFields)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewRecordDecoder(decodeFields)
	if err != nil {
		t.Fatal(err)
	}
	for _, values := range [][]string{
		{"", "", ""},
		{"linen-apron", "Linen Apron", "<p>Soft & \"washed\"</p>\n<ul>\t</ul>"},
		{"é", "日本語 \u2028 \u2029", "\x00\x1f\\ back\\slash"},
		{"🙂", "a\r\nb", "{\"nested\":\"json\"}"},
	} {
		line, err := enc.Append(nil, values)
		if err != nil {
			t.Fatal(err)
		}
		if err := dec.Check(line); err != nil {
			t.Fatalf("Check(%s): %v", line, err)
		}
		got, err := decodeAll(t, dec, line)
		if err != nil || !slices.Equal(got, values) {
			t.Fatalf("Decode(%s) = %q, %v; want %q", line, got, err, values)
		}
	}
}

func TestRecordDecoderUnescapesAsEncodingJSONDoes(t *testing.T) {
	dec, err := NewRecordDecoder([]string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`{"a":"\/\b\f\n\r\t\"\\"}`,
		`{"a":"\u00e9\u00E9 \ud83d\ude00"}`,
		`{"a":"lone \ud83d and \ude00 and \ud83d\u0041"}`,
		`{"a":"plain text longer than eight bytes"}`,
	} {
		got, err := decodeAll(t, dec, []byte(line))
		if err != nil {
			t.Fatalf("Decode(%s): %v", line, err)
		}
		_, want := jsonValues(t, []byte(line))
		if !slices.Equal(got, want) {
			t.Errorf("Decode(%s) = %q, encoding/json says %q", line, got, want)
		}
	}
}

func TestRecordDecoderRefusesOtherShapes(t *testing.T) {
	dec, err := NewRecordDecoder([]string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		``,
		`[]`,
		`{"a":"1"}`,
		`{"b":"1","a":"2"}`,
		`{"a":"1","b":"2","c":"3"}`,
		`{"a":"1", "b":"2"}`,
		`{"a":1,"b":"2"}`,
		`{"a":"1","b":"2"}x`,
		`{"a":"1","b":"2`,
		`{"a":"\x","b":"2"}`,
		`{"a":"\u12","b":"2"}`,
		"{\"a\":\"tab\there\",\"b\":\"2\"}",
		"{\"a\":\"\xff\",\"b\":\"2\"}",
	} {
		if err := dec.Check([]byte(line)); !errors.Is(err, ErrRecordShape) {
			t.Errorf("Check(%q) = %v, want ErrRecordShape", line, err)
		}
	}
}

func TestRecordDecoderStopsAtTheCallersError(t *testing.T) {
	dec, _ := NewRecordDecoder([]string{"a", "b"})
	stop := errors.New("stop")
	calls := 0
	_, err := dec.Decode([]byte(`{"a":"1","b":"2"}`), nil, func(int, []byte) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("Decode = %v after %d calls, want the callback's error after 1", err, calls)
	}
}

func TestRecordDecoderCheckDoesNotAllocate(t *testing.T) {
	dec, _ := NewRecordDecoder(decodeFields)
	line := []byte(`{"Handle":"h","Title (EN)":"t \"q\"","Body \"HTML\"":"<p>x</p>"}`)
	if n := testing.AllocsPerRun(100, func() { _ = dec.Check(line) }); n != 0 {
		t.Fatalf("Check allocates %v times", n)
	}
}

// FuzzRecordDecoder: whatever Check accepts is a JSON object with exactly
// the decoder's keys in order, and Decode's values are encoding/json's; a
// record the encoder writes always decodes back to its values.
func FuzzRecordDecoder(f *testing.F) {
	f.Add([]byte(`{"a":"1","b":"2"}`), "x", "y")
	f.Add([]byte(`{"a":"\ud83d\ude00","b":"\n"}`), "\u2028", "\"")
	f.Add([]byte(`{"a":"\ud83d","b":""}`), "", "\x00")
	dec, _ := NewRecordDecoder([]string{"a", "b"})
	enc, _ := NewRecordEncoder([]string{"a", "b"})
	f.Fuzz(func(t *testing.T, line []byte, v1, v2 string) {
		if got, err := decodeAll(t, dec, line); err == nil {
			if !json.Valid(line) {
				t.Fatalf("accepted invalid JSON %q", line)
			}
			keys, want := jsonValues(t, line)
			if !slices.Equal(keys, []string{"a", "b"}) || !slices.Equal(got, want) {
				t.Fatalf("Decode(%q) = %q, encoding/json says %q %q", line, got, keys, want)
			}
		}
		rec, err := enc.Append(nil, []string{v1, v2})
		if err != nil {
			return // not UTF-8: the encoder refuses it
		}
		if got, err := decodeAll(t, dec, rec); err != nil || !slices.Equal(got, []string{v1, v2}) {
			t.Fatalf("round trip of %q %q: %q, %v", v1, v2, got, err)
		}
	})
}
