package writer

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/checkpoint"
	"github.com/rowpipe/rowpipe/services/writer/internal/dataset"
)

// TestACrashAfterAFramingMessageFinishesIt covers the window between a
// framing message's effects on the files and the record of it: the
// writer's state file and checkpoint are put back to what they were before
// the message, as a kill -9 at that instant would leave them, and the
// restarted writer must apply the message again to the same files, and
// publish its outcome.
func TestACrashAfterAFramingMessageFinishesIt(t *testing.T) {
	type step func(e *env, s []*syncPub) uint64
	cases := []struct {
		name            string
		before, framing step
	}{
		{"replace end", func(e *env, s []*syncPub) uint64 { s[0].begin(); return s[0].rows(1, 20) },
			func(e *env, s []*syncPub) uint64 { return s[0].end(20, 0) }},
		{"replace abort", func(e *env, s []*syncPub) uint64 { s[0].begin(); return s[0].rows(1, 20) },
			func(e *env, s []*syncPub) uint64 { return s[0].abort(schema.AbortStrict) }},
		{"begin discarding a half-built sync", func(e *env, s []*syncPub) uint64 { s[0].begin(); return s[0].rows(1, 20) },
			func(e *env, s []*syncPub) uint64 { return s[1].begin() }},
		{"gap", func(e *env, s []*syncPub) uint64 { s[0].begin(); return s[0].rows(1, 20) },
			func(e *env, s []*syncPub) uint64 { return s[0].row(22) }},
		{"first append", func(e *env, s []*syncPub) uint64 { return e.publish("rows.other", nil, []byte("x")) },
			func(e *env, s []*syncPub) uint64 { return s[2].begin() }},
		{"append end", func(e *env, s []*syncPub) uint64 { s[2].begin(); return s[2].rows(1, 5) },
			func(e *env, s []*syncPub) uint64 { return s[2].end(5, 0) }},
		{"append abort", func(e *env, s []*syncPub) uint64 {
			s[2].begin()
			s[2].rows(1, 5)
			s[2].end(5, 0)
			s[3].begin()
			return s[3].rows(1, 7)
		}, func(e *env, s []*syncPub) uint64 { return s[3].abort(schema.AbortInterrupted) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			dir := t.TempDir()
			syncs := []*syncPub{e.sync("products", schema.ModeReplace), e.sync("products", schema.ModeReplace),
				e.sync("products", schema.ModeAppend), e.sync("products", schema.ModeAppend)}
			w := e.startWriter(dir)
			w.waitApplied(c.before(e, syncs))
			w.close()
			saved := map[string][]byte{}
			for _, name := range []string{checkpoint.File, filepath.Join(dataset.StateDir, "products.json")} {
				if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
					saved[name] = b
				}
			}
			w = e.startWriter(dir)
			last := c.framing(e, syncs)
			w.waitApplied(last)
			w.close()
			for name, b := range saved { // the crash: the record of the message is lost
				os.WriteFile(filepath.Join(dir, name), b, 0o644)
			}
			kv, err := e.js.KeyValue(context.Background(), schema.StateBucket(schema.DefaultStream))
			if err != nil {
				t.Fatal(err)
			}
			if err := kv.Purge(context.Background(), "products"); err != nil { // ... and its publication
				t.Fatal(err)
			}
			w = e.startWriter(dir)
			w.waitApplied(last)
			got := e.state("products")
			if got.Seq != last {
				t.Fatalf("state after the restart: %+v, want the state of sequence %d", got, last)
			}
			// And it goes on normally.
			s := e.sync("products", schema.ModeReplace)
			s.begin()
			s.rows(1, 3)
			last = s.end(3, 0)
			w.waitApplied(last)
			w.close()

			clean := t.TempDir()
			w2 := e.startWriter(clean)
			w2.waitApplied(last)
			w2.close()
			sameFiles(t, snapshot(t, clean), rebuildable(t, dir, snapshot(t, dir)))
		})
	}
}

func TestALostStateFileIsRebuiltFromTheFiles(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	w := e.startWriter(dir)
	s1 := e.sync("products", schema.ModeReplace)
	s1.begin()
	s1.rows(1, 10)
	s1.end(10, 0)
	s2 := e.sync("products", schema.ModeReplace)
	g2 := s2.begin()
	w.waitApplied(s2.rows(1, 7))
	w.close()
	if err := os.Remove(dataset.StatePath(dir, "products")); err != nil {
		t.Fatal(err)
	}
	w = e.startWriter(dir)
	s2.rows(5, 12)
	last := s2.end(12, 0)
	w.waitApplied(last)
	w.close()
	if cur := current(t, dir, "products"); cur != g2 {
		t.Fatalf("CURRENT = %d, want %d", cur, g2)
	}
	clean := t.TempDir()
	w2 := e.startWriter(clean)
	w2.waitApplied(last)
	w2.close()
	sameFiles(t, snapshot(t, clean), rebuildable(t, dir, snapshot(t, dir)))
}
