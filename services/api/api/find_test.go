package api

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/rowpipe/rowpipe/pkg/schema/datadirtest"
)

// shopFields are header names as real exports have them, with the names
// a query string could confuse: spaces, parentheses, '/', '.', '=', a
// comma, and columns called limit and offset.
var shopFields = []string{"Handle", "Title", "Variant SKU", "Body (HTML)", "Google Shopping / Gender", "limit", "offset", "a.b=c", "Weight, kg"}

func shopRow(i int, v []string) {
	v[0] = fmt.Sprintf("linen-apron-%d", i/3)
	v[1], v[3] = "", ""
	if i%3 == 0 {
		v[1] = []string{"Linen Apron", "Café \"Crème\" Mug", "北欧 Tote 🍵"}[i/3%3]
		v[3] = "<p>9\" x 12\"</p>\n<p>Café</p>"
	}
	v[2] = fmt.Sprintf("FH-%04d-%d", i/3, i%3+1)
	v[4] = []string{"unisex", "female", ""}[i%3]
	v[5], v[6], v[7], v[8] = fmt.Sprint(i%4), fmt.Sprint(i%5), "x", fmt.Sprint(i%7)
}

// shop publishes 600 records with lookup indexes of Handle and Variant SKU.
func shop(h *harness) datadirtest.Gen {
	g := h.publish(datadirtest.Gen{Dataset: "shop", Generation: 9, Fields: shopFields, Rows: 600, Row: shopRow})
	datadirtest.WriteLookup(h.t, h.dataDir, g, "Handle")
	datadirtest.WriteLookup(h.t, h.dataDir, g, "Variant SKU")
	return g
}

