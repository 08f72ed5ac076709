package schema

import (
	"errors"
	"slices"
	"testing"
)

func TestRecordDecoderGivesBackEachValueAndProjects(t *testing.T) {
	fields := []string{"Handle", "Body (HTML)", "Variant SKU", "limit", "a/b"}
	values := []string{"tee", "<p>9\" x 12\"</p>\n<p>Café</p>\\", "", "🍵\u2028", "x"}
	enc, err := NewRecordEncoder(fields)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := enc.Append(nil, values)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewRecordDecoder(fields)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := dec.Values(rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range values {
		got, err := AppendJSONStringValue(nil, raw[i])
		if err != nil || string(got) != v {
			t.Fatalf("value %d = %q, %v; want %q", i, got, err, v)
		}
		if !JSONStringEquals(raw[i], v) || JSONStringEquals(raw[i], v+"x") {
			t.Fatalf("JSONStringEquals is wrong for value %d", i)
		}
	}
	if lead, err := dec.Leading(append(rec[:len(rec):len(rec)], "garbage"...), nil, 2); err != nil || len(lead) != 2 || string(lead[0]) != `"tee"` {
		t.Fatalf("Leading = %q, %v", lead, err)
	}
	proj, err := NewRecordEncoder([]string{"limit", "Handle"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := proj.Append(nil, []string{values[3], values[0]})
	if got := proj.AppendRaw(nil, [][]byte{raw[3], raw[0]}); string(got) != string(want) {
		t.Fatalf("projection %s, want %s", got, want)
	}
}

func TestRecordDecoderReadsEscapesAnotherEncoderMayWrite(t *testing.T) {
	dec, _ := NewRecordDecoder([]string{"a"})
	raw, err := dec.Values([]byte(`{"a":"\u0041\/\ud83c\udf75"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !JSONStringEquals(raw[0], "A/🍵") {
		t.Fatalf("%s does not equal A/🍵", raw[0])
	}
}

func TestRecordDecoderRefusesOtherShapes(t *testing.T) {
	dec, _ := NewRecordDecoder([]string{"a", "b"})
	for _, bad := range []string{``, `{}`, `{"a":"1"}`, `{"b":"1","a":"2"}`, `{"a":"1","b":"2"} `, `{"a":1,"b":"2"}`, `{"a":"1","b":"2`, "{\"a\":\"\x01\",\"b\":\"\"}", `{"a":"\x","b":""}`} {
		if _, err := dec.Values([]byte(bad), nil); !errors.Is(err, ErrRecordShape) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if raw, err := dec.Values([]byte(`{"a":"","b":"\""}`), make([][]byte, 0, 2)); err != nil || !slices.Equal([]string{string(raw[0]), string(raw[1])}, []string{`""`, `"\""`}) {
		t.Fatalf("= %q, %v", raw, err)
	}
}
