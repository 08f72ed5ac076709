package lookup

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
	"github.com/rowpipe/rowpipe/services/writer/internal/generation"
	"github.com/rowpipe/rowpipe/services/writer/internal/sample"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// writeGeneration writes n records through the writer's own generation
// package, the way a replace sync does, and returns its folder and header.
func writeGeneration(t testing.TB, fields []string, n int, record func(dst []byte, i int) []byte) (string, schema.Header) {
	t.Helper()
	dir := t.TempDir()
	files := generation.Files{FS: disk.OS{}, Dir: dir, Policy: generation.SyncOff}
	h := schema.Header{Dataset: "products", Generation: 5, State: schema.StateBuilding, Mode: schema.ModeReplace,
		Sync: "abc", Fields: fields, Source: schema.Source{Name: "p.csv", Size: -1}, CreatedAt: t0, UpdatedAt: t0, LastSeq: 5}
	g, err := generation.Create(files, h)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var buf []byte
	for i := range n {
		rec := record(nil, i)
		g.Append(rec, uint64(6+i), t0)
		buf = append(buf, rec...)
		if len(buf) > 4<<20 || i == n-1 {
			if err := g.Flush(); err != nil {
				t.Fatal(err)
			}
			buf = buf[:0]
		}
	}
	if n == 0 {
		if err := g.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	h = g.Header()
	h.State = schema.StateComplete
	if err := g.SetHeader(h); err != nil {
		t.Fatal(err)
	}
	return dir, g.Header()
}

func build(t testing.TB, dir string, h schema.Header, budget int, cols ...int) {
	t.Helper()
	data, err := os.Open(filepath.Join(dir, schema.DataFile(h.Generation)))
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	cfg := Config{FS: disk.OS{}, Dir: dir, Budget: budget}
	if err := Build(context.Background(), cfg, Source{Header: h, Data: data}, cols); err != nil {
		t.Fatal(err)
	}
}

// scan is the brute force: every value of column col, in record order,
// read back from the data file.
func scan(t testing.TB, dir string, h schema.Header, col int) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, schema.DataFile(h.Generation)))
	if err != nil {
		t.Fatal(err)
	}
	// encoding/json, not the decoder under test, reads the values back.
	var out []string
	for line := range bytes.Lines(b[h.Size:]) {
		var m map[string]string
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m[h.Fields[col]])
	}
	if uint64(len(out)) != h.Count {
		t.Fatalf("scanned %d records, the header counts %d", len(out), h.Count)
	}
	return out
}

// check opens the index of col and compares the lookup of each value in
// probe (all distinct values when nil) with the brute-force scan.
func check(t testing.TB, dir string, h schema.Header, col int, probe []string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, schema.LookupFile(h.Generation, col)))
	if err != nil {
		t.Fatal(err)
	}
	m, err := schema.VerifyLookup(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	values := scan(t, dir, h, col)
	want := map[string][]uint64{}
	for i, v := range values {
		want[v] = append(want[v], uint64(i))
	}
	if m.Count != h.Count || m.Keys != uint64(len(want)) || m.Column != col || m.Name != h.Fields[col] || m.Generation != h.Generation {
		t.Fatalf("meta %+v; want count %d, %d keys, column %d %q", m, h.Count, len(want), col, h.Fields[col])
	}
	x, err := schema.OpenLookup(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if probe == nil {
		for v := range want {
			probe = append(probe, v)
		}
	}
	for _, v := range append(probe, "no such value") {
		p, ok, err := x.Find([]byte(v))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if want[v] != nil {
				t.Fatalf("%q not found; the scan finds %d records", v, len(want[v]))
			}
			continue
		}
		got := make([]uint64, p.Len())
		if _, err := p.Read(got, 0); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want[v]) {
			t.Fatalf("%q: index %v, scan %v", v, got, want[v])
		}
	}
	return b
}

func TestProductsIndexesAnswerAsAScanDoes(t *testing.T) {
	dir, h := writeGeneration(t, sample.Fields, 3000, sample.Record)
	handle, sku, title := 0, slices.Index(sample.Fields, "Variant SKU"), 1
	build(t, dir, h, 0, handle, sku, title)
	for _, col := range []int{handle, sku, title} {
		check(t, dir, h, col, nil)
	}
}

// ordersFields is the shape of a Shopify order export: one row per line
// item, the order's columns repeated or left empty.
var ordersFields = []string{"Name", "Email", "Financial Status", "Lineitem name", "Lineitem sku", "Notes", "limit", "Billing (Name)"}

