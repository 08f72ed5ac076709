package rejects

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

var quiet = slog.New(slog.DiscardHandler)

// writeRejects writes lines as gen-<gen>.rejects.ndjson in a new folder.
func writeRejects(t *testing.T, gen uint64, lines ...string) string {
	t.Helper()
	dir := t.TempDir()
	body := strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, schema.RejectsFile(gen)), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func rejectLines(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf(`{"line":%d,"column":2,"reason":"wrong number of fields","error":"bad.csv:%d: wrong number of fields","raw":"a,b"}`, 10+i, 10+i))
	}
	return out
}

func TestReadPagesLikeRecords(t *testing.T) {
	dir := writeRejects(t, 7, rejectLines(5)...)
	g := Generation{Dir: dir, Dataset: "bad", Generation: 7, Rejected: 5}
	p, err := Read(g, 2, 2, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != 5 || p.Returned != 2 || p.NextOffset == nil || *p.NextOffset != 4 || p.Data[0].Line != 12 || p.Data[1].Line != 13 {
		t.Errorf("page at 2 of 5: %+v", p)
	}
	p, err = Read(g, 4, 10, quiet)
	if err != nil || p.Returned != 1 || p.NextOffset != nil || p.Data[0].Line != 14 {
		t.Errorf("last page: %+v, %v", p, err)
	}
	p, err = Read(g, 5, 10, quiet)
	if err != nil || p.Returned != 0 || p.Data == nil || p.NextOffset != nil {
		t.Errorf("past the end: %+v, %v; want an empty, non-nil page", p, err)
	}
}

func TestReadServesOnlyWhatTheHeaderCounts(t *testing.T) {
	dir := writeRejects(t, 7, rejectLines(5)...)
	p, err := Read(Generation{Dir: dir, Dataset: "bad", Generation: 7, Rejected: 3}, 0, 10, quiet)
	if err != nil || p.Returned != 3 || p.Count != 3 || p.NextOffset != nil {
		t.Errorf("header counts 3 of 5 lines: %+v, %v", p, err)
	}
}

func TestReadWithoutRejectsNeedsNoFile(t *testing.T) {
	p, err := Read(Generation{Dir: t.TempDir(), Dataset: "good", Generation: 3}, 0, 10, quiet)
	if err != nil || p.Returned != 0 || p.Count != 0 {
		t.Errorf("%+v, %v", p, err)
	}
}

func TestReadMissingOrShortFile(t *testing.T) {
	if _, err := Read(Generation{Dir: t.TempDir(), Dataset: "bad", Generation: 3, Rejected: 2}, 0, 10, quiet); !errors.Is(err, ErrMissing) {
		t.Errorf("counted rejects without a file: %v, want ErrMissing", err)
	}
	dir := writeRejects(t, 3, rejectLines(2)...)
	if _, err := Read(Generation{Dir: dir, Dataset: "bad", Generation: 3, Rejected: 4}, 0, 10, quiet); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a file shorter than its count: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestReadStandsInForALineThatIsNotAReject(t *testing.T) {
	lines := rejectLines(3)
	lines[1] = `{"line":"eleven"}`
	dir := writeRejects(t, 7, lines...)
	p, err := Read(Generation{Dir: dir, Dataset: "bad", Generation: 7, Rejected: 3}, 0, 10, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if p.Returned != 3 || p.Data[1].Reason != Unreadable || p.Data[2].Line != 12 {
		t.Errorf("%+v", p)
	}
}
