package dataset

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
	"github.com/rowpipe/rowpipe/services/writer/internal/generation"
)

// errCrash is the failure of every file operation from the crash on.
var errCrash = errors.New("crashed")

// framingCases are the messages whose effects take several file
// operations (a commit, a discard, a roll-back), each after a prelude that
// leaves older generations to prune.
func framingCases() []struct {
	name    string
	prelude func(s *stream) []Msg
	framing func(s *stream) Msg
} {
	twoCommitted := func(s *stream) []Msg {
		return append(s.sync("a1", schema.ModeReplace, 3), s.sync("b2", schema.ModeReplace, 2)...)
	}
	building := func(s *stream) []Msg {
		ms := append(twoCommitted(s), s.begin("c3", schema.ModeReplace))
		return append(ms, s.rows("c3", 1, 4)...)
	}
	appending := func(s *stream) []Msg {
		ms := append(twoCommitted(s), s.begin("c3", schema.ModeAppend))
		return append(ms, s.rows("c3", 1, 4)...)
	}
	return []struct {
		name    string
		prelude func(s *stream) []Msg
		framing func(s *stream) Msg
	}{
		{"replace end", building, func(s *stream) Msg { return s.end("c3", 4, 0) }},
		{"replace abort", building, func(s *stream) Msg { return s.abort("c3", schema.AbortStrict) }},
		{"begin discarding a building sync", building, func(s *stream) Msg { return s.begin("d4", schema.ModeReplace) }},
		{"gap", building, func(s *stream) Msg { return s.row("c3", 9) }},
		{"end of the wrong count", building, func(s *stream) Msg { return s.end("c3", 7, 0) }},
		{"first append", func(s *stream) []Msg { return nil }, func(s *stream) Msg { return s.begin("c3", schema.ModeAppend) }},
		{"append end", appending, func(s *stream) Msg { return s.end("c3", 4, 0) }},
		{"append abort", appending, func(s *stream) Msg { return s.abort("c3", schema.AbortInterrupted) }},
		{"append of other fields", twoCommitted, func(s *stream) Msg {
			return s.msg(schema.EventBegin, "c3", 0, mustJSON(s.beginBody("c3", schema.ModeAppend, []string{"Handle"})))
		}},
	}
}

// TestACrashAtEveryStepOfACommit makes the writer crash before each file
// operation of each framing message in turn (every write, sync, truncate,
// rename and remove fails from that one on, and the dataset is dropped),
// for KEEP_GENERATIONS 1, 2 and 3. Each time the dataset must open again
// from its files, with a state that names only files that exist, and the
// message applied again must give byte for byte the files of a run that
// never crashed.
func TestACrashAtEveryStepOfACommit(t *testing.T) {
	for _, keep := range []int{1, 2, 3} {
		for _, c := range framingCases() {
			t.Run(fmt.Sprintf("keep %d/%s", keep, c.name), func(t *testing.T) {
				s := newStream()
				prelude, framing := c.prelude(s), c.framing(s)
				after := s.sync("e5", schema.ModeReplace, 2)

				// FSYNC=off: a crash before a sync leaves the files a crash
				// before the next write does (nothing here loses unsynced
				// data), and the points come ten times faster.
				clean := newRigPolicy(t, disk.OS{}, keep, generation.SyncOff)
				clean.mustApply(prelude...)
				clean.mustApply(framing)
				clean.mustApply(after...)
				want := snapshot(t, clean.dir)

				for step := 1; ; step++ {
					faulty := disk.NewFaulty(disk.OS{})
					r := newRigPolicy(t, faulty, keep, generation.SyncOff)
					r.mustApply(prelude...)
					ops := 0
					faulty.Hook(func(op, name string, off int64) error {
						if ops++; ops >= step {
							return errCrash
						}
						return nil
					})
					err := r.apply(framing)
					faulty.Hook(nil)
					if ops < step { // the message took fewer operations: all covered
						if err != nil {
							t.Fatal(err)
						}
						if step == 1 {
							t.Fatal("the message did no file operation")
						}
						t.Logf("%d crash points", step-1)
						return
					}
					if err != nil && !errors.Is(err, errCrash) {
						t.Fatalf("crash before operation %d: Apply = %v", step, err)
					}
					// err == nil: the failed operation was one the writer
					// tolerates (removing files); the crash comes right after.
					r.d.Close()
					if err := filesError(r.dir); err != nil {
						t.Fatalf("crash before operation %d: %v", step, err)
					}
					r.open() // the restart: Open and Repair must succeed
					r.mustApply(prelude...)
					r.mustApply(framing)
					r.mustApply(after...)
					got := snapshot(t, r.dir)
					sameSnapshot(t, want, got)
					if t.Failed() {
						t.Fatalf("after a crash before operation %d", step)
					}
					if st := r.fx.last(); st.Seq != after[len(after)-1].Seq {
						t.Fatalf("after a crash before operation %d the state published is of seq %d", step, st.Seq)
					}
				}
			})
		}
	}
}

// TestAFailedRemovalIsRetried: a generation whose files cannot be removed
// when it is pruned stays on the list and goes at the next commit.
func TestAFailedRemovalIsRetried(t *testing.T) {
	faulty := disk.NewFaulty(disk.OS{})
	r := newRig(t, faulty, 1)
	s := newStream()
	r.mustApply(s.sync("a1", schema.ModeReplace, 2)...)
	faulty.Hook(func(op, name string, off int64) error {
		if op == "remove" && strings.Contains(name, "gen-1.") {
			return errCrash
		}
		return nil
	})
	r.mustApply(s.sync("b2", schema.ModeReplace, 2)...)
	faulty.Hook(nil)
	if _, err := r.fs.ReadFile(r.d.files.Dir + "/" + schema.DataFile(1)); err != nil {
		t.Fatalf("the pruned generation is gone although its removal failed: %v", err)
	}
	r.mustApply(s.sync("c3", schema.ModeReplace, 2)...)
	for _, g := range []uint64{1, 5} {
		if _, err := r.fs.ReadFile(r.d.files.Dir + "/" + schema.DataFile(g)); err == nil {
			t.Errorf("generation %d is still on disk with KEEP_GENERATIONS=1", g)
		}
	}
	checkFiles(t, r.dir)
}
