package building

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/datadirtest"
)

func TestFindReportsTheGenerationBeingBuilt(t *testing.T) {
	dir := t.TempDir()
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "ds", Generation: 4, Rows: 10})
	datadirtest.Write(t, dir, datadirtest.Gen{Dataset: "ds", Generation: 2, Rows: 3}) // older: not a sync in progress
	h := datadirtest.Write(t, dir, datadirtest.Gen{Dataset: "ds", Generation: 9, Rows: 6, State: schema.StateBuilding})
	p, err := Find(filepath.Join(dir, "ds"), 4)
	if err != nil {
		t.Fatal(err)
	}
	if p == nil || p.Generation != 9 || p.Count != 6 || p.Sync != h.Sync || !p.UpdatedAt.Equal(h.UpdatedAt) || p.Source.Name != h.Source.Name {
		t.Errorf("Find = %+v, want generation 9 with 6 rows so far", p)
	}
}

func TestFindReportsNothingWithoutASyncInProgress(t *testing.T) {
	dir := t.TempDir()
	datadirtest.Publish(t, dir, datadirtest.Gen{Dataset: "ds", Generation: 4, Rows: 10})
	if p, err := Find(filepath.Join(dir, "ds"), 4); p != nil || err != nil {
		t.Errorf("only the current generation: %+v, %v", p, err)
	}
	// Complete but not current yet: the commit is under way, nothing to show.
	datadirtest.Write(t, dir, datadirtest.Gen{Dataset: "ds", Generation: 8, Rows: 2})
	if p, err := Find(filepath.Join(dir, "ds"), 4); p != nil || err != nil {
		t.Errorf("a complete newer generation: %+v, %v", p, err)
	}
	// An older building file (a leftover) is not newer than the current one.
	datadirtest.Write(t, dir, datadirtest.Gen{Dataset: "ds", Generation: 3, Rows: 2, State: schema.StateBuilding})
	if p, err := Find(filepath.Join(dir, "ds"), 8); p != nil || err != nil {
		t.Errorf("an older building generation: %+v, %v", p, err)
	}
}

func TestFindSaysWhenAHeaderIsUnreadable(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, schema.DataFile(5)), []byte("not a header\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Find(dir, 1); err == nil {
		t.Error("no error for a damaged header")
	}
}
