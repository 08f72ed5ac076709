package api

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/datadirtest"
	"github.com/rowpipe/rowpipe/services/api/internal/store"
)

// proto is the acceptance suite's shared fixture: 25 records.
func proto(h *harness) datadirtest.Gen {
	return h.publish(datadirtest.Gen{Dataset: "proto", Generation: 7, Rows: 25})
}

func envelope(ds string, gen, count, offset uint64, limit, returned int, next string, recs [][]byte) string {
	return fmt.Sprintf(`{"dataset":%q,"generation":%d,"count":%d,"offset":%d,"limit":%d,"returned":%d,"next_offset":%s,"data":[%s]}`,
		ds, gen, count, offset, limit, returned, next, bytes.Join(recs, []byte(",")))
}

func TestFetchDataIsTheEnvelopeAroundTheFileBytes(t *testing.T) {
	h := start(t, nil)
	g := proto(h)
	for _, tc := range []struct {
		query                   string
		offset, limit, returned int
		next                    string
	}{
		{"limit=5&offset=3", 3, 5, 5, "8"},
		{"", 0, 10, 10, "10"}, // default limit 10
		{"limit=1000", 0, 1000, 25, "null"},
		{"limit=10&offset=20", 20, 10, 5, "null"},
		{"limit=10&offset=24", 24, 10, 1, "null"},
		{"limit=10&offset=25", 25, 10, 0, "null"},
		{"limit=10&offset=1000", 1000, 10, 0, "null"}, // past the end: 200 with returned 0
	} {
		a := h.get("/fetch-data?dataset=proto&" + tc.query)
		want := envelope("proto", 7, 25, uint64(tc.offset), tc.limit, tc.returned, tc.next, lines(t, g, min(tc.offset, 25), tc.returned))
		if a.status != 200 || string(a.body) != want {
			t.Errorf("%s: %d\n got %s\nwant %s", tc.query, a.status, a.body, want)
			continue
		}
		if a.header.Get("Content-Type") != "application/json" || a.header.Get("Content-Length") != strconv.Itoa(len(want)) {
			t.Errorf("%s: Content-Type %q, Content-Length %q", tc.query, a.header.Get("Content-Type"), a.header.Get("Content-Length"))
		}
		if a.header.Get("X-Total-Count") != "25" {
			t.Errorf("%s: X-Total-Count %q", tc.query, a.header.Get("X-Total-Count"))
		}
		link := a.header.Get("Link")
		if tc.next == "null" && link != "" {
			t.Errorf("%s: Link %q on the last page", tc.query, link)
		}
		if tc.next != "null" {
			wantLink := fmt.Sprintf(`</fetch-data?dataset=proto&limit=%d&offset=%s&generation=7>; rel="next"`, tc.limit, tc.next)
			if link != wantLink {
				t.Errorf("%s: Link %q, want %q", tc.query, link, wantLink)
			}
		}
	}
}

func TestFetchDataWithoutDatasetServesDATASET(t *testing.T) {
	h := start(t, func(c *Config) { c.Dataset = "orders" })
	g := h.publish(datadirtest.Gen{Dataset: "orders", Generation: 3, Rows: 2})
	a := h.get("/fetch-data")
	if want := envelope("orders", 3, 2, 0, 10, 2, "null", lines(t, g, 0, 2)); string(a.body) != want {
		t.Fatalf("\n got %s\nwant %s", a.body, want)
	}
	h2 := start(t, nil)
	h2.publish(datadirtest.Gen{Dataset: "products", Generation: 1, Rows: 1})
	if o := h2.get("/fetch-data").json(t); o["dataset"] != "products" {
		t.Fatalf("default DATASET: %v", o["dataset"])
	}
}

func TestRecordsByPathAreTheSameAsFetchData(t *testing.T) {
	h := start(t, nil)
	proto(h)
	a := h.get("/datasets/proto/records?limit=7&offset=3")
	b := h.get("/fetch-data?dataset=proto&limit=7&offset=3")
	if a.status != 200 || !bytes.Equal(a.body, b.body) {
		t.Fatalf("by path %d %s\nby query %s", a.status, a.body, b.body)
	}
	if link := a.header.Get("Link"); link != `</datasets/proto/records?limit=7&offset=10&generation=7>; rel="next"` {
		t.Fatalf("Link %q", link)
	}
}