func orderRecord(dst []byte, i int) []byte {
	enc, _ := schema.NewRecordEncoder(ordersFields)
	order := i / 4
	v := []string{fmt.Sprintf("#%d", 1000+order), fmt.Sprintf("customer%d@example.com", order%37), "paid",
		[]string{"Linen Apron", "Café au lait \"bowl\"", "北欧 mug", "Tee\nshirt"}[i%4], fmt.Sprintf("FH-%04d-%d", order%50, i%4),
		"", fmt.Sprint(i % 3), "Jane \\ O'Brien"}
	if i%4 != 0 {
		v[1], v[2], v[7] = "", "", "" // line items after the first leave the order's columns empty
	}
	if i%11 == 0 {
		v[5] = "gift \u2028 wrap ✓"
	}
	out, err := enc.Append(dst, v)
	if err != nil {
		panic(err)
	}
	return out
}

func TestOrdersIndexesAnswerAsAScanDoes(t *testing.T) {
	dir, h := writeGeneration(t, ordersFields, 2000, orderRecord)
	cols := []int{0, 1, 3, 4, 5, 6, 7}
	build(t, dir, h, 0, cols...)
	for _, col := range cols {
		check(t, dir, h, col, nil)
	}
}

// The runs and their merge give the same bytes as one sort in memory:
// the index depends on the values alone.
func TestTheBytesDoNotDependOnTheMemoryBudget(t *testing.T) {
	dir, h := writeGeneration(t, ordersFields, 20000, orderRecord)
	path := filepath.Join(dir, schema.LookupFile(h.Generation, 1))
	var files [][]byte
	for _, budget := range []int{0, 1, 100 << 10} { // 1 byte: runs of the 1024-entry floor
		build(t, dir, h, budget, 1, 4)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
		check(t, dir, h, 4, nil)
	}
	for i := 1; i < len(files); i++ {
		if !bytes.Equal(files[0], files[i]) {
			t.Fatalf("budget %d wrote other bytes", i)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if _, _, ok := schema.LookupFileOf(e.Name()); !ok {
			if _, ok := schema.GenerationOf(e.Name()); !ok {
				t.Errorf("left behind: %s", e.Name())
			}
		}
	}
}

func TestAnEmptyGenerationHasAnEmptyIndex(t *testing.T) {
	dir, h := writeGeneration(t, ordersFields, 0, orderRecord)
	build(t, dir, h, 0, 0)
	check(t, dir, h, 0, nil)
}

func TestAMillionRows(t *testing.T) {
	if testing.Short() {
		t.Skip("a million rows")
	}
	const n = 1_000_000
	dir, h := writeGeneration(t, ordersFields, n, orderRecord)
	build(t, dir, h, 1<<20, 0, 4)
	// Every order name and SKU, against the scan.
	check(t, dir, h, 0, nil)
	check(t, dir, h, 4, nil)
}

func TestBuildStopsWithItsContext(t *testing.T) {
	dir, h := writeGeneration(t, ordersFields, 100, orderRecord)
	data, _ := os.Open(filepath.Join(dir, schema.DataFile(h.Generation)))
	defer data.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Build(ctx, Config{FS: disk.OS{}, Dir: dir}, Source{Header: h, Data: data}, []int{0}); err == nil {
		t.Fatal("Build with a cancelled context succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, schema.LookupFile(h.Generation, 0))); !os.IsNotExist(err) {
		t.Fatalf("an index was left: %v", err)
	}
}

// Build's memory is its budget's buffers, whatever the number of rows:
// the bytes it allocates in all are bounded by a few budgets.
func TestBuildAllocatesItsBudgetNotItsRows(t *testing.T) {
	if testing.Short() {
		t.Skip("200 000 rows")
	}
	const budget = 1 << 20
	sku := slices.Index(sample.Fields, "Variant SKU")
	dir, h := writeGeneration(t, sample.Fields, 200_000, sample.Record)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	build(t, dir, h, budget, 0, sku)
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 4*budget+2<<20 {
		t.Fatalf("Build allocated %d bytes for %d rows with a budget of %d", got, h.Count, budget)
	}
}

func BenchmarkBuildVariantSKU(b *testing.B) {
	dir, h := writeGeneration(b, sample.Fields, 100_000, sample.Record)
	sku := slices.Index(sample.Fields, "Variant SKU")
	b.ResetTimer()
	for b.Loop() {
		build(b, dir, h, 0, sku)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(h.Count), "ns/row")
}
