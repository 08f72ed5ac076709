package find

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/datadirtest"
)

// Awkward header names, as real exports have them.
var productFields = []string{"Handle", "Title", "Body (HTML)", "Variant SKU", "Google Shopping / Gender", "limit", "a.b=c", "Weight, kg", `Say "hi"`}

func productRow(i int, v []string) {
	handle := fmt.Sprintf("linen-apron-%d", i/3) // three variant rows a product
	v[0], v[1], v[2] = handle, "", ""
	if i%3 == 0 {
		v[1] = []string{"Linen Apron", "Café \"Crème\" Mug", "北欧 Tote 🍵"}[i%3/1%3]
		v[2] = "<p>9\" x 12\"</p>\n<p>Café</p>"
	}
	v[3] = fmt.Sprintf("FH-%04d-%d", i/3, i%3)
	if i%10 == 7 {
		v[3] = "" // a variant without a SKU
	}
	v[4], v[5], v[6], v[7], v[8] = []string{"unisex", "female", ""}[i%3], fmt.Sprint(i%4), "x", fmt.Sprint(i%5), `"quoted"`
}

type fixture struct {
	dir string
	gen datadirtest.Gen
	g   Gen
}

func open(t testing.TB, g datadirtest.Gen, indexed ...string) fixture {
	t.Helper()
	dataDir := t.TempDir()
	h := datadirtest.Write(t, dataDir, g)
	for _, f := range indexed {
		datadirtest.WriteLookup(t, dataDir, g, f)
	}
	dataPath, idxPath := datadirtest.Paths(dataDir, g.Dataset, g.Generation)
	data, err := os.Open(dataPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { data.Close() })
	idxFile, err := os.Open(idxPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idxFile.Close() })
	idx, err := schema.OpenIndex(idxFile)
	if err != nil {
		t.Fatal(err)
	}
	x, err := OpenIndexes(filepath.Join(dataDir, g.Dataset), h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return fixture{dir: dataDir, gen: g, g: Gen{Header: h, Data: data, Index: idx, Indexes: x}}
}

func products(t testing.TB, rows int, indexed ...string) fixture {
	return open(t, datadirtest.Gen{Dataset: "products", Generation: 7, Fields: productFields, Rows: rows, Row: productRow}, indexed...)
}

// brute is the scan a client would do: every record, decoded by
// encoding/json, tested against the filters.
func (f fixture) brute(t testing.TB, filters map[string]string) []int {
	t.Helper()
	var out []int
	for i := range f.gen.Rows {
		var m map[string]string
		if err := json.Unmarshal(f.gen.Line(t, i), &m); err != nil {
			t.Fatal(err)
		}
		ok := true
		for k, v := range filters {
			ok = ok && m[k] == v
		}
		if ok {
			out = append(out, i)
		}
	}
	return out
}

func (f fixture) request(t testing.TB, q ...string) Request {
	t.Helper()
	req, err := Parse(f.g.Indexes.Shape(), pairs(q...))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func pairs(q ...string) func(func(string, string) bool) {
	return func(yield func(string, string) bool) {
		for _, kv := range q { // as a client sends them: '=' in a name is %3D
			k, v, _ := strings.Cut(kv, "=")
			k, _ = url.QueryUnescape(k)
			v, _ = url.QueryUnescape(v)
			if !yield(k, v) {
				return
			}
		}
	}
}

// all runs req page by page (by offset or by cursor) and returns the
// record numbers found, by their position in the brute-force order.
func (f fixture) all(t testing.TB, req Request, page Page) (lines []string, pages []Result) {
	t.Helper()
	for {
		res, err := Run(f.g, req, page, func(rec []byte) error {
			lines = append(lines, string(rec))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, res)
		switch {
		case res.Scan != nil && res.Scan.Next != nil:
			req.Cursor = res.Scan.Next
		case res.Scan == nil && res.NextOffset != nil:
			page.Offset = *res.NextOffset
		default:
			return lines, pages
		}
		if len(pages) > 10000 {
			t.Fatal("no end")
		}
	}
}

func (f fixture) lines(t testing.TB, recs []int) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(f.gen.Line(t, r))
	}
	return out
}

func TestAnIndexedFieldAnswersAsAScanDoesWithAnExactCount(t *testing.T) {
	f := products(t, 3000, "Variant SKU", "Handle", "Title")
	for _, c := range []map[string]string{
		{"Variant SKU": "FH-0042-1"}, {"Variant SKU": ""}, {"Handle": "linen-apron-17"},
		{"Title": "Café \"Crème\" Mug"}, {"Title": "北欧 Tote 🍵"}, {"Title": ""}, {"Variant SKU": "no-such-sku"},
	} {
		var q []string
		for k, v := range c {
			q = append(q, FilterPrefix+k+"="+v)
		}
		want := f.brute(t, c)
		got, pages := f.all(t, f.request(t, q...), Page{Limit: 7, ScanLimit: 10})
		if !slices.Equal(got, f.lines(t, want)) {
			t.Fatalf("%v: %d records, the scan finds %d", c, len(got), len(want))
		}
		for _, p := range pages {
			if p.Scan != nil || p.Count == nil || *p.Count != uint64(len(want)) {
				t.Fatalf("%v: page %+v: want an index answer counting %d", c, p, len(want))
			}
		}
	}
}

