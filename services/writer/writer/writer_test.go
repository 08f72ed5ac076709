package writer

import (
	"slices"
	"strings"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

func TestReplaceSyncWritesExactlyTheRowsInOrder(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s := e.sync("products", schema.ModeReplace)
	g := s.begin()
	s.rows(1, 250)
	s.reject(7)
	s.reject(19)
	endSeq := s.end(250, 2)
	w.waitApplied(endSeq)

	if cur := current(t, dir, "products"); cur != g {
		t.Fatalf("CURRENT = %d, want the begin's sequence %d", cur, g)
	}
	got := readGen(t, dir, "products", g)
	h := got.hdr
	if h.State != schema.StateComplete || h.Count != 250 || h.Rejected != 2 || h.Generation != g || h.Sync != s.id ||
		h.Mode != schema.ModeReplace || h.Dataset != "products" || h.LastSeq != endSeq || !slices.Equal(h.Fields, testFields) {
		t.Errorf("header = %+v", h)
	}
	if h.Source.SHA256 == "" || h.Source.Size != 1234 {
		t.Errorf("source = %+v, want the end's", h.Source)
	}
	if !h.CreatedAt.Equal(e.msgTime(g)) || !h.UpdatedAt.Equal(e.msgTime(endSeq)) {
		t.Errorf("times %v / %v, want the begin's and the end's stream timestamps", h.CreatedAt, h.UpdatedAt)
	}
	for i, rec := range got.records {
		if want := s.record(uint64(i + 1)); string(rec) != string(want) {
			t.Fatalf("record %d = %s, want %s", i, rec, want)
		}
	}
	if len(got.rejects) != 2 {
		t.Errorf("rejects = %q", got.rejects)
	}
	st := e.state("products")
	if st.Last == nil || st.Last.Outcome != schema.OutcomeCommitted || st.Last.Sync != s.id || st.Last.Generation != g || st.Last.Rows != 250 {
		t.Errorf("state.Last = %+v", st.Last)
	}
	if st.Current == nil || st.Current.Generation != g || st.Current.SHA256 != h.Source.SHA256 || st.Building != nil || st.Seq != endSeq {
		t.Errorf("state = %+v", st)
	}
}

func TestResumedSyncHasNoDuplicates(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s := e.sync("products", schema.ModeReplace)
	g := s.begin()
	s.rows(1, 60)
	s.reject(3)
	s.begin() // the ingester resumed: same sync id, everything again
	s.rows(1, 100)
	s.reject(3)
	s.reject(90)
	endSeq := s.end(100, 2)
	w.waitApplied(endSeq)

	if cur := current(t, dir, "products"); cur != g {
		t.Fatalf("CURRENT = %d, want the first begin's %d", cur, g)
	}
	got := readGen(t, dir, "products", g)
	if len(got.records) != 100 || len(got.rejects) != 2 {
		t.Fatalf("%d records, %d rejects; want 100 and 2", len(got.records), len(got.rejects))
	}
	for i, rec := range got.records {
		if string(rec) != string(s.record(uint64(i+1))) {
			t.Fatalf("record %d is not row %d", i, i+1)
		}
	}
	if n := counter(t, w.w.m.Duplicates.WithLabelValues("products")); n != 60 {
		t.Errorf("duplicate_rows_total = %v, want 60", n)
	}
}

func TestGapFailsTheSyncAndKeepsThePrevious(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s1 := e.sync("products", schema.ModeReplace)
	g1 := s1.begin()
	s1.rows(1, 5)
	w.waitApplied(s1.end(5, 0))

	s2 := e.sync("products", schema.ModeReplace)
	g2 := s2.begin()
	s2.rows(1, 3)
	s2.row(5) // row 4 never came
	s2.row(6)
	last := s2.end(6, 0)
	w.waitApplied(last)

	if cur := current(t, dir, "products"); cur != g1 {
		t.Fatalf("CURRENT = %d, want the previous generation %d", cur, g1)
	}
	if gens := generations(t, dir, "products"); !slices.Equal(gens, []uint64{g1}) {
		t.Errorf("generations on disk %v, want only %d (the failed %d is removed)", gens, g1, g2)
	}
	st := e.state("products")
	if st.Last == nil || st.Last.Sync != s2.id || st.Last.Outcome != schema.OutcomeFailed {
		t.Fatalf("state.Last = %+v, want failed for %s", st.Last, s2.id)
	}
	if st.Current == nil || st.Current.Generation != g1 || st.Building != nil {
		t.Errorf("state = %+v", st)
	}
}

func TestCountMismatchAtEndFailsTheSync(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s := e.sync("products", schema.ModeReplace)
	s.begin()
	s.rows(1, 4)
	w.waitApplied(s.end(5, 0))
	if st := e.state("products"); st.Last == nil || st.Last.Outcome != schema.OutcomeFailed {
		t.Fatalf("state.Last = %+v, want failed", st.Last)
	}
	if gens := generations(t, dir, "products"); len(gens) != 0 {
		t.Errorf("generations on disk %v, want none", gens)
	}
}

func TestAbortKeepsTheCurrentGeneration(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s1 := e.sync("products", schema.ModeReplace)
	g1 := s1.begin()
	s1.rows(1, 10)
	w.waitApplied(s1.end(10, 0))
	before := snapshot(t, dir)

	s2 := e.sync("products", schema.ModeReplace)
	s2.begin()
	s2.rows(1, 10)
	s2.reject(4)
	w.waitApplied(s2.abort(schema.AbortStrict))

	sameFiles(t, before, snapshot(t, dir))
	if cur := current(t, dir, "products"); cur != g1 {
		t.Fatalf("CURRENT = %d, want %d", cur, g1)
	}
	st := e.state("products")
	if st.Last == nil || st.Last.Sync != s2.id || st.Last.Outcome != schema.OutcomeAborted || st.Last.Rows != 10 {
		t.Errorf("state.Last = %+v", st.Last)
	}
}

func TestNewBeginDiscardsTheHalfBuiltGeneration(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s1 := e.sync("products", schema.ModeReplace)
	g1 := s1.begin()
	s1.rows(1, 20)
	s2 := e.sync("products", schema.ModeReplace)
	g2 := s2.begin()
	w.waitApplied(g2)
	if st := e.state("products"); st.Last == nil || st.Last.Sync != s1.id || st.Last.Outcome != schema.OutcomeDiscarded ||
		st.Building == nil || st.Building.Sync != s2.id {
		t.Fatalf("after the second begin, state = %+v / last %+v", st, st.Last)
	}
	s1.rows(21, 25) // late rows of the discarded sync: dropped
	s2.rows(1, 7)
	w.waitApplied(s2.end(7, 0))

	if gens := generations(t, dir, "products"); !slices.Equal(gens, []uint64{g2}) {
		t.Fatalf("generations %v, want [%d] (%d discarded)", gens, g2, g1)
	}
	if got := readGen(t, dir, "products", g2); len(got.records) != 7 || string(got.records[0]) != string(s2.record(1)) {
		t.Errorf("generation %d holds %d records", g2, len(got.records))
	}
}

func TestAppendGrowsOneGenerationAndRollsBackOnAbort(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)

	// The first append of a dataset makes its generation.
	a1 := e.sync("orders", schema.ModeAppend)
	g := a1.begin()
	a1.rows(1, 4)
	w.waitApplied(a1.end(4, 0))
	if cur := current(t, dir, "orders"); cur != g {
		t.Fatalf("CURRENT = %d, want %d", cur, g)
	}

	a2 := e.sync("orders", schema.ModeAppend)
	a2.begin()
	a2.rows(1, 6)
	a2.reject(2)
	end2 := a2.end(6, 1)
	w.waitApplied(end2)
	got := readGen(t, dir, "orders", g)
	if got.hdr.Count != 10 || got.hdr.Sync != a2.id || got.hdr.State != schema.StateComplete || got.hdr.LastSeq != end2 || got.hdr.Rejected != 1 {
		t.Fatalf("after the second append: header %+v", got.hdr)
	}
	want := append(slices.Clone(got.records[:4]), got.records[4:]...)
	for i := range 4 {
		if string(got.records[i]) != string(a1.record(uint64(i+1))) {
			t.Fatalf("record %d is not the first append's", i)
		}
	}
	before := snapshot(t, dir)

	a3 := e.sync("orders", schema.ModeAppend)
	a3.begin()
	a3.rows(1, 50)
	a3.reject(9)
	abortSeq := a3.abort(schema.AbortInterrupted)
	w.waitApplied(abortSeq)

	after := readGen(t, dir, "orders", g)
	if after.hdr.Count != 10 || after.hdr.Sync != a2.id || after.hdr.Rejected != 1 || after.hdr.LastSeq != abortSeq || !after.hdr.UpdatedAt.Equal(got.hdr.UpdatedAt) {
		t.Fatalf("after the aborted append: header %+v", after.hdr)
	}
	for i := range want {
		if string(after.records[i]) != string(want[i]) {
			t.Fatalf("record %d changed", i)
		}
	}
	// Byte for byte the same records, index and rejects; only the header's
	// last_seq moved to the abort.
	now := snapshot(t, dir)
	for name, b := range before {
		if name == "orders/"+schema.DataFile(g) {
			b, now[name] = b[got.hdr.Size:], now[name][got.hdr.Size:]
		}
		if string(b) != string(now[name]) {
			t.Errorf("%s changed", name)
		}
	}
	st := e.state("orders")
	if st.Last == nil || st.Last.Sync != a3.id || st.Last.Outcome != schema.OutcomeAborted || st.Current.Count != 10 {
		t.Errorf("state = %+v last %+v", st, st.Last)
	}
}

