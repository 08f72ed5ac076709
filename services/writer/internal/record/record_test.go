package record

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

func TestCheckAcceptsWhatTheEncoderWrites(t *testing.T) {
	fields := []string{"Handle", "Title", "Body (HTML)", "Tags", "Tags_2", `q"uote`}
	enc, err := schema.NewRecordEncoder(fields)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewShape(fields)
	if err != nil {
		t.Fatal(err)
	}
	for _, values := range [][]string{
		{"a", "b", "c", "d", "e", "f"},
		{"", "", "", "", "", ""},
		{"line\nbreak", "tab\there", `"quoted"`, `back\slash`, "ünïcødé ✓", "\u0001ctl"},
	} {
		body, err := enc.Append(nil, values)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Check(body); err != nil {
			t.Errorf("Check(%s) = %v", body, err)
		}
	}
}

func TestCheckRefusesWhatIsNotARecord(t *testing.T) {
	s, err := NewShape([]string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{
		``,
		`garbage`,
		`[]`,
		`{}`,
		`{"a":"1"}`,
		`{"b":"1","a":"2"}`,
		`{"a":"1","b":"2"}x`,
		`{"a":"1","b":"2"}` + "\n",
		`{"a":"1", "b":"2"}`,
		`{"a":1,"b":"2"}`,
		`{"a":"1","b":"2","c":"3"}`,
		"{\"a\":\"li\nne\",\"b\":\"2\"}",
		`{"a":"bad \x escape","b":"2"}`,
		`{"a":"\u12","b":"2"}`,
		`{"a":"unterminated,"b":"2"}`,
		"{\"a\":\"\xff\",\"b\":\"2\"}",
	} {
		err := s.Check([]byte(body))
		if !errors.Is(err, ErrShape) {
			t.Errorf("Check(%q) = %v, want ErrShape", body, err)
		}
		if err == nil && json.Valid([]byte(body)) {
			t.Errorf("accepted %q", body)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	fields := make([]string, 40)
	values := make([]string, 40)
	for i := range fields {
		fields[i] = "Field Name " + string(rune('A'+i%26))
		if i >= 26 {
			fields[i] += "2"
		}
		values[i] = "some value of a product export, twenty-odd bytes"[:10+i%30]
	}
	enc, _ := schema.NewRecordEncoder(fields)
	body, _ := enc.Append(nil, values)
	s, _ := NewShape(fields)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Check(body); err != nil {
			b.Fatal(err)
		}
	}
}
