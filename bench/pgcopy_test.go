package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestCopyBaseline loads a generated CSV with COPY in a throwaway cluster
// and checks the row count; it is skipped where PostgreSQL is absent.
func TestCopyBaseline(t *testing.T) {
	if _, err := pgBinDir(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "products.csv")
	if err := writeCSVFile(path, "products", 1000, 7); err != nil {
		t.Fatal(err)
	}
	c, err := startPG(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.stop()
	r, err := c.copyCSV(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.psql(ctx, "SELECT count(*) FROM t")
	if err != nil || n != "1000" {
		t.Fatalf("COPY loaded %q rows (%v), want 1000", n, err)
	}
	t.Logf("COPY of 1000 rows: %s, %d bytes", r.elapsed, r.diskBytes)
}
