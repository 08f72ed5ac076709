package schema

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// The examples in docs/ are checked against the code, so the documents
// and the code change together.

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("docs/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// codeBlock returns the body of the first fenced block after the line
// holding marker.
func codeBlock(t *testing.T, doc, marker string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, marker)
	if !ok {
		t.Fatalf("no %q in the document", marker)
	}
	_, rest, ok = strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("no code block after %q", marker)
	}
	_, rest, _ = strings.Cut(rest, "\n") // the fence's info string
	body, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("unterminated code block after %q", marker)
	}
	return body
}

func docExampleHeader() Header {
	return Header{
		Dataset: "products", Generation: 1, State: StateComplete, Mode: ModeReplace, Sync: "9f86d081884c7d65", Count: 2,
		Fields:    []string{"Handle", "Title"},
		Source:    Source{Name: "products.csv", Size: 61, SHA256: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"},
		CreatedAt: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), UpdatedAt: time.Date(2024, 5, 1, 12, 0, 0, 250000000, time.UTC),
		LastSeq: 4, Size: HeaderBlock,
	}
}

func TestDocsHeaderExample(t *testing.T) {
	example := strings.TrimSpace(codeBlock(t, readDoc(t, "header.md"), "## Example"))
	line := []byte(example + strings.Repeat(" ", HeaderBlock-len(example)-1) + "\n")
	h, err := DecodeHeader(line)
	if err != nil {
		t.Fatalf("the example in header.md does not decode: %v", err)
	}
	want := docExampleHeader()
	if HeaderSizeFor(want) != HeaderBlock {
		t.Errorf("HeaderSizeFor(example) = %d", HeaderSizeFor(want))
	}
	b, err := EncodeHeader(want)
	if err != nil || !bytes.Equal(b, line) {
		t.Errorf("EncodeHeader(example) =\n%s\nheader.md shows\n%s", bytes.TrimRight(b, " \n"), example)
	}
	if h.Count != 2 || h.LastSeq != 4 {
		t.Errorf("decoded %+v", h)
	}
}

func TestDocsIndexExample(t *testing.T) {
	var raw []byte
	for _, l := range strings.Split(strings.TrimSpace(codeBlock(t, readDoc(t, "index.md"), "## Example")), "\n") {
		hexPart, _, _ := strings.Cut(l, "   ")
		b, err := hex.DecodeString(strings.ReplaceAll(hexPart, " ", ""))
		if err != nil {
			t.Fatalf("index.md example line %q: %v", l, err)
		}
		raw = append(raw, b...)
	}
	enc, err := NewRecordEncoder(docExampleHeader().Fields)
	if err != nil {
		t.Fatal(err)
	}
	r0, _ := enc.Append(nil, []string{"tee", `T-Shirt "Classic"`})
	r1, _ := enc.Append(nil, []string{"mug", "Mug\nCafé"})
	want := AppendIndexHeader(nil, HeaderBlock)
	want = AppendIndexEntry(want, int64(HeaderBlock+len(r0)+1), 2)
	want = AppendIndexEntry(want, int64(HeaderBlock+len(r0)+len(r1)+2), 3)
	if !bytes.Equal(raw, want) {
		t.Errorf("index.md example =\n% x\nthe code writes\n% x", raw, want)
	}
	if len(r0)+1 != 47 || len(r1)+1 != 38 {
		t.Errorf("records of %d and %d bytes, index.md says 47 and 38", len(r0)+1, len(r1)+1)
	}
}

func TestDocsRecordExample(t *testing.T) {
	example := strings.TrimSpace(codeBlock(t, readDoc(t, "messages.md"), "### row"))
	enc, err := NewRecordEncoder([]string{"Handle", "Title", "Body (HTML)"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := enc.Append(nil, []string{"tee", `T-Shirt "Classic"`, "<p>9\" x 12\"</p>\n<p>Café</p>"})
	if err != nil || string(got) != example {
		t.Errorf("Append =\n%s\nmessages.md shows\n%s", got, example)
	}
}

func TestDocsBeginExample(t *testing.T) {
	example := codeBlock(t, readDoc(t, "messages.md"), "### begin")
	var b Begin
	dec := json.NewDecoder(strings.NewReader(example))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("the begin example in messages.md: %v", err)
	}
	fields, renamed := UniqueFields([]string{"Handle", "Tags", "Tags", ""})
	if b.Version != EnvelopeVersion || !slices.Equal(b.Fields, fields) || len(b.Renamed) != len(renamed) {
		t.Errorf("begin example %+v, UniqueFields gives %q %v", b, fields, renamed)
	}
	for i := range renamed {
		if b.Renamed[i] != renamed[i] {
			t.Errorf("renamed[%d] = %+v, UniqueFields gives %+v", i, b.Renamed[i], renamed[i])
		}
	}
}

func TestDocsStateExample(t *testing.T) {
	example := codeBlock(t, readDoc(t, "state.md"), "## Value")
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(example)); err != nil {
		t.Fatal(err)
	}
	h := docExampleHeader()
	s := DatasetState{Dataset: "products", Seq: 4,
		Current: &GenerationState{Generation: 1, Sync: h.Sync, Count: 2, SHA256: h.Source.SHA256, UpdatedAt: h.UpdatedAt, Mode: ModeReplace},
		Last:    &SyncOutcome{Sync: h.Sync, Outcome: OutcomeCommitted, Generation: 1, Rows: 2},
	}
	if got := EncodeState(s); !bytes.Equal(got, compact.Bytes()) {
		t.Errorf("EncodeState =\n%s\nstate.md shows\n%s", got, compact.Bytes())
	}
}