// matching is the brute force: the records of g whose fields hold values.
func matching(t *testing.T, g datadirtest.Gen, values map[string]string) [][]byte {
	var out [][]byte
	for i := range g.Rows {
		var m map[string]string
		line := g.Line(t, i)
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		ok := true
		for k, v := range values {
			ok = ok && m[k] == v
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// eq builds a query string of filters, names and values percent-encoded
// as a client does.
func eq(kv ...string) string {
	var q []string
	for i := 0; i+1 < len(kv); i += 2 {
		q = append(q, url.QueryEscape("eq."+kv[i])+"="+url.QueryEscape(kv[i+1]))
	}
	return strings.Join(q, "&")
}

type findPage struct {
	Count      *uint64           `json:"count"`
	Offset     uint64            `json:"offset"`
	Returned   int               `json:"returned"`
	NextOffset *uint64           `json:"next_offset"`
	Scan       *findScan         `json:"scan"`
	Data       []json.RawMessage `json:"data"`
}

func (h *harness) findPage(path string) (findPage, answer) {
	h.t.Helper()
	a := h.get(path)
	if a.status != 200 {
		h.t.Fatalf("%s: %d %s", path, a.status, a.body)
	}
	var p findPage
	if err := json.Unmarshal(a.body, &p); err != nil {
		h.t.Fatalf("%s: %v: %s", path, err, a.body)
	}
	if p.Returned != len(p.Data) {
		h.t.Fatalf("%s: returned %d, %d records", path, p.Returned, len(p.Data))
	}
	return p, a
}

func TestALookupOnAnIndexedFieldIsExactAndPaged(t *testing.T) {
	h := start(t, nil)
	g := shop(h)
	want := matching(t, g, map[string]string{"Variant SKU": "FH-0042-2"})
	p, a := h.findPage("/fetch-data?dataset=shop&" + eq("Variant SKU", "FH-0042-2"))
	if len(want) != 1 || p.Count == nil || *p.Count != 1 || p.Scan != nil || !bytes.Equal(p.Data[0], want[0]) || a.header.Get("X-Total-Count") != "1" {
		t.Fatalf("%s", a.body)
	}
	// Three variants a handle, two a page: offset pages through them.
	want = matching(t, g, map[string]string{"Handle": "linen-apron-7"})
	var got [][]byte
	path := "/datasets/shop/records?limit=2&" + eq("Handle", "linen-apron-7")
	for path != "" {
		p, a := h.findPage(path)
		if p.Count == nil || *p.Count != 3 {
			t.Fatalf("%s: %s", path, a.body)
		}
		for _, d := range p.Data {
			got = append(got, d)
		}
		link := a.header.Get("Link")
		if (p.NextOffset == nil) != (link == "") {
			t.Fatalf("next_offset %v and Link %q disagree", p.NextOffset, link)
		}
		path = strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`)
	}
	if len(got) != 3 || !bytes.Equal(bytes.Join(got, nil), bytes.Join(want, nil)) {
		t.Fatalf("%d records through the Link headers, want %d", len(got), len(want))
	}
}

// A field without an index is scanned SCAN_LIMIT records at a time; the
// pages, followed by their cursor, give what a scan of the file gives.
func TestAFieldWithoutAnIndexIsScannedByCursor(t *testing.T) {
	h := start(t, func(c *Config) { c.ScanLimit = 70 })
	g := shop(h)
	for _, c := range []map[string]string{
		{"limit": "2"},
		{"a.b=c": "x", "Weight, kg": "3", "offset": "1"},
		{"Google Shopping / Gender": "", "Handle": "linen-apron-11"},
		{"Body (HTML)": "<p>9\" x 12\"</p>\n<p>Café</p>", "Title": "Café \"Crème\" Mug"},
	} {
		var kv []string
		for k, v := range c {
			kv = append(kv, k, v)
		}
		want := matching(t, g, c)
		var got [][]byte
		path := "/fetch-data?dataset=shop&limit=5&" + eq(kv...)
		pages := 0
		for ; path != ""; pages++ {
			p, a := h.findPage(path)
			if p.Scan == nil || p.Scan.Scanned > 70 || p.Scan.ScanLimit != 70 {
				t.Fatalf("%v: not a bounded scan: %s", c, a.body)
			}
			got = append(got, rawLines(p.Data)...)
			path = ""
			if p.Scan.NextCursor != nil {
				path = "/fetch-data?dataset=shop&limit=5&" + eq(kv...) + "&cursor=" + *p.Scan.NextCursor
				if link := a.header.Get("Link"); !strings.Contains(link, "cursor="+*p.Scan.NextCursor) || !strings.Contains(link, "generation=9") {
					t.Fatalf("Link %q", link)
				}
			}
		}
		if !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("%v: %d records in %d pages, the scan of the file finds %d", c, len(got), pages, len(want))
		}
		if _, indexed := c["Handle"]; !indexed && pages < 600/70 {
			t.Fatalf("%v: %d pages for 600 records scanned 70 at a time", c, pages)
		}
	}
	wantError(t, h.get("/fetch-data?dataset=shop&offset=5&"+eq("limit", "2")), 400, "cursor")
}

func rawLines(data []json.RawMessage) [][]byte {
	out := make([][]byte, len(data))
	for i, d := range data {
		out[i] = d
	}
	return out
}

func TestAnUnknownFieldIsRefusedNamingTheFields(t *testing.T) {
	h := start(t, nil)
	shop(h)
	for _, q := range []string{eq("SKU", "x") + "&limit=2&" + eq("Handle", "a"), "fields=Handle,SKU&" + eq("Title", ""), "fields=" + url.QueryEscape(`"Handle`)} {
		a := h.get("/fetch-data?dataset=shop&" + q)
		wantError(t, a, 400, "")
		if strings.Contains(q, "SKU") && (!strings.Contains(string(a.body), `\"SKU\"`) || !strings.Contains(string(a.body), `\"Variant SKU\"`) || !strings.Contains(string(a.body), "unknown_field")) {
			t.Errorf("%s: %s", q, a.body)
		}
	}
}

// fields= keeps only the keys named, in the order named, in every format.
func TestFieldsProjectJSONNDJSONAndCSV(t *testing.T) {
	h := start(t, nil)
	shop(h)
	fields := url.QueryEscape(`limit,"Weight, kg",Handle,Body (HTML)`)
	base := "/fetch-data?dataset=shop&limit=3&offset=3&fields=" + fields
	want := []string{
		`{"limit":"3","Weight, kg":"3","Handle":"linen-apron-1","Body (HTML)":"<p>9\" x 12\"</p>\n<p>Café</p>"}`,
		`{"limit":"0","Weight, kg":"4","Handle":"linen-apron-1","Body (HTML)":""}`,
		`{"limit":"1","Weight, kg":"5","Handle":"linen-apron-1","Body (HTML)":""}`,
	}
	p, _ := h.findPage(base)
	if got := rawLines(p.Data); len(got) != 3 || string(bytes.Join(got, []byte("\n"))) != strings.Join(want, "\n") {
		t.Fatalf("JSON: %s", bytes.Join(got, []byte("\n")))
	}
	if p.Count == nil || *p.Count != 600 || p.NextOffset == nil || *p.NextOffset != 6 {
		t.Fatalf("a projection of every record pages like the records: %+v", p)
	}
	if a := h.get(base + "&format=ndjson"); a.status != 200 || string(a.body) != strings.Join(want, "\n")+"\n" {
		t.Fatalf("NDJSON: %d %s", a.status, a.body)
	}
	a := h.get(base + "&format=csv")
	rows, err := csv.NewReader(bytes.NewReader(a.body)).ReadAll()
	if err != nil || len(rows) != 4 || !slices.Equal(rows[0], []string{"limit", "Weight, kg", "Handle", "Body (HTML)"}) ||
		!slices.Equal(rows[1], []string{"3", "3", "linen-apron-1", "<p>9\" x 12\"</p>\n<p>Café</p>"}) {
		t.Fatalf("CSV: %v %q", err, rows)
	}
}

func TestMetadataListsTheIndexes(t *testing.T) {
	h := start(t, nil)
	shop(h)
	for _, path := range []string{"/fetch-data?dataset=shop&metadata_only=true", "/datasets/shop", "/datasets"} {
		a := h.get(path)
		want := `"indexes":[{"field":"Handle","distinct":200},{"field":"Variant SKU","distinct":600}]`
		if a.status != 200 || !strings.Contains(string(a.body), want) {
			t.Fatalf("%s: %s", path, a.body)
		}
	}
}

func TestOpenAPIDescribesFiltersProjectionAndScans(t *testing.T) {
	h := start(t, func(c *Config) { c.ScanLimit = 1234 })
	type param struct {
		Ref         string `json:"$ref"`
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	var doc struct {
		Paths map[string]struct {
			Parameters []param `json:"parameters"`
		} `json:"paths"`
		Components struct {
			Parameters map[string]param           `json:"parameters"`
			Schemas    map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(h.get("/openapi.json").body, &doc); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/fetch-data", "/datasets/{name}/records"} {
		var names []string
		for _, p := range doc.Paths[path].Parameters {
			if p.Ref != "" {
				p = doc.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
			}
			names = append(names, p.Name)
			if p.Name == "eq.{field}" && !strings.Contains(p.Description, "SCAN_LIMIT records") {
				t.Errorf("%s: eq. does not state SCAN_LIMIT: %s", path, p.Description)
			}
		}
		for _, want := range []string{"eq.{field}", "fields", "cursor"} {
			if !slices.Contains(names, want) {
				t.Errorf("%s: no parameter %s in %v", path, want, names)
			}
		}
	}
	var scan struct {
		Properties struct {
			Scanned struct{ Maximum uint64 } `json:"scanned"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(doc.Components.Schemas["Scan"], &scan); err != nil || scan.Properties.Scanned.Maximum != 1234 {
		t.Errorf("Scan.scanned's maximum is %d, want SCAN_LIMIT 1234 (%v)", scan.Properties.Scanned.Maximum, err)
	}
	for _, s := range []string{"Scan", "Page", "Metadata"} {
		if doc.Components.Schemas[s] == nil {
			t.Errorf("no schema %s", s)
		}
	}
	if !strings.Contains(string(doc.Components.Schemas["Metadata"]), `"indexes"`) {
		t.Error("Metadata has no indexes")
	}
}

func TestAFilteredPageHasAnETagAndIsGzippedWhenAsked(t *testing.T) {
	h := start(t, nil)
	shop(h)
	path := "/fetch-data?dataset=shop&" + eq("Handle", "linen-apron-3")
	a := h.get(path)
	tag := a.header.Get("ETag")
	if a.status != 200 || tag == "" {
		t.Fatalf("%d, ETag %q", a.status, tag)
	}
	if b := h.get(path, "If-None-Match", tag); b.status != 304 {
		t.Fatalf("If-None-Match: %d", b.status)
	}
	if b := h.get("/fetch-data?dataset=shop&"+eq("Handle", "linen-apron-4"), "If-None-Match", tag); b.status != 200 {
		t.Fatalf("another filter matched the ETag: %d", b.status)
	}
	z := h.get(path, "Accept-Encoding", "gzip")
	if z.header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q", z.header.Get("Content-Encoding"))
	}
	r, err := gzip.NewReader(bytes.NewReader(z.body))
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := io.ReadAll(r); err != nil || !bytes.Equal(plain, a.body) {
		t.Fatalf("gunzipped: %v %s", err, plain)
	}
}

// A page much larger than its first buffer comes out whole, in JSON and
// NDJSON.
func TestALargeFilteredPageIsWhole(t *testing.T) {
	h := start(t, nil)
	g := shop(h)
	want := matching(t, g, map[string]string{"a.b=c": "x"})
	p, _ := h.findPage("/fetch-data?dataset=shop&limit=1000&" + eq("a.b=c", "x"))
	if !slices.EqualFunc(rawLines(p.Data), want, bytes.Equal) || p.Count == nil || *p.Count != 600 {
		t.Fatalf("%d records, want %d", len(p.Data), len(want))
	}
	a := h.get("/fetch-data?dataset=shop&limit=1000&format=ndjson&" + eq("a.b=c", "x"))
	if !bytes.Equal(a.body, append(bytes.Join(want, []byte("\n")), '\n')) {
		t.Fatalf("NDJSON of %d bytes", len(a.body))
	}
}

// shopifyFields is the header of a Shopify product export.
var shopifyFields = []string{
	"Handle", "Title", "Body (HTML)", "Vendor", "Product Category", "Type", "Tags", "Published",
	"Option1 Name", "Option1 Value", "Option2 Name", "Option2 Value", "Option3 Name", "Option3 Value",
	"Variant SKU", "Variant Grams", "Variant Inventory Tracker", "Variant Inventory Qty",
	"Variant Inventory Policy", "Variant Fulfillment Service", "Variant Price", "Variant Compare At Price",
	"Variant Requires Shipping", "Variant Taxable", "Variant Barcode", "Image Src", "Image Position",
	"Image Alt Text", "Gift Card", "SEO Title", "SEO Description", "Google Shopping / Google Product Category",
	"Google Shopping / Gender", "Google Shopping / Age Group", "Google Shopping / MPN",
	"Google Shopping / Condition", "Google Shopping / Custom Product", "Variant Image", "Variant Weight Unit",
	"Variant Tax Code", "Cost per item", "Included / United States", "Price / United States",
	"Compare At Price / United States", "Status",
}

// BenchmarkLookup compares, in process, a lookup by an indexed field with
// the first page of 10 records of the same Shopify-shaped dataset: the
// bench's lookup/first-page ratio without the network.
func BenchmarkLookup(b *testing.B) {
	dir := b.TempDir()
	g := datadirtest.Gen{Dataset: "shopify", Generation: 4, Fields: shopifyFields, Rows: 100_000, Row: func(i int, v []string) {
		for j := range v {
			v[j] = fmt.Sprintf("%s %d", shopifyFields[j], i%(j+2))
		}
		v[0], v[14] = fmt.Sprintf("product-%d", i/3), fmt.Sprintf("SKU-%06d-%d", i/3, i%3)
	}}
	datadirtest.Publish(b, dir, g)
	datadirtest.WriteLookup(b, dir, g, "Variant SKU")
	s, err := New(Config{DataDir: dir, Keys: Keys{testKey}}, WithLogger(discardLogger()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.store.Close)
	handler := s.App().Handler()
	w := bufio.NewWriterSize(io.Discard, 4096)
	for _, tc := range []struct{ name, query string }{
		{"first page/limit=10", "limit=10&offset=0"},
		{"lookup Variant SKU", "eq.Variant%20SKU=SKU-012345-1"},
		{"scan of 100 000 records", "eq.Title=none"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var ctx fasthttp.RequestCtx
			uri := []byte("/fetch-data?dataset=shopify&" + tc.query)
			b.ReportAllocs()
			cpu0 := processCPU()
			defer func() { b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op") }()
			for b.Loop() {
				ctx.Request.Reset()
				ctx.Request.Header.SetMethod(fasthttp.MethodGet)
				ctx.Request.SetRequestURIBytes(uri)
				ctx.Request.Header.Set("X-API-Key", testKey)
				handler(&ctx)
				if ctx.Response.StatusCode() != http.StatusOK {
					b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
				if err := ctx.Response.Write(w); err != nil {
					b.Fatal(err)
				}
				ctx.Response.Reset()
			}
		})
	}
}

func TestTheFilteredEnvelopeIsWhatEncodingJSONWrites(t *testing.T) {
	count, next, cursor := uint64(7), uint64(3), "9.120"
	for _, head := range []findHead{
		{Dataset: "shop", Generation: 9, Count: &count, Offset: 1, Limit: 2, Returned: 2, NextOffset: &next},
		{Dataset: "shop", Generation: 9, Limit: 10, Scan: &findScan{Index: `Variant "SKU"`, Scanned: 70, ScanLimit: 70, NextCursor: &cursor}},
		{Dataset: "shop", Generation: 9, Count: &count, Limit: 10, Returned: 7, Scan: &findScan{Scanned: 600, ScanLimit: 1000}},
	} {
		want, _ := json.Marshal(head)
		if got := append(appendFindHead(nil, head), '}'); !bytes.Equal(got, want) {
			t.Errorf("\n got %s\nwant %s", got, want)
		}
	}
}

// processCPU is the CPU time the process used so far: on a machine shared
// with other work, a fairer measure of a handler than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