func TestEveryBadParameterIs400NamingIt(t *testing.T) {
	h := start(t, nil)
	proto(h)
	for _, tc := range []struct{ query, param string }{
		{"limit=0", "limit"}, {"limit=-1", "limit"}, {"limit=abc", "limit"}, {"limit=1001", "limit"},
		{"limit=", "limit"}, {"limit=2.5", "limit"},
		{"offset=-5", "offset"}, {"offset=abc", "offset"}, {"offset=99999999999999999999999", "offset"},
		{"generation=0", "generation"}, {"generation=abc", "generation"}, {"generation=-3", "generation"},
		{"format=xml", "format"}, {"metadata_only=perhaps", "metadata_only"},
	} {
		for _, path := range []string{"/fetch-data?dataset=proto&", "/datasets/proto/records?"} {
			a := h.get(path + tc.query)
			t.Run(path+tc.query, func(t *testing.T) { wantError(t, a, 400, tc.param) })
		}
	}
	if a := h.get("/fetch-data?dataset=proto&limit=1000"); a.status != 200 {
		t.Errorf("limit=MAX_LIMIT: %d", a.status)
	}
}

func TestMaxLimitIsConfigurable(t *testing.T) {
	h := start(t, func(c *Config) { c.MaxLimit = 20 })
	proto(h)
	wantError(t, h.get("/fetch-data?dataset=proto&limit=21"), 400, "between 1 and 20")
	if o := h.get("/fetch-data?dataset=proto&limit=20").json(t); o["returned"] != 20.0 {
		t.Fatalf("limit=20: %v", o["returned"])
	}
}

func TestDatasetNamesAreCheckedByQueryAndPath(t *testing.T) {
	h := start(t, nil)
	proto(h)
	bad := []string{"..%2Fetc", "UPPER", "a%20b", "-lead", "a.b", strings.Repeat("x", 65), "%C3%A9t%C3%A9", "..", "%2E%2E"}
	for _, b := range bad {
		wantError(t, h.get("/fetch-data?dataset="+b), 400, "dataset")
	}
	for _, b := range bad[:7] {
		for _, p := range []string{"/datasets/" + b, "/datasets/" + b + "/records"} {
			a := h.get(p)
			if a.status != 400 && a.status != 404 {
				t.Errorf("GET %s: %d %s", p, a.status, a.body)
			} else {
				wantError(t, a, a.status, "")
			}
		}
	}
}

