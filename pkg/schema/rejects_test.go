package schema

import (
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeRejectBoundsRawAndError(t *testing.T) {
	long := strings.Repeat("é", RejectRawMax) // 2 bytes each: the cut falls inside one at first
	line := `{"line":7,"column":3,"reason":"invalid UTF-8","error":"` + strings.Repeat("x", 2*RejectErrorMax) + `","raw":"` + long + `"}`
	r, err := DecodeReject([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if r.Line != 7 || r.Column != 3 || r.Reason != "invalid UTF-8" {
		t.Errorf("decoded %+v", r)
	}
	if len(r.Raw) > RejectRawMax || !utf8.ValidString(r.Raw) || !strings.HasPrefix(long, r.Raw) || len(r.Raw) < RejectRawMax-1 {
		t.Errorf("raw cut to %d bytes (valid UTF-8: %v), want ≤ %d at a rune boundary", len(r.Raw), utf8.ValidString(r.Raw), RejectRawMax)
	}
	if len(r.Error) != RejectErrorMax {
		t.Errorf("error cut to %d bytes, want %d", len(r.Error), RejectErrorMax)
	}
}

func TestDecodeRejectRefusesWhatIsNotAReject(t *testing.T) {
	for _, line := range []string{``, `[]`, `"x"`, `{"line":0,"reason":"r"}`, `{"line":-2}`, `{"line":"7"}`, `{`, `{"line":1,"raw":` + `"` + strings.Repeat("a", RejectLineMax) + `"}`} {
		if _, err := DecodeReject([]byte(line)); !errors.Is(err, ErrRejectLine) {
			t.Errorf("DecodeReject(%.40q) = %v, want ErrRejectLine", line, err)
		}
	}
}

func TestRejectsReaderReadsOnlyTheCountedLines(t *testing.T) {
	file := `{"line":2,"reason":"a","error":"f.csv:2: a"}` + "\n" +
		`{"line":5,"reason":"b","error":"f.csv:5: b"}` + "\n" +
		`{"line":9,"reason":"c","error":"f.csv:9: c"}` + "\n" +
		`{"line":11,"reason":"d"` // torn, and past the count anyway
	r := NewRejectsReader(strings.NewReader(file), 2)
	var lines []int
	for {
		rej, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, rej.Line)
	}
	if len(lines) != 2 || lines[0] != 2 || lines[1] != 5 {
		t.Errorf("read lines %v, want [2 5] (the header counts 2)", lines)
	}
}

func TestRejectsReaderStopsAtATornLastLine(t *testing.T) {
	file := `{"line":2,"reason":"a"}` + "\n" + `{"line":5,"reas`
	r := NewRejectsReader(strings.NewReader(file), 5)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("torn last line: %v, want io.EOF", err)
	}
}

func TestRejectsReaderSkipsAndGoesOnAfterABadLine(t *testing.T) {
	huge := `{"line":4,"raw":"` + strings.Repeat("z", 3*RejectLineMax) + `"}`
	file := `{"line":2,"reason":"a"}` + "\n" + `not json` + "\n" + huge + "\n" + `{"line":6,"reason":"d"}` + "\n"
	r := NewRejectsReader(strings.NewReader(file), 4)
	if n, err := r.Skip(1); n != 1 || err != nil {
		t.Fatalf("Skip(1) = %d, %v", n, err)
	}
	for i, want := range []string{"reject 2", "reject 3"} {
		_, err := r.Next()
		if !errors.Is(err, ErrRejectLine) || !strings.Contains(err.Error(), want) {
			t.Errorf("bad line %d: %v, want ErrRejectLine naming %q", i, err, want)
		}
	}
	rej, err := r.Next()
	if err != nil || rej.Line != 6 {
		t.Errorf("after the bad lines: %+v, %v; want line 6", rej, err)
	}
	if n, err := r.Skip(3); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("Skip past the end = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestDocsRejectsExample(t *testing.T) {
	example := strings.TrimSpace(codeBlock(t, readDoc(t, "rejects.md"), "## Example"))
	r, err := DecodeReject([]byte(example))
	if err != nil {
		t.Fatalf("the example in rejects.md does not decode: %v", err)
	}
	if r.Line != 3 || r.Column != 2 || !strings.HasPrefix(r.Error, "bad.csv:3: ") {
		t.Errorf("decoded %+v", r)
	}
}

func FuzzDecodeReject(f *testing.F) {
	f.Add([]byte(`{"line":3,"column":2,"reason":"invalid UTF-8","error":"bad.csv:3: x","raw":"a,b"}`))
	f.Add([]byte(`{"line":1,"raw":"\ud800"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := DecodeReject(line)
		if err != nil {
			return
		}
		if r.Line < 1 || r.Column < 0 || len(r.Raw) > RejectRawMax || len(r.Error) > RejectErrorMax || !utf8.ValidString(r.Raw) {
			t.Errorf("out of bounds: %+v", r)
		}
	})
}
