package api

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/datadirtest"
)

// publishWithRejects writes a current generation of dataset "bad" whose
// header counts n rejects, and its rejects file, as the writer keeps them.
func publishWithRejects(t *testing.T, h *harness, gen uint64, n int) {
	t.Helper()
	g := datadirtest.Gen{Dataset: "bad", Generation: gen, Rows: 4}
	hdr := datadirtest.Write(t, h.dataDir, g)
	hdr.Rejected = uint64(n)
	data, _ := datadirtest.Paths(h.dataDir, "bad", gen)
	datadirtest.RewriteHeader(t, data, hdr)
	var b strings.Builder
	for i := range n {
		line, err := json.Marshal(schema.Reject{Line: 3 + 2*i, Column: 2, Reason: "wrong number of fields",
			Error: fmt.Sprintf("bad.csv:%d: wrong number of fields: 1 fields, want 3", 3+2*i), Raw: "x"})
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(filepath.Join(h.dataDir, "bad", schema.RejectsFile(gen)), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	datadirtest.SetCurrent(t, h.dataDir, "bad", gen)
}

func TestRejectsArePagedLikeRecords(t *testing.T) {
	h := start(t, nil)
	publishWithRejects(t, h, 9, 3)
	var page struct {
		Dataset    string          `json:"dataset"`
		Generation uint64          `json:"generation"`
		Count      uint64          `json:"count"`
		Offset     uint64          `json:"offset"`
		Limit      int             `json:"limit"`
		Returned   int             `json:"returned"`
		NextOffset *uint64         `json:"next_offset"`
		Data       []schema.Reject `json:"data"`
	}
	a := h.get("/datasets/bad/rejects?limit=2")
	if a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	if err := json.Unmarshal(a.body, &page); err != nil {
		t.Fatal(err)
	}
	if page.Dataset != "bad" || page.Generation != 9 || page.Count != 3 || page.Returned != 2 || page.NextOffset == nil || *page.NextOffset != 2 {
		t.Errorf("first page: %s", a.body)
	}
	if page.Data[0].Line != 3 || page.Data[1].Line != 5 || page.Data[1].Column != 2 || !strings.HasPrefix(page.Data[1].Error, "bad.csv:5: ") {
		t.Errorf("rejects: %+v", page.Data)
	}
	if !strings.HasSuffix(string(a.body), "]}") || !strings.Contains(string(a.body), `"next_offset":2,"data":[`) {
		t.Errorf("the envelope is not the records' (data last): %s", a.body)
	}
	a = h.get("/datasets/bad/rejects?limit=2&offset=2&generation=9")
	if err := json.Unmarshal(a.body, &page); err != nil || page.Returned != 1 || page.NextOffset != nil || page.Data[0].Line != 7 {
		t.Errorf("last page: %s", a.body)
	}
	a = h.get("/datasets/bad/rejects?offset=10")
	if err := json.Unmarshal(a.body, &page); err != nil || a.status != 200 || page.Returned != 0 || page.Data == nil {
		t.Errorf("past the end: %d %s", a.status, a.body)
	}
}

func TestRejectsOfAGenerationWithoutAny(t *testing.T) {
	h := start(t, nil)
	proto(h)
	a := h.get("/datasets/proto/rejects")
	if a.status != 200 || !strings.Contains(string(a.body), `"count":0,`) || !strings.HasSuffix(string(a.body), `"data":[]}`) {
		t.Errorf("%d %s", a.status, a.body)
	}
}

func TestRejectsRefusals(t *testing.T) {
	h := start(t, nil)
	publishWithRejects(t, h, 9, 3)
	wantError(t, h.get("/datasets/bad/rejects", "X-API-Key", ""), 401, "api key")
	wantError(t, h.get("/datasets/bad/rejects", "X-API-Key", "wrong"), 401, "not valid")
	wantError(t, h.get("/datasets/nope/rejects"), 404, "not found")
	wantError(t, h.get("/datasets/Bad!/rejects"), 400, "dataset")
	wantError(t, h.get("/datasets/bad/rejects?limit=0"), 400, "limit")
	wantError(t, h.get("/datasets/bad/rejects?format=csv"), 400, "json only")
	wantError(t, h.get("/datasets/bad/rejects?generation=3"), 410, "no longer kept")
	wantError(t, h.get("/datasets/bad/rejects?generation=12"), 404, "no complete generation 12")
	if err := os.Remove(filepath.Join(h.dataDir, "bad", schema.RejectsFile(9))); err != nil {
		t.Fatal(err)
	}
	wantError(t, h.get("/datasets/bad/rejects"), 503, "retry")
}