func TestUnknownDatasetIs404AndOneWithoutGenerationIs503(t *testing.T) {
	h := start(t, nil)
	for _, p := range []string{"/fetch-data?dataset=no-such", "/datasets/no-such", "/datasets/no-such/records", "/fetch-data?dataset=no-such&metadata_only=true"} {
		wantError(t, h.get(p), 404, "no-such")
	}
	// The NATS store of stack lives in DATA_DIR/nats: not a dataset.
	os.MkdirAll(filepath.Join(h.dataDir, "nats", "jetstream"), 0o755)
	wantError(t, h.get("/fetch-data?dataset=nats"), 404, "nats")
	// A first sync still building: files, no CURRENT.
	datadirtest.Write(t, h.dataDir, datadirtest.Gen{Dataset: "first", Generation: 4, Rows: 3, State: schema.StateBuilding})
	a := h.get("/fetch-data?dataset=first")
	wantError(t, a, 503, "no complete generation")
	if a.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

func TestNDJSONIsTheRawLines(t *testing.T) {
	h := start(t, nil)
	g := proto(h)
	want := append(bytes.Join(lines(t, g, 4, 6), []byte("\n")), '\n')
	for _, headers := range [][]string{nil, {"Accept", "application/x-ndjson"}} {
		q := "/fetch-data?dataset=proto&limit=6&offset=4"
		if headers == nil {
			q += "&format=ndjson"
		}
		a := h.get(q, headers...)
		if a.status != 200 || !bytes.Equal(a.body, want) || a.header.Get("Content-Type") != "application/x-ndjson" {
			t.Errorf("%s %v: %d %q\n got %q\nwant %q", q, headers, a.status, a.header.Get("Content-Type"), a.body, want)
		}
	}
	if a := h.get("/fetch-data?dataset=proto&offset=99&format=ndjson"); a.status != 200 || len(a.body) != 0 {
		t.Errorf("NDJSON past the end: %d %q", a.status, a.body)
	}
}

func trickyRow(i int, vals []string) {
	vals[0] = strconv.Itoa(i)
	vals[1] = []string{"plain", `a "quoted", comma`, "multi\nline\r\ntext", " leading", "ünï 😀 \u2028", `back\slash`}[i%6]
	vals[2] = strings.Repeat("x", i%3)
}

func TestCSVHasTheFieldsThenTheRecords(t *testing.T) {
	h := start(t, nil)
	g := h.publish(datadirtest.Gen{Dataset: "sheet", Generation: 2, Rows: 30, Fields: []string{"id", "Title, long", "Tags"}, Row: trickyRow})
	a := h.get("/fetch-data?dataset=sheet&format=csv&limit=12&offset=5")
	if a.status != 200 || a.header.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Fatalf("%d %q %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	rows, err := csv.NewReader(bytes.NewReader(a.body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 13 || strings.Join(rows[0], "|") != "id|Title, long|Tags" {
		t.Fatalf("%d rows, header %q", len(rows), rows[0])
	}
	for i, row := range rows[1:] {
		var rec map[string]string
		json.Unmarshal(g.Line(t, 5+i), &rec)
		for j, f := range g.Fields {
			if want := strings.ReplaceAll(rec[f], "\r\n", "\n"); row[j] != want {
				t.Errorf("row %d %s: %q, want %q", i, f, row[j], want)
			}
		}
	}
	if a := h.get("/fetch-data?dataset=sheet&limit=1", "Accept", "text/csv"); !strings.HasPrefix(string(a.body), "id,\"Title, long\",Tags\r\n0,") {
		t.Errorf("Accept: text/csv: %q", a.body)
	}
}

func TestGzipWhenTheClientAsks(t *testing.T) {
	h := start(t, nil)
	proto(h)
	for _, format := range []string{"json", "ndjson", "csv"} {
		q := "/fetch-data?dataset=proto&limit=20&format=" + format
		plain := h.get(q)
		zipped := h.get(q, "Accept-Encoding", "gzip, deflate")
		if zipped.header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("%s: Content-Encoding %q", format, zipped.header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(zipped.body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(got, plain.body) {
			t.Fatalf("%s: gunzipped body differs (%v)", format, err)
		}
		if zipped.header.Get("ETag") == plain.header.Get("ETag") || !strings.Contains(zipped.header.Get("Vary"), "Accept-Encoding") {
			t.Errorf("%s: ETag %q for both encodings, Vary %q", format, plain.header.Get("ETag"), zipped.header.Get("Vary"))
		}
		for _, tag := range []string{plain.header.Get("ETag"), zipped.header.Get("ETag")} {
			if a := h.get(q, "Accept-Encoding", "gzip", "If-None-Match", tag); a.status != 304 {
				t.Errorf("%s: If-None-Match %s on the gzip answer: %d", format, tag, a.status)
			}
		}
	}
	if a := h.get("/fetch-data?dataset=proto", "Accept-Encoding", "gzip;q=0, identity"); a.header.Get("Content-Encoding") != "" {
		t.Error("gzip;q=0 was compressed")
	}
}

func TestETagAndIfNoneMatch(t *testing.T) {
	h := start(t, nil)
	proto(h)
	q := "/fetch-data?dataset=proto&limit=5&offset=0"
	a := h.get(q)
	tag := a.header.Get("ETag")
	if a.status != 200 || !strings.HasPrefix(tag, `"`) {
		t.Fatalf("%d ETag %q", a.status, tag)
	}
	for _, inm := range []string{tag, "W/" + tag, `"other", ` + tag, "*"} {
		if b := h.get(q, "If-None-Match", inm); b.status != 304 || len(b.body) != 0 || b.header.Get("ETag") != tag {
			t.Errorf("If-None-Match %s: %d %q ETag %q", inm, b.status, b.body, b.header.Get("ETag"))
		}
	}
	if b := h.get(q, "If-None-Match", `"not-it"`); b.status != 200 {
		t.Errorf("stale If-None-Match: %d", b.status)
	}
	seen := map[string]string{tag: q}
	for _, other := range []string{
		strings.Replace(q, "offset=0", "offset=5", 1), strings.Replace(q, "limit=5", "limit=6", 1),
		q + "&format=ndjson", q + "&format=csv", "/fetch-data?dataset=proto&metadata_only=true",
	} {
		e := h.get(other).header.Get("ETag")
		if e == "" || seen[e] != "" {
			t.Errorf("%s: ETag %q missing or the same as %s's", other, e, seen[e])
		}
		seen[e] = other
	}
	// A new generation changes it.
	h.publish(datadirtest.Gen{Dataset: "proto", Generation: 8, Rows: 25})
	if e := h.get(q).header.Get("ETag"); e == tag {
		t.Error("the ETag did not change with the generation")
	}
	if b := h.get(q, "If-None-Match", tag); b.status != 200 {
		t.Errorf("old ETag after a new generation: %d", b.status)
	}
}

func TestMetadataFromTheHeader(t *testing.T) {
	h := start(t, nil)
	g := proto(h)
	hdr := g.Header()
	for _, p := range []string{"/fetch-data?dataset=proto&metadata_only=true", "/datasets/proto"} {
		a := h.get(p)
		if a.status != 200 {
			t.Fatalf("%s: %d %s", p, a.status, a.body)
		}
		dec := json.NewDecoder(bytes.NewReader(a.body))
		dec.Token()
		var keys []string
		for dec.More() {
			k, _ := dec.Token()
			keys = append(keys, k.(string))
			var skip json.RawMessage
			dec.Decode(&skip)
		}
		want := "dataset generation state mode sync count rejected fields source created_at updated_at indexes"
		if strings.Join(keys, " ") != want {
			t.Errorf("%s: keys %v", p, keys)
		}
		var m metadataBody
		json.Unmarshal(a.body, &m)
		if m.Dataset != "proto" || m.Generation != 7 || m.Count != 25 || m.State != "complete" ||
			strings.Join(m.Fields, ",") != "id,name,ver" || m.Source != hdr.Source || !m.UpdatedAt.Equal(hdr.UpdatedAt) {
			t.Errorf("%s: %+v", p, m)
		}
		if b := h.get(p, "If-None-Match", a.header.Get("ETag")); b.status != 304 {
			t.Errorf("%s: If-None-Match gave %d", p, b.status)
		}
	}
}

func TestDatasetsListsEveryServableDataset(t *testing.T) {
	h := start(t, nil)
	a := h.get("/datasets")
	if a.status != 200 || string(a.body) != `{"datasets":[],"offset":0,"limit":100,"next_offset":null}` {
		t.Fatalf("no datasets yet: %d %s", a.status, a.body)
	}
	h.publish(datadirtest.Gen{Dataset: "b-orders", Generation: 3, Rows: 4})
	h.publish(datadirtest.Gen{Dataset: "a-products", Generation: 9, Rows: 2})
	os.MkdirAll(filepath.Join(h.dataDir, "nats", "jetstream"), 0o755)                                             // not a dataset
	os.MkdirAll(filepath.Join(h.dataDir, ".hidden"), 0o755)                                                       // ignored
	os.MkdirAll(filepath.Join(h.dataDir, "Not-Valid"), 0o755)                                                     // ignored
	datadirtest.Write(t, h.dataDir, datadirtest.Gen{Dataset: "c-new", Generation: 1, Rows: 1, State: "building"}) // not yet
	os.WriteFile(filepath.Join(h.dataDir, ".writer-checkpoint"), []byte("{}"), 0o644)
	var v struct {
		Datasets []metadataBody `json:"datasets"`
	}
	if err := json.Unmarshal(h.get("/datasets").body, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Datasets) != 2 || v.Datasets[0].Dataset != "a-products" || v.Datasets[0].Count != 2 || v.Datasets[1].Dataset != "b-orders" || v.Datasets[1].Count != 4 {
		t.Fatalf("%+v", v.Datasets)
	}
}

func TestDatasetsIsPaged(t *testing.T) {
	h := start(t, nil)
	for _, name := range []string{"d1", "d2", "d3", "d4", "d5"} {
		h.publish(datadirtest.Gen{Dataset: name, Generation: 1, Rows: 1})
	}
	var names []string
	for path := "/datasets?limit=2"; path != ""; {
		a := h.get(path)
		var v struct {
			Datasets   []metadataBody `json:"datasets"`
			NextOffset *int           `json:"next_offset"`
		}
		if err := json.Unmarshal(a.body, &v); err != nil || a.status != 200 {
			t.Fatalf("%s: %d %s", path, a.status, a.body)
		}
		for _, d := range v.Datasets {
			names = append(names, d.Dataset)
		}
		path = ""
		if v.NextOffset != nil {
			path = fmt.Sprintf("/datasets?limit=2&offset=%d", *v.NextOffset)
			if link := a.header.Get("Link"); !strings.Contains(link, path) {
				t.Errorf("Link %q, want %s", link, path)
			}
		}
	}
	if strings.Join(names, ",") != "d1,d2,d3,d4,d5" {
		t.Fatalf("paged through %v", names)
	}
	wantError(t, h.get("/datasets?limit=0"), 400, "limit")
	if open, _ := h.srv.store.Stats(); open > 5 {
		t.Errorf("%d generations open", open)
	}
}

func TestPinnedGenerationUntilPrunedThen410(t *testing.T) {
	h := start(t, nil)
	a := h.publish(datadirtest.Gen{Dataset: "gens", Generation: 5, Rows: 5, Tag: "1"})
	h.publish(datadirtest.Gen{Dataset: "gens", Generation: 9, Rows: 6, Tag: "2"})
	if o := h.get("/fetch-data?dataset=gens").json(t); o["generation"] != 9.0 || o["count"] != 6.0 {
		t.Fatalf("current: %v", o)
	}
	pinned := h.get("/fetch-data?dataset=gens&generation=5&limit=2&offset=2")
	if want := envelope("gens", 5, 5, 2, 2, 2, "4", lines(t, a, 2, 2)); string(pinned.body) != want {
		t.Fatalf("pinned:\n got %s\nwant %s", pinned.body, want)
	}
	if m := h.get("/datasets/gens?generation=5").json(t); m["generation"] != 5.0 {
		t.Fatalf("metadata pinned: %v", m)
	}
	datadirtest.Remove(t, h.dataDir, "gens", 5)
	time.Sleep(store.Fresh)
	wantError(t, h.get("/fetch-data?dataset=gens&generation=5"), 410, "generation")
	wantError(t, h.get("/datasets/gens/records?generation=5"), 410, "generation")
	wantError(t, h.get("/fetch-data?dataset=gens&generation=12"), 404, "generation")
	wantError(t, h.get("/fetch-data?dataset=gens&generation=x"), 400, "generation")
}

func TestNewGenerationWithoutRestartAndAppendsAsTheyLand(t *testing.T) {
	h := start(t, nil)
	h.publish(datadirtest.Gen{Dataset: "live", Generation: 1, Rows: 3})
	if o := h.get("/fetch-data?dataset=live").json(t); o["count"] != 3.0 {
		t.Fatal(o)
	}
	g := datadirtest.Gen{Dataset: "live", Generation: 4, Rows: 2, Mode: schema.ModeAppend, Tag: "B"}
	hdr := datadirtest.Publish(t, h.dataDir, g)
	time.Sleep(store.Fresh)
	first := h.get("/fetch-data?dataset=live")
	if o := first.json(t); o["generation"] != 4.0 || o["count"] != 2.0 {
		t.Fatal(o)
	}
	datadirtest.Append(t, h.dataDir, g, hdr, 5)
	time.Sleep(store.Fresh)
	a := h.get("/fetch-data?dataset=live")
	if want := envelope("live", 4, 7, 0, 10, 7, "null", lines(t, g, 0, 7)); string(a.body) != want {
		t.Fatalf("after appending:\n got %s\nwant %s", a.body, want)
	}
	if a.header.Get("ETag") == first.header.Get("ETag") {
		t.Error("ETag unchanged by an append")
	}
}

func TestAuth(t *testing.T) {
	h := start(t, nil)
	proto(h)
	for _, p := range []string{"/fetch-data?dataset=proto", "/datasets", "/datasets/proto", "/datasets/proto/records"} {
		wantError(t, h.get(p, "X-API-Key", ""), 401, "api key")
		wantError(t, h.get(p, "X-API-Key", "wrong-"+testKey), 401, "api key")
		wantError(t, h.get(p, "X-API-Key", "", "Authorization", "Bearer nope"), 401, "")
		wantError(t, h.get(p, "X-API-Key", "", "Authorization", "Basic "+testKey), 401, "bearer")
		for _, authz := range []string{"Bearer " + testKey, "bearer " + testKey} {
			if a := h.get(p, "X-API-Key", "", "Authorization", authz); a.status != 200 {
				t.Errorf("%s with %q: %d %s", p, authz[:7], a.status, a.body)
			}
		}
	}
	if a := h.get("/fetch-data?dataset=proto", "X-API-Key", ""); a.header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} {
		if a := h.get(p, "X-API-Key", ""); a.status != 200 {
			t.Errorf("%s without a key: %d", p, a.status)
		}
	}
}

func TestKeysFileIsReReadWithoutRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(file, []byte("first-key\n"), 0o600)
	h := start(t, func(c *Config) { c.Keys = nil; c.KeysFile = file; c.KeysReload = 10 * 1e6 })
	proto(h)
	if a := h.get("/datasets", "X-API-Key", "first-key"); a.status != 200 {
		t.Fatalf("key from the file: %d", a.status)
	}
	os.WriteFile(file+".new", []byte("# rotated\nsecond-key\n"), 0o600)
	os.Rename(file+".new", file)
	waitFor(t, "taking up the rotated key", func() bool {
		return h.get("/datasets", "X-API-Key", "second-key").status == 200
	})
	wantError(t, h.get("/datasets", "X-API-Key", "first-key"), 401, "")
	if strings.Contains(h.logs.String(), "second-key") || strings.Contains(h.logs.String(), "first-key") {
		t.Error("a key appears in the log")
	}
}

func TestRateLimitPerKey(t *testing.T) {
	h := start(t, func(c *Config) { c.Keys = Keys{"k-one", "k-two"}; c.RateLimit = 0.001; c.RateBurst = 2 })
	proto(h)
	for range 2 {
		if a := h.get("/datasets", "X-API-Key", "k-one"); a.status != 200 {
			t.Fatalf("within the burst: %d", a.status)
		}
	}
	a := h.get("/datasets", "X-API-Key", "k-one")
	wantError(t, a, 429, "rate limit")
	if ra, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q", a.header.Get("Retry-After"))
	}
	if a := h.get("/datasets", "X-API-Key", "k-two"); a.status != 200 {
		t.Errorf("the other key: %d", a.status)
	}
	if a := h.get("/healthz", "X-API-Key", ""); a.status != 200 {
		t.Errorf("healthz under a rate limit: %d", a.status)
	}
}

