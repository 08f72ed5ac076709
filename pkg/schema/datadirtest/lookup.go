package datadirtest

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// WriteLookup writes the lookup index of field of g (written by Write)
// with schema.LookupWriter, the keys sorted in memory: the same bytes as
// the writer's bounded build (services/writer/internal/lookup), whose
// tests show that its runs and merge do not change them.
func WriteLookup(tb testing.TB, dataDir string, g Gen, field string) {
	tb.Helper()
	g.defaults()
	col := slices.Index(g.Fields, field)
	if col < 0 {
		tb.Fatalf("no field %q", field)
	}
	type entry struct {
		key schema.LookupKey
		rec uint64
	}
	entries := make([]entry, g.Rows)
	vals := make([]string, len(g.Fields))
	for i := range entries {
		g.Row(i, vals)
		entries[i] = entry{schema.LookupKeyOf([]byte(vals[col])), uint64(i)}
	}
	slices.SortStableFunc(entries, func(a, b entry) int { return a.key.Compare(&b.key) })
	path := filepath.Join(dataDir, g.Dataset, schema.LookupFile(g.Generation, col))
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	w, err := schema.NewLookupWriter(f, g.Generation, uint64(g.Rows), col, field)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		must(tb, w.Add(e.key, e.rec))
	}
	_, err = w.Close()
	must(tb, err)
}