func TestAppendWithOtherFieldsIsRefused(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	a1 := e.sync("orders", schema.ModeAppend)
	g := a1.begin()
	a1.rows(1, 2)
	w.waitApplied(a1.end(2, 0))
	a2 := e.sync("orders", schema.ModeAppend)
	a2.fields = []string{"Other", "Fields"}
	a2.begin()
	a2.rows(1, 3) // not of this generation's shape, and the sync is refused anyway
	w.waitApplied(a2.end(3, 0))
	if got := readGen(t, dir, "orders", g); got.hdr.Count != 2 {
		t.Fatalf("count %d, want 2", got.hdr.Count)
	}
	if st := e.state("orders"); st.Last == nil || st.Last.Sync != a2.id || st.Last.Outcome != schema.OutcomeFailed {
		t.Fatalf("state.Last = %+v", st.Last)
	}
}

func TestEachAppendKeepsItsOwnRejects(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	a1 := e.sync("orders", schema.ModeAppend)
	g := a1.begin()
	a1.rows(1, 3)
	a1.reject(5)
	a1.reject(9)
	a1.end(3, 2)
	a2 := e.sync("orders", schema.ModeAppend)
	a2.begin()
	a2.reject(2) // a new file: its lines start over
	a2.reject(3)
	a2.reject(3) // repeated: dropped
	a2.rows(1, 2)
	w.waitApplied(a2.end(2, 2))
	got := readGen(t, dir, "orders", g)
	if got.hdr.Count != 5 || got.hdr.Rejected != 4 || len(got.rejects) != 4 {
		t.Fatalf("count %d, rejected %d, rejects %q", got.hdr.Count, got.hdr.Rejected, got.rejects)
	}
	if st := e.state("orders"); st.Last == nil || st.Last.Rejected != 2 || st.Last.Rows != 2 {
		t.Fatalf("state.Last = %+v", st.Last)
	}
}