func TestAFieldWithoutAnIndexIsScannedInBoundedStepsToTheSameAnswer(t *testing.T) {
	f := products(t, 2000, "Handle")
	cases := []struct {
		q    []string
		want map[string]string
	}{
		{[]string{"eq.limit=3"}, map[string]string{"limit": "3"}},
		{[]string{"eq.a.b%3Dc=x", "eq.Weight, kg=4"}, map[string]string{"a.b=c": "x", "Weight, kg": "4"}},
		{[]string{"eq.Google Shopping / Gender=", "eq.Handle=linen-apron-5"}, map[string]string{"Google Shopping / Gender": "", "Handle": "linen-apron-5"}},
		{[]string{`eq.Say "hi"="quoted"`, "eq.Body (HTML)=<p>9\" x 12\"</p>\n<p>Café</p>"}, map[string]string{`Say "hi"`: `"quoted"`, "Body (HTML)": "<p>9\" x 12\"</p>\n<p>Café</p>"}},
	}
	for _, c := range cases {
		want := f.brute(t, c.want)
		const scanLimit = 300
		got, pages := f.all(t, f.request(t, c.q...), Page{Limit: 25, ScanLimit: scanLimit})
		if !slices.Equal(got, f.lines(t, want)) {
			t.Fatalf("%v: %d records, the scan finds %d", c.q, len(got), len(want))
		}
		for i, p := range pages {
			if p.Scan == nil || p.Scan.Scanned > scanLimit || p.Returned > 25 {
				t.Fatalf("%v: page %d %+v: want a scan of at most %d records", c.q, i, p, scanLimit)
			}
			if i < len(pages)-1 && p.Scan.Next == nil || i == len(pages)-1 && p.Scan.Next != nil {
				t.Fatalf("%v: page %d of %d: next %v", c.q, i, len(pages), p.Scan.Next)
			}
			// A count only from a scan that read everything from the start.
			if p.Count != nil && (len(pages) != 1 || *p.Count != uint64(len(want))) {
				t.Fatalf("%v: page %d says count %d", c.q, i, *p.Count)
			}
		}
		if c.want["Handle"] != "" && pages[0].Scan.Indexed != "Handle" {
			t.Fatalf("%v: the Handle index did not choose the candidates: %+v", c.q, pages[0].Scan)
		}
	}
}

func TestFieldsProjectEachRecordInTheOrderAsked(t *testing.T) {
	f := products(t, 30, "Handle")
	req := f.request(t, `fields=limit,"Weight, kg",Handle,"Say ""hi""",Body (HTML)`, "eq.Handle=linen-apron-2")
	got, _ := f.all(t, req, Page{Limit: 10, ScanLimit: 10})
	if len(got) != 3 {
		t.Fatalf("%d records", len(got))
	}
	for i, line := range got {
		vals := make([]string, len(productFields))
		productRow(6+i, vals)
		enc, _ := schema.NewRecordEncoder([]string{"limit", "Weight, kg", "Handle", `Say "hi"`, "Body (HTML)"})
		want, _ := enc.Append(nil, []string{vals[5], vals[7], vals[0], vals[8], vals[2]})
		if line != string(want) {
			t.Fatalf("record %d: %s, want %s", i, line, want)
		}
	}
}

func TestParseRefusesWhatItCannotAnswer(t *testing.T) {
	fields := productFields
	shape, err := NewShape(fields)
	if err != nil {
		t.Fatal(err)
	}
	for q, wantParam := range map[string]string{
		"eq.SKU=x":             "eq.SKU",
		"fields=Handle,SKU":    "fields",
		"fields=":              "fields",
		"fields=Handle,Handle": "fields",
		`fields="Handle`:       "fields",
		"cursor=abc":           "cursor",
		"cursor=0.5":           "cursor",
	} {
		_, err := Parse(shape, pairs(q))
		if err == nil || err.Param != wantParam {
			t.Errorf("%s: %v, want a refusal of %s", q, err, wantParam)
			continue
		}
		if strings.Contains(q, "SKU") && (!slices.Equal(err.Fields, fields) || !strings.Contains(err.Message, `"Variant SKU"`)) {
			t.Errorf("%s: %q does not list the fields", q, err.Message)
		}
	}
	if _, err := Parse(shape, pairs("fields=Handle", "fields=Title")); err == nil {
		t.Error("fields twice accepted")
	}
	// Unknown parameters are someone else's; limit is a parameter, eq.limit a filter.
	req, perr := Parse(shape, pairs("limit=5", "offset=2", "eq.limit=1", "format=csv"))
	if perr != nil || len(req.Filters) != 1 || req.Filters[0] != (Filter{Field: 5, Value: "1"}) {
		t.Fatalf("= %+v, %v", req, perr)
	}
}

