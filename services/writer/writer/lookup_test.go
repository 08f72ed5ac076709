package writer

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
)

// checkLookups checks that generation g of ds has a lookup index of each
// field, covering its header's count, that answers every value as a scan
// of the generation's records does.
func checkLookups(t *testing.T, dir, ds string, g uint64, fields ...string) {
	t.Helper()
	gn := readGen(t, dir, ds, g)
	for _, field := range fields {
		col := slices.Index(gn.hdr.Fields, field)
		b, err := os.ReadFile(filepath.Join(dir, ds, schema.LookupFile(g, col)))
		if err != nil {
			t.Fatalf("generation %d: %v", g, err)
		}
		m, err := schema.VerifyLookup(bytes.NewReader(b), int64(len(b)))
		if err != nil || m.Count != gn.hdr.Count {
			t.Fatalf("index of %s: %+v, %v; want %d records", field, m, err, gn.hdr.Count)
		}
		want := map[string][]uint64{}
		for i, rec := range gn.records {
			var v map[string]string
			if err := json.Unmarshal(rec, &v); err != nil {
				t.Fatal(err)
			}
			want[v[field]] = append(want[v[field]], uint64(i))
		}
		x, _ := schema.OpenLookup(bytes.NewReader(b), int64(len(b)))
		for value, recs := range want {
			p, ok, err := x.Find([]byte(value))
			got := make([]uint64, p.Len())
			if ok {
				_, err = p.Read(got, 0)
			}
			if err != nil || !slices.Equal(got, recs) {
				t.Fatalf("%s = %q: %v, %v; the scan finds %v", field, value, got, err, recs)
			}
		}
	}
}

func lookupFiles(t *testing.T, dir, ds string) []string {
	entries, err := os.ReadDir(filepath.Join(dir, ds))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.Contains(e.Name(), ".lookup-") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestAGenerationIsCurrentWithItsIndexesAndAnAppendRebuildsThem(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s := e.sync("products", schema.ModeReplace)
	s.index = []string{"Variant Price", "Handle"}
	s.begin()
	s.rows(1, 300)
	w.waitApplied(s.end(300, 0))
	g := current(t, dir, "products")
	checkLookups(t, dir, "products", g, "Handle", "Variant Price")

	a := e.sync("products", schema.ModeAppend)
	a.index = []string{"Title"} // and the two it has
	a.begin()
	a.rows(1, 40)
	w.waitApplied(a.end(40, 0))
	checkLookups(t, dir, "products", g, "Handle", "Variant Price", "Title")

	// A replace that is aborted leaves no index behind; the next one
	// replaces the generation and its indexes go with it.
	b := e.sync("products", schema.ModeReplace)
	b.index = []string{"Handle"}
	b.begin()
	b.rows(1, 5)
	w.waitApplied(b.abort(schema.AbortFailed))
	c := e.sync("products", schema.ModeReplace)
	c.index = []string{"Handle"}
	c.begin()
	c.rows(1, 7)
	w.waitApplied(c.end(7, 0))
	g2 := current(t, dir, "products")
	checkLookups(t, dir, "products", g2, "Handle")
	w.close()
	got := lookupFiles(t, dir, "products")
	for _, name := range got {
		if gen, _, ok := schema.LookupFileOf(name); !ok || gen != g && gen != g2 {
			t.Errorf("left behind: %s (generations %d and %d are kept)", name, g, g2)
		}
	}
}

func TestRebuildWritesTheSameIndexes(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s := e.sync("products", schema.ModeReplace)
	s.index = []string{"Handle", "Vendor"}
	s.begin()
	s.rows(1, 120)
	last := s.end(120, 0)
	w.waitApplied(last)
	w.close()
	want := snapshot(t, dir)
	if len(lookupFiles(t, dir, "products")) != 2 {
		t.Fatalf("lookup files: %v", lookupFiles(t, dir, "products"))
	}
	w2 := e.startWriter(dir, func(c *Config, _ *[]Option) { c.Rebuild = true })
	w2.waitApplied(last)
	w2.close()
	sameFiles(t, want, snapshot(t, dir))
}

func TestABeginIndexingAFieldItDoesNotHaveIsRefused(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s := e.sync("products", schema.ModeReplace)
	s.index = []string{"Variant SKU"}
	w.waitApplied(s.begin())
	if _, err := os.Stat(filepath.Join(dir, "products", schema.DataFile(1))); err == nil {
		t.Fatal("a generation was created for a refused begin")
	}
}

// An index that cannot be written (a full disk) holds the commit back:
// the previous generation stays current until the index is complete.
func TestAGenerationIsNotCurrentUntilItsIndexesAreWritten(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	f := disk.NewFaulty(disk.OS{})
	w := e.startWriter(dir, func(_ *Config, o *[]Option) { *o = append(*o, withFS(f)) })
	s1 := e.sync("products", schema.ModeReplace)
	g1 := s1.begin()
	s1.rows(1, 10)
	w.waitApplied(s1.end(10, 0))

	f.Hook(func(op, name string, _ int64) error {
		if op == "write" && strings.Contains(filepath.Base(name), ".lookup-") {
			return syscall.ENOSPC
		}
		return nil
	})
	s2 := e.sync("products", schema.ModeReplace)
	s2.index = []string{"Handle"}
	g2 := s2.begin()
	s2.rows(1, 10)
	end := s2.end(10, 0)
	waitFor(t, "the failing index build", func() bool { return w.w.Healthy() != nil })
	if cur := current(t, dir, "products"); cur != g1 {
		t.Fatalf("CURRENT = %d while the index cannot be written, want %d", cur, g1)
	}
	f.Hook(nil)
	w.waitApplied(end)
	if cur := current(t, dir, "products"); cur != g2 {
		t.Fatalf("CURRENT = %d, want %d", cur, g2)
	}
	checkLookups(t, dir, "products", g2, "Handle")
}
