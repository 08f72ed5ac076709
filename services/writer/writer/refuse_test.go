package writer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// TestMaxDatasetsRefusesOneMore: with MAX_DATASETS=2, a begin for a third
// dataset is refused and counted, leaves no folder, and the datasets held
// go on; after a restart the bound still holds.
func TestMaxDatasetsRefusesOneMore(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	two := func(c *Config, _ *[]Option) { c.MaxDatasets = 2 }
	w := e.startWriter(dir, two)
	for _, ds := range []string{"products", "orders"} {
		s := e.sync(ds, schema.ModeAppend)
		s.begin()
		s.rows(1, 2)
		s.end(2, 0)
	}
	third := e.sync("third", schema.ModeAppend)
	third.begin()
	third.rows(1, 2)
	w.waitApplied(third.end(2, 0))
	if _, err := os.Stat(filepath.Join(dir, "third")); !os.IsNotExist(err) {
		t.Fatalf("a folder for the dataset past MAX_DATASETS: %v", err)
	}
	if n := counter(t, w.w.m.Hostile.WithLabelValues(schema.ReasonTooManyDatasets)); n != 1 {
		t.Fatalf("too_many_datasets = %v, want 1 (its rows and end are outside_sync)", n)
	}
	s := e.sync("orders", schema.ModeReplace)
	s.begin()
	s.rows(1, 3)
	last := s.end(3, 0)
	w.waitApplied(last)
	if got := readGen(t, dir, "orders", current(t, dir, "orders")); got.hdr.Count != 3 {
		t.Fatalf("orders: %d records after the refusal, want 3", got.hdr.Count)
	}
	w.close()

	w = e.startWriter(dir, two)
	again := e.sync("fourth", schema.ModeReplace)
	w.waitApplied(again.begin())
	if n := counter(t, w.w.m.Hostile.WithLabelValues(schema.ReasonTooManyDatasets)); n != 1 {
		t.Fatalf("after a restart: too_many_datasets = %v, want 1", n)
	}
}

// TestARefusedBeginCreatesNoDataset: a begin the writer refuses for a
// dataset it does not hold yet takes no place among MAX_DATASETS.
func TestARefusedBeginCreatesNoDataset(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir, func(c *Config, _ *[]Option) { c.MaxDatasets = 1 })
	bad := schema.Begin{Version: schema.EnvelopeVersion, Dataset: "other", Sync: "1111111111111111", Mode: schema.ModeReplace, Fields: []string{"a"}}
	e.send("wrong", schema.Envelope{Event: schema.EventBegin, Sync: bad.Sync}, mustJSON(bad)) // dataset differs from the subject's
	bad.Dataset, bad.Fields = "huge", []string{strings.Repeat("<", 1000), strings.Repeat("<", 999)}
	bad.Source.SHA256 = strings.Repeat("0", 100<<10)
	e.send("huge", schema.Envelope{Event: schema.EventBegin, Sync: bad.Sync}, mustJSON(bad))
	s := e.sync("products", schema.ModeReplace)
	s.begin()
	s.rows(1, 2)
	w.waitApplied(s.end(2, 0))
	if got := readGen(t, dir, "products", current(t, dir, "products")); got.hdr.Count != 2 {
		t.Fatalf("%d records", got.hdr.Count)
	}
	if n := counter(t, w.w.m.Hostile.WithLabelValues(schema.ReasonBadBegin)); n != 2 {
		t.Fatalf("bad_begin = %v, want 2", n)
	}
	for _, ds := range []string{"wrong", "huge"} {
		if _, err := os.Stat(filepath.Join(dir, ds)); !os.IsNotExist(err) {
			t.Errorf("a folder for %s: %v", ds, err)
		}
	}
}

// TestLargeHeadersAreRefused: a message whose headers are larger than
// rowpipe ever sends is refused as oversize, even with a valid envelope.
func TestLargeHeadersAreRefused(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s := e.sync("products", schema.ModeReplace)
	s.begin()
	s.rows(1, 2)
	h := nats.Header(schema.Envelope{Event: schema.EventRow, Sync: s.id, Row: 3}.Headers())
	h.Set("X-Junk", strings.Repeat("j", 60<<10))
	e.publish("rows.products", h, s.record(3))
	s.rows(3, 3)
	w.waitApplied(s.end(3, 0))
	if n := counter(t, w.w.m.Hostile.WithLabelValues(schema.ReasonOversize)); n != 1 {
		t.Fatalf("oversize = %v, want 1", n)
	}
	if got := readGen(t, dir, "products", current(t, dir, "products")); got.hdr.Count != 3 {
		t.Fatalf("%d records", got.hdr.Count)
	}
}