func TestRequestsTheAPIDoesNotServe(t *testing.T) {
	h := start(t, nil)
	proto(h)
	wantError(t, h.get("/no-such-endpoint"), 404, "openapi")
	wantError(t, h.do(http.MethodPost, "/fetch-data", strings.NewReader("x=1")), 413, "body")
	wantError(t, h.do(http.MethodGet, "/fetch-data?dataset=proto", strings.NewReader("{}")), 413, "body")
	// A large body is refused from its Content-Length, before it is read:
	// send only the headers, so the answer cannot race the upload.
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /fetch-data?dataset=proto HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\nContent-Length: %d\r\n\r\n", testKey, 1<<20)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("a 1 MiB body announced: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	wantError(t, answer{res.StatusCode, res.Header, body}, 413, "body")
	wantError(t, h.do(http.MethodDelete, "/fetch-data", nil), 405, "get")
}

func TestHEADAnswersHeadersOnly(t *testing.T) {
	h := start(t, nil)
	proto(h)
	get := h.get("/fetch-data?dataset=proto&limit=7")
	head := h.do(http.MethodHead, "/fetch-data?dataset=proto&limit=7", nil)
	if head.status != 200 || len(head.body) != 0 || head.header.Get("Content-Length") != strconv.Itoa(len(get.body)) || head.header.Get("ETag") != get.header.Get("ETag") {
		t.Fatalf("HEAD: %d %q CL %q ETag %q; GET %d bytes", head.status, head.body, head.header.Get("Content-Length"), head.header.Get("ETag"), len(get.body))
	}
	h.do(http.MethodHead, "/fetch-data?dataset=proto&format=csv", nil)
	h.do(http.MethodHead, "/fetch-data?dataset=proto", nil, "Accept-Encoding", "gzip")
	waitFor(t, "every lease released", func() bool { return h.leases() == 0 })
}

