package ingester

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
)

// BenchmarkIngest publishes a generated Shopify-like products CSV (about
// 1 KB a row as JSON) into an embedded JetStream server, one whole sync per
// iteration. ROWPIPE_BENCH_ROWS sets the rows per file (default 20000),
// ROWPIPE_BENCH_WINDOW the publish window (default 256).
// Reported: rows/s, and MB/s of CSV read (b.SetBytes).
//
//	go test -run '^$' -bench Ingest -benchmem ./ingester/
func BenchmarkIngest(b *testing.B) {
	rows := 20000
	if s := os.Getenv("ROWPIPE_BENCH_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("ROWPIPE_BENCH_ROWS=%q: want a positive number", s)
		}
		rows = n
	}
	e := newEnv(b)
	csv := productsCSV(rows)
	path := writeFile(b, "products.csv", csv)
	b.SetBytes(int64(len(csv)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		cfg := e.config("bench", path)
		cfg.Dataset = fmt.Sprintf("bench-%d", i)
		if w := os.Getenv("ROWPIPE_BENCH_WINDOW"); w != "" {
			cfg.PublishWindow, _ = strconv.Atoi(w)
		}
		res, err := Run(context.Background(), cfg, e.nc, nil, nil, nil)
		if res.Retries > 0 {
			b.Logf("%d retries", res.Retries)
		}
		if err != nil {
			b.Fatal(err)
		}
		if res.Rows != uint64(rows) {
			b.Fatalf("%d rows published, want %d", res.Rows, rows)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rows*b.N), "ns/row")
}
