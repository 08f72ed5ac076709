package schema

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

func TestDocsLookupExample(t *testing.T) {
	var hexText strings.Builder
	for line := range strings.Lines(codeBlock(t, readDoc(t, "lookup.md"), "## Example")) {
		data, _, _ := strings.Cut(line, "   ")
		hexText.WriteString(strings.ReplaceAll(strings.TrimSpace(data), " ", ""))
	}
	doc, err := hex.DecodeString(hexText.String())
	if err != nil {
		t.Fatal(err)
	}
	if b := buildLookup(t, 4, 0, "Handle", []string{"tee", "mug", "tee"}); !bytes.Equal(doc, b) {
		t.Fatalf("the example in lookup.md is not what the writer writes:\n%s", hex.Dump(b))
	}
	if got := find(t, doc, "tee"); len(got) != 2 || got[0] != 0 || got[1] != 2 {
		t.Fatalf("tee: %v", got)
	}
}