func TestReadyz(t *testing.T) {
	h := start(t, nil)
	if a := h.get("/readyz", "X-API-Key", ""); a.status != 200 {
		t.Fatalf("empty DATA_DIR: %d %s", a.status, a.body)
	}
	// A writer catching up, then none: 503 with a reason, no path.
	writeWriterStatus(t, h.dataDir, false)
	wantError(t, h.get("/readyz"), 503, "catching up")
	if a := h.get("/readyz"); strings.Contains(string(a.body), h.dataDir) {
		t.Errorf("the reason shows DATA_DIR: %s", a.body)
	}
	if err := os.Remove(filepath.Join(h.dataDir, schema.WriterStatusFile)); err != nil {
		t.Fatal(err)
	}
	wantError(t, h.get("/readyz"), 503, "no writer")
	writeWriterStatus(t, h.dataDir, true)
	if a := h.get("/readyz"); a.status != 200 {
		t.Fatalf("caught up again: %d %s", a.status, a.body)
	}
	h2 := start(t, func(c *Config) { c.DataDir = filepath.Join(t.TempDir(), "missing") })
	wantError(t, h2.get("/readyz"), 503, "data_dir")
	if a := h2.get("/healthz"); a.status != 200 {
		t.Fatalf("healthz: %d", a.status)
	}
}