func TestAScanPagesByCursorNotOffset(t *testing.T) {
	f := products(t, 50)
	if _, err := Run(f.g, f.request(t, "eq.limit=1"), Page{Limit: 5, Offset: 5, ScanLimit: 100}, func([]byte) error { return nil }); !errors.Is(err, ErrOffsetInScan) {
		t.Fatalf("offset in a scan: %v", err)
	}
	req := f.request(t, "eq.limit=1", "cursor=99.3")
	if _, err := Run(f.g, req, Page{Limit: 5, ScanLimit: 100}, func([]byte) error { return nil }); !errors.Is(err, ErrCursorGeneration) {
		t.Fatalf("a cursor of another generation: %v", err)
	}
}

// An index that covers fewer records than the header (an append since it
// was built) is not used: the field is scanned, and the answer is right.
func TestAStaleIndexIsNotUsed(t *testing.T) {
	f := products(t, 90, "Variant SKU")
	h := datadirtest.Append(t, f.dir, f.gen, f.g.Header, 30)
	f.gen.Rows, f.g.Header = 120, h
	want := f.brute(t, map[string]string{"Variant SKU": "FH-0035-0"})
	got, pages := f.all(t, f.request(t, "eq.Variant SKU=FH-0035-0"), Page{Limit: 10, ScanLimit: 1000})
	if len(want) != 1 || !slices.Equal(got, f.lines(t, want)) || pages[0].Scan == nil || pages[0].Scan.Indexed != "" {
		t.Fatalf("got %d records from %+v, want %v from a scan", len(got), pages[0], want)
	}
	if d := f.g.Indexes.Describe(h.Fields, h.Count); len(d) != 1 || !d[0].Stale || d[0].Field != "Variant SKU" {
		t.Fatalf("Describe = %+v", d)
	}
}

func TestDescribeCountsDistinctValues(t *testing.T) {
	f := products(t, 300, "Handle", "Variant SKU")
	d := f.g.Indexes.Describe(f.g.Header.Fields, f.g.Header.Count)
	if len(d) != 2 || d[0] != (IndexInfo{Field: "Handle", Distinct: 100}) || d[1].Field != "Variant SKU" || d[1].Distinct != 300-30+1 {
		t.Fatalf("Describe = %+v", d)
	}
}