func TestASourceNameTooLongForTheHeaderStillCommits(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s := e.sync("products", schema.ModeReplace)
	g := s.begin()
	s.rows(1, 2)
	long := schema.End{Rows: 2, Source: schema.Source{Name: "https://example.com/" + strings.Repeat("x", 5000), Size: 1 << 40, SHA256: strings.Repeat("a", 64)}}
	w.waitApplied(e.send("products", schema.Envelope{Event: schema.EventEnd, Sync: s.id}, mustJSON(long)))
	got := readGen(t, dir, "products", g)
	if got.hdr.State != schema.StateComplete || got.hdr.Source.SHA256 != long.Source.SHA256 || got.hdr.Source.Name != "products.csv" {
		t.Fatalf("header %+v", got.hdr)
	}
	if cur := current(t, dir, "products"); cur != g {
		t.Fatalf("CURRENT = %d", cur)
	}
}

func TestLateCopiesOfAFinishedSyncChangeNothing(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s := e.sync("products", schema.ModeReplace)
	g := s.begin()
	s.rows(1, 5)
	w.waitApplied(s.end(5, 0))
	before := snapshot(t, dir)
	s.rows(4, 5)
	s.end(5, 0)
	w.waitApplied(s.begin())
	sameFiles(t, before, snapshot(t, dir))
	if st := e.state("products"); st.Last == nil || st.Last.Outcome != schema.OutcomeCommitted || st.Current.Generation != g || st.Building != nil {
		t.Fatalf("state after the copies: %+v / %+v", st, st.Last)
	}
	for _, reason := range []string{"outside_sync", "bad_begin"} {
		if n := counter(t, w.w.m.Hostile.WithLabelValues(reason)); n != 0 {
			t.Errorf("hostile_messages_total{reason=%q} = %v", reason, n)
		}
	}
}