func TestCORS(t *testing.T) {
	h := start(t, func(c *Config) { c.CORSOrigins = []string{"https://app.example"} })
	proto(h)
	a := h.do(http.MethodOptions, "/fetch-data", nil, "X-API-Key", "", "Origin", "https://app.example",
		"Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "X-API-Key")
	if a.status != 204 || a.header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("preflight: %d %v", a.status, a.header)
	}
	b := h.get("/fetch-data?dataset=proto", "Origin", "https://app.example")
	if b.header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(b.header.Get("Access-Control-Expose-Headers"), "ETag") {
		t.Fatalf("GET: %v", b.header)
	}
	h2 := start(t, nil)
	if c := h2.get("/healthz", "Origin", "https://app.example"); c.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS headers without API_CORS_ORIGINS")
	}
}

func TestMetricsShareOneRegistry(t *testing.T) {
	h := start(t, nil)
	proto(h)
	h.get("/fetch-data?dataset=proto&limit=3")
	h.get("/fetch-data?dataset=proto&limit=0")
	h.get("/nope")
	waitFor(t, "the stream's metrics", func() bool { return h.leases() == 0 })
	body := string(h.get("/metrics", "X-API-Key", "").body)
	for _, want := range []string{
		"# TYPE rowpipe_api_requests_total counter",
		`rowpipe_api_requests_total{code="200",route="/fetch-data"} 1`,
		`rowpipe_api_requests_total{code="400",route="/fetch-data"} 1`,
		`rowpipe_api_requests_total{code="404",route="unmatched"} 1`,
		`rowpipe_api_request_duration_seconds_bucket{code="200",route="/fetch-data",le="+Inf"} 1`,
		`rowpipe_api_response_bytes_total{route="/fetch-data"}`,
		"rowpipe_api_open_generations 1", "rowpipe_api_leases 0", "go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// With METRICS_ADDR set, /metrics is served there, with no key, and not on
// API_ADDR.
func TestMetricsOnTheirOwnAddress(t *testing.T) {
	h := start(t, func(c *Config) { c.MetricsAddr = "127.0.0.1:0" })
	proto(h)
	h.get("/fetch-data?dataset=proto&limit=3")
	if a := h.get("/metrics", "X-API-Key", ""); a.status != http.StatusNotFound {
		t.Fatalf("/metrics on API_ADDR: %d, want 404", a.status)
	}
	resp, err := http.Get("http://" + h.srv.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `rowpipe_api_requests_total{code="200",route="/fetch-data"} 1`) {
		t.Fatalf("/metrics on METRICS_ADDR: %d\n%.500s", resp.StatusCode, body)
	}
}

// A stop that comes before the serving goroutine has handed its listener to
// fasthttp must still end Run (the stack cancels early when a sibling fails).
func TestRunReturnsWhenStoppedRightAfterStart(t *testing.T) {
	for i := 0; i < 20; i++ {
		srv, err := New(Config{DataDir: t.TempDir(), Addr: "127.0.0.1:0", Keys: Keys{"k-0123456789abcdef0123"}}, WithLogger(discardLogger()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Run(ctx) }()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("run %d: Run did not return after its context ended", i)
		}
	}
}