// A scan holds one record and its page: over records with a field as
// large as a record may be (schema.MaxRecordBytes, just under 1 MiB), it
// allocates about one record's buffer, not one per record read.
func TestAScanHoldsOneRecordAtATime(t *testing.T) {
	big := strings.Repeat("<p>long description</p>", (schema.MaxRecordBytes-100)/24)
	g := datadirtest.Gen{Dataset: "big", Generation: 3, Fields: []string{"Handle", "Body"}, Rows: 40, Row: func(i int, v []string) {
		v[0], v[1] = fmt.Sprintf("h-%d", i), big
	}}
	f := open(t, g)
	req := f.request(t, "eq.Body=not this", "fields=Handle")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res, err := Run(f.g, req, Page{Limit: 10, ScanLimit: 1000}, func([]byte) error { return nil })
	runtime.ReadMemStats(&after)
	if err != nil || res.Scan.Scanned != 40 || res.Returned != 0 {
		t.Fatalf("%+v, %v", res, err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 3*uint64(len(big)) {
		t.Fatalf("a scan of 40 records of %d bytes allocated %d bytes", len(big), got)
	}
}

func TestAMillionRowsLookUpAsTheyScan(t *testing.T) {
	if testing.Short() {
		t.Skip("a million rows")
	}
	f := products(t, 1_000_000, "Variant SKU")
	skus := []string{"FH-0000-0", "FH-123456-1", "FH-333333-2", "", "FH-9999999-0"}
	wants := map[string]map[string]bool{}
	vals := make([]string, len(productFields))
	for i := range f.gen.Rows { // the brute force, one pass
		productRow(i, vals)
		if slices.Contains(skus, vals[3]) {
			if wants[vals[3]] == nil {
				wants[vals[3]] = map[string]bool{}
			}
			wants[vals[3]][string(f.gen.Line(t, i))] = true
		}
	}
	for _, sku := range skus {
		want := wants[sku]
		res, err := Run(f.g, f.request(t, "eq.Variant SKU="+sku), Page{Limit: 3, ScanLimit: 1}, func([]byte) error { return nil })
		if err != nil || res.Count == nil || *res.Count != uint64(len(want)) {
			t.Fatalf("%q: %+v, %v; want %d", sku, res, err, len(want))
		}
		got, _ := f.all(t, f.request(t, "eq.Variant SKU="+sku), Page{Limit: 1000, ScanLimit: 1})
		if len(got) != len(want) || !maps.Equal(want, setOf(got)) {
			t.Fatalf("%q: %d records, want %d", sku, len(got), len(want))
		}
	}
}

func setOf(lines []string) map[string]bool {
	m := map[string]bool{}
	for _, l := range lines {
		m[l] = true
	}
	return m
}

// MaxBytes ends a page early, after one record at least, and the page
// says where the next one starts: index answers and scans alike.
func TestAPageEndsAtItsByteBudgetAndSaysWhereToGoOn(t *testing.T) {
	f := products(t, 300, "Variant SKU")
	for _, q := range [][]string{{"eq.Variant SKU="}, {"eq.limit=1"}} {
		want := f.brute(t, map[string]string{strings.TrimPrefix(strings.Split(q[0], "=")[0], "eq."): strings.Split(q[0], "=")[1]})
		got, pages := f.all(t, f.request(t, q...), Page{Limit: 100, ScanLimit: 1000, MaxBytes: 1})
		if !slices.Equal(got, f.lines(t, want)) {
			t.Fatalf("%v: %d records, want %d", q, len(got), len(want))
		}
		for _, p := range pages[:len(pages)-1] {
			if p.Returned != 1 {
				t.Fatalf("%v: a page of %d records with a budget of one byte", q, p.Returned)
			}
		}
	}
}

// After an append the writer rebuilds the indexes under their names: a
// Live sees the stale ones and opens the new ones, at most once a second;
// the ones replaced serve the requests that hold them until released.
func TestLiveReopensIndexesRebuiltAfterAnAppend(t *testing.T) {
	f := products(t, 90, "Variant SKU")
	dir := filepath.Join(f.dir, f.gen.Dataset)
	live, err := OpenLive(dir, f.g.Header)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	t0 := datadirtest.BaseTime
	held, release, _ := live.For(f.g.Header, t0)
	old := held.For(3, 90)
	if old == nil {
		t.Fatal("the index is not used")
	}
	indexed := func(h schema.Header, at time.Time) bool {
		x, release, _ := live.For(h, at)
		defer release()
		return x.For(3, h.Count) != nil
	}
	h := datadirtest.Append(t, f.dir, f.gen, f.g.Header, 30)
	if indexed(h, t0) {
		t.Fatal("a stale index is used")
	}
	f.gen.Rows = 120
	datadirtest.WriteLookup(t, f.dir, f.gen, "Variant SKU") // the writer's rebuild at the append's end
	if indexed(h, t0.Add(ReopenEvery/2)) {
		t.Fatal("reopened sooner than ReopenEvery")
	}
	x, releaseNew, err := live.For(h, t0.Add(ReopenEvery))
	defer releaseNew()
	if err != nil || x.For(3, h.Count) == nil {
		t.Fatalf("the rebuilt index is not used: %v", err)
	}
	if _, _, err := old.Find([]byte("x")); err != nil {
		t.Fatalf("an index in use was closed: %v", err)
	}
	release()
	if _, _, err := old.Find([]byte("x")); err == nil {
		t.Fatal("a replaced index stayed open after its last user")
	}
}

// An index rebuilt after an append can be opened with a header read just
// before the append's: it covers more records than that header. It is not
// used for that header, and is used, without a reopen, once the header
// says as much.
func TestAnIndexAheadOfTheHeaderIsUsedOnceTheHeaderCatchesUp(t *testing.T) {
	f := products(t, 90, "Variant SKU")
	dir := filepath.Join(f.dir, f.gen.Dataset)
	h := datadirtest.Append(t, f.dir, f.gen, f.g.Header, 30)
	f.gen.Rows = 120
	datadirtest.WriteLookup(t, f.dir, f.gen, "Variant SKU")
	live, err := OpenLive(dir, f.g.Header) // the header of 90 records
	if err != nil {
		t.Fatalf("an index ahead of the header is refused: %v", err)
	}
	defer live.Close()
	t0 := datadirtest.BaseTime
	x, release, _ := live.For(f.g.Header, t0)
	if x.For(3, 90) != nil {
		t.Fatal("an index of 120 records is used for a header of 90")
	}
	release()
	x, release, _ = live.For(h, t0)
	defer release()
	if x.For(3, 120) == nil {
		t.Fatal("the index is not used once the header covers it")
	}
}
