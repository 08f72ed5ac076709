package dataset

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
)

// outcome is what a case expects once its messages are applied.
type outcome struct {
	current  uint64 // the generation CURRENT names (0: none)
	records  int    // records in it
	rejected uint64 // its header's rejected count
	last     string // the outcome published last ("" if none)
	building bool   // a replace sync is open
}

// TestEveryEventKind applies whole scripts of messages, each table row one
// way a sync goes, and checks the files and the published state.
func TestEveryEventKind(t *testing.T) {
	cases := []struct {
		name   string
		script func(s *stream) []Msg
		want   func(s *stream) outcome
	}{
		{"replace sync commits", func(s *stream) []Msg { return s.sync("a1", schema.ModeReplace, 5) },
			func(*stream) outcome { return outcome{current: 1, records: 5, last: schema.OutcomeCommitted} }},
		{"rejects are recorded, never served", func(s *stream) []Msg {
			return []Msg{s.begin("a1", schema.ModeReplace), s.row("a1", 1), s.reject("a1", 3), s.row("a1", 2), s.reject("a1", 5), s.end("a1", 2, 2)}
		}, func(*stream) outcome {
			return outcome{current: 1, records: 2, rejected: 2, last: schema.OutcomeCommitted}
		}},
		{"a second replace sync takes over", func(s *stream) []Msg {
			return append(s.sync("a1", schema.ModeReplace, 3), s.sync("b2", schema.ModeReplace, 4)...)
		}, func(*stream) outcome { return outcome{current: 6, records: 4, last: schema.OutcomeCommitted} }},
		{"abort keeps the previous generation", func(s *stream) []Msg {
			ms := s.sync("a1", schema.ModeReplace, 3)
			ms = append(ms, s.begin("b2", schema.ModeReplace))
			ms = append(ms, s.rows("b2", 1, 2)...)
			return append(ms, s.abort("b2", schema.AbortStrict))
		}, func(*stream) outcome { return outcome{current: 1, records: 3, last: schema.OutcomeAborted} }},
		{"abort with nothing open is answered", func(s *stream) []Msg { return []Msg{s.abort("a1", schema.AbortUnchanged)} },
			func(*stream) outcome { return outcome{last: schema.OutcomeAborted} }},
		{"a begin discards the open sync", func(s *stream) []Msg {
			ms := append([]Msg{s.begin("a1", schema.ModeReplace)}, s.rows("a1", 1, 3)...)
			return append(ms, s.begin("b2", schema.ModeReplace))
		}, func(*stream) outcome { return outcome{last: schema.OutcomeDiscarded, building: true} }},
		{"a resumed sync skips rows written", func(s *stream) []Msg {
			ms := append([]Msg{s.begin("a1", schema.ModeReplace)}, s.rows("a1", 1, 3)...)
			ms = append(ms, s.begin("a1", schema.ModeReplace))
			ms = append(ms, s.rows("a1", 2, 6)...)
			return append(ms, s.end("a1", 6, 0))
		}, func(*stream) outcome { return outcome{current: 1, records: 6, last: schema.OutcomeCommitted} }},
		{"a gap fails the sync", func(s *stream) []Msg {
			ms := s.sync("a1", schema.ModeReplace, 2)
			ms = append(ms, s.begin("b2", schema.ModeReplace), s.row("b2", 1), s.row("b2", 3))
			return append(ms, s.row("b2", 4), s.end("b2", 4, 0)) // ignored: the sync failed
		}, func(*stream) outcome { return outcome{current: 1, records: 2, last: schema.OutcomeFailed} }},
		{"an end of the wrong count fails", func(s *stream) []Msg {
			ms := append([]Msg{s.begin("a1", schema.ModeReplace)}, s.rows("a1", 1, 3)...)
			return append(ms, s.end("a1", 4, 0))
		}, func(*stream) outcome { return outcome{last: schema.OutcomeFailed} }},
		{"the first append makes a current generation", func(s *stream) []Msg { return s.sync("a1", schema.ModeAppend, 3) },
			func(*stream) outcome { return outcome{current: 1, records: 3, last: schema.OutcomeCommitted} }},
		{"appends grow the current generation", func(s *stream) []Msg {
			return append(s.sync("a1", schema.ModeReplace, 3), s.sync("b2", schema.ModeAppend, 2)...)
		}, func(*stream) outcome { return outcome{current: 1, records: 5, last: schema.OutcomeCommitted} }},
		{"an aborted append is rolled back", func(s *stream) []Msg {
			ms := s.sync("a1", schema.ModeReplace, 3)
			ms = append(ms, s.begin("b2", schema.ModeAppend))
			ms = append(ms, s.rows("b2", 1, 4)...)
			return append(ms, s.abort("b2", schema.AbortInterrupted))
		}, func(*stream) outcome { return outcome{current: 1, records: 3, last: schema.OutcomeAborted} }},
		{"an append of other fields fails", func(s *stream) []Msg {
			ms := s.sync("a1", schema.ModeReplace, 3)
			other := s.beginBody("b2", schema.ModeAppend, []string{"Handle"})
			return append(ms, s.msg(schema.EventBegin, "b2", 0, mustJSON(other)))
		}, func(*stream) outcome { return outcome{current: 1, records: 3, last: schema.OutcomeFailed} }},
		{"late copies of a finished sync are ignored", func(s *stream) []Msg {
			ms := s.sync("a1", schema.ModeReplace, 3)
			return append(ms, s.begin("a1", schema.ModeReplace), s.row("a1", 2), s.end("a1", 3, 0), s.abort("a1", schema.AbortFailed))
		}, func(*stream) outcome { return outcome{current: 1, records: 3, last: schema.OutcomeCommitted} }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, disk.OS{}, 2)
			s := newStream()
			r.mustApply(c.script(s)...)
			checkOutcome(t, r, c.want(s))
			// A restart changes nothing, and the messages again are no-ops.
			before := snapshot(t, r.dir)
			r.restart()
			r.mustApply(c.script(newStream())...)
			sameSnapshot(t, before, snapshot(t, r.dir))
		})
	}
}

func checkOutcome(t *testing.T, r *rig, want outcome) {
	t.Helper()
	checkFiles(t, r.dir)
	got, _ := readCurrent(disk.OS{}, filepath.Join(r.dir, "products"))
	if got != want.current {
		t.Fatalf("CURRENT names %d, want %d", got, want.current)
	}
	if n := len(records(t, r.dir)); n != want.records {
		t.Fatalf("%d records, want %d", n, want.records)
	}
	st := r.fx.last()
	if want.last == "" && st.Last != nil || want.last != "" && (st.Last == nil || st.Last.Outcome != want.last) {
		t.Fatalf("last outcome %+v, want %q", st.Last, want.last)
	}
	if (st.Building != nil) != want.building {
		t.Fatalf("building %+v, want %v", st.Building, want.building)
	}
	if want.current != 0 {
		if st.Current == nil || st.Current.Generation != want.current || st.Current.Count != uint64(want.records) || st.Current.Rejected != want.rejected {
			t.Fatalf("published current %+v, want generation %d with %d records, %d rejected", st.Current, want.current, want.records, want.rejected)
		}
	}
}

// TestEveryRefusal applies, in the middle of an open sync that follows a
// committed one, each message the writer must refuse: the error is a
// *schema.Refusal of the reason, the files and the published state are
// unchanged, and the sync then commits.
func TestEveryRefusal(t *testing.T) {
	lt := strings.Repeat("<", 180<<10)
	cases := []struct {
		name, reason string
		msg          func(s *stream) Msg
	}{
		{"row of another sync", schema.ReasonOutsideSync, func(s *stream) Msg { return s.row("zz", 1) }},
		{"reject of another sync", schema.ReasonOutsideSync, func(s *stream) Msg { return s.reject("zz", 1) }},
		{"row that is not JSON", schema.ReasonBadBody, func(s *stream) Msg { return s.msg(schema.EventRow, "b2", 3, []byte("garbage")) }},
		{"row of other fields", schema.ReasonBadBody, func(s *stream) Msg { return s.msg(schema.EventRow, "b2", 3, []byte(`{"Handle":"x"}`)) }},
		{"row with a raw line break", schema.ReasonBadBody, func(s *stream) Msg {
			return s.msg(schema.EventRow, "b2", 3, []byte("{\"Handle\":\"a\nb\",\"Title\":\"\",\"Body (HTML)\":\"\"}"))
		}},
		{"row over the record limit", schema.ReasonOversize, func(s *stream) Msg {
			return s.msg(schema.EventRow, "b2", 3, []byte(strings.Repeat("x", schema.MaxRecordBytes+1)))
		}},
		{"reject that is not an object", schema.ReasonBadBody, func(s *stream) Msg { return s.msg(schema.EventReject, "b2", 9, []byte("[1]")) }},
		{"begin that is not JSON", schema.ReasonBadBegin, func(s *stream) Msg { return s.msg(schema.EventBegin, "c3", 0, []byte("{")) }},
		{"begin of version 2", schema.ReasonVersion, func(s *stream) Msg {
			b := s.beginBody("c3", schema.ModeReplace, s.fields)
			b.Version = 2
			return s.msg(schema.EventBegin, "c3", 0, mustJSON(b))
		}},
		{"begin for another dataset", schema.ReasonBadBegin, func(s *stream) Msg {
			b := s.beginBody("c3", schema.ModeReplace, s.fields)
			b.Dataset = "orders"
			return s.msg(schema.EventBegin, "c3", 0, mustJSON(b))
		}},
		{"begin whose header would not fit", schema.ReasonBadBegin, func(s *stream) Msg {
			return s.msg(schema.EventBegin, "c3", 0, mustJSON(s.beginBody("c3", schema.ModeReplace, []string{lt[:1000], lt[1000:2000], "x" + lt})))
		}},
		{"begin of 180 KB of < in fields", schema.ReasonBadBegin, func(s *stream) Msg {
			var fields []string
			for i := 0; i < 180; i++ {
				fields = append(fields, lt[:1000]+strings.Repeat("y", i))
			}
			return s.msg(schema.EventBegin, "c3", 0, mustJSON(s.beginBody("c3", schema.ModeReplace, fields)))
		}},
		{"begin with a huge sha256", schema.ReasonBadBegin, func(s *stream) Msg {
			b := s.beginBody("c3", schema.ModeReplace, s.fields)
			b.Source.SHA256 = strings.Repeat("0", 200<<10)
			return s.msg(schema.EventBegin, "c3", 0, mustJSON(b))
		}},
		{"begin with duplicate fields", schema.ReasonBadBegin, func(s *stream) Msg {
			return s.msg(schema.EventBegin, "c3", 0, mustJSON(s.beginBody("c3", schema.ModeReplace, []string{"a", "a"})))
		}},
		{"begin of an unknown mode", schema.ReasonBadBegin, func(s *stream) Msg {
			return s.msg(schema.EventBegin, "c3", 0, mustJSON(s.beginBody("c3", "merge", s.fields)))
		}},
		{"end that is not JSON", schema.ReasonBadBody, func(s *stream) Msg { return s.msg(schema.EventEnd, "b2", 0, []byte("nope")) }},
		{"end with a huge source name", schema.ReasonBadBody, func(s *stream) Msg {
			return s.msg(schema.EventEnd, "b2", 0, mustJSON(schema.End{Rows: 2, Source: schema.Source{Name: strings.Repeat("n", schema.MaxSourceNameBytes+1)}}))
		}},
		{"abort of 200 K of <", schema.ReasonBadBody, func(s *stream) Msg {
			return s.msg(schema.EventAbort, "b2", 0, mustJSON(schema.Abort{Code: schema.AbortStrict, Reason: strings.Repeat("<", 200<<10)}))
		}},
		{"abort that is not JSON", schema.ReasonBadBody, func(s *stream) Msg { return s.msg(schema.EventAbort, "b2", 0, []byte("1")) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, disk.OS{}, 2)
			s := newStream()
			r.mustApply(s.sync("a1", schema.ModeReplace, 3)...)
			r.mustApply(s.begin("b2", schema.ModeReplace), s.row("b2", 1), s.row("b2", 2))
			before, published := snapshot(t, r.dir), len(r.fx.states)
			err := r.apply(c.msg(s))
			ref, ok := schema.RefusalOf(err)
			if !ok || ref.Reason != c.reason {
				t.Fatalf("Apply = %v, want a refusal for %s", err, c.reason)
			}
			sameSnapshot(t, before, snapshot(t, r.dir))
			if len(r.fx.states) != published {
				t.Fatalf("a refused message published a state: %+v", r.fx.last())
			}
			r.mustApply(s.row("b2", 3), s.end("b2", 3, 0))
			checkOutcome(t, r, outcome{current: 6, records: 3, last: schema.OutcomeCommitted})
		})
	}
}

// TestAnEndOutsideASyncIsRefusedAndAnswered: an end whose begin the writer
// did not accept is refused, and its outcome is published so that an
// ingester waiting for the sync learns it failed.
func TestAnEndOutsideASyncIsRefusedAndAnswered(t *testing.T) {
	r := newRig(t, disk.OS{}, 2)
	s := newStream()
	err := r.apply(s.end("zz", 3, 0))
	if ref, ok := schema.RefusalOf(err); !ok || ref.Reason != schema.ReasonOutsideSync {
		t.Fatalf("Apply = %v", err)
	}
	if st := r.fx.last(); st.Last == nil || st.Last.Sync != "zz" || st.Last.Outcome != schema.OutcomeFailed {
		t.Fatalf("published %+v", st)
	}
}

// TestAMachineFailureChangesNothing: a message that fails because the
// disk or the broker fails is applied again once it is back, with the
// same result as if nothing had failed.
func TestAMachineFailureChangesNothing(t *testing.T) {
	for _, broker := range []bool{false, true} {
		name := "disk"
		if broker {
			name = "broker"
		}
		t.Run(name, func(t *testing.T) {
			faulty := disk.NewFaulty(disk.OS{})
			r := newRig(t, faulty, 1)
			s := newStream()
			r.mustApply(s.sync("a1", schema.ModeReplace, 3)...)
			r.mustApply(append([]Msg{s.begin("b2", schema.ModeReplace)}, s.rows("b2", 1, 4)...)...)
			end := s.end("b2", 4, 0)
			boom := errors.New("boom")
			if broker {
				r.fx.failWith = boom
			} else {
				faulty.Fail(boom)
			}
			for range 3 {
				err := r.apply(end)
				if !errors.Is(err, boom) {
					t.Fatalf("Apply = %v, want the failure", err)
				}
				if _, ok := schema.RefusalOf(err); ok {
					t.Fatal("a machine failure was taken for a refusal")
				}
				checkFiles(t, r.dir)
			}
			r.fx.failWith = nil
			faulty.Fail(nil)
			r.mustApply(end)
			checkOutcome(t, r, outcome{current: 6, records: 4, last: schema.OutcomeCommitted})
		})
	}
}

// TestOpenFindsWhatAFolderHolds: no folder, a folder of other files, and a
// state file lost after a commit.
func TestOpenFindsWhatAFolderHolds(t *testing.T) {
	r := newRig(t, disk.OS{}, 2)
	if r.d.current != nil || r.d.st.Seq != 0 {
		t.Fatal("an empty DATA_DIR opened as a dataset with something")
	}
	if _, err := os.Stat(filepath.Join(r.dir, "products")); !os.IsNotExist(err) {
		t.Fatalf("Open made a folder: %v", err)
	}
	s := newStream()
	r.mustApply(s.sync("a1", schema.ModeReplace, 3)...)
	r.mustApply(s.begin("b2", schema.ModeReplace), s.row("b2", 1))
	if err := os.Remove(StatePath(r.dir, "products")); err != nil {
		t.Fatal(err)
	}
	r.restart()
	r.mustApply(s.row("b2", 2), s.end("b2", 2, 0))
	checkOutcome(t, r, outcome{current: 6, records: 2, last: schema.OutcomeCommitted})
	if err := r.d.Repair(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestAStateRecordedWithAHugeReasonIsPublished: a state file written
// before abort reasons were bounded, with an outcome too large for a
// message, is published cut to size, not retried forever.
func TestAStateRecordedWithAHugeReasonIsPublished(t *testing.T) {
	r := newRig(t, disk.OS{}, 2)
	s := newStream()
	r.mustApply(s.sync("a1", schema.ModeReplace, 2)...)
	r.mustApply(s.begin("b2", schema.ModeReplace), s.abort("b2", schema.AbortStrict))
	p, _, err := loadState(disk.OS{}, StatePath(r.dir, "products"))
	if err != nil {
		t.Fatal(err)
	}
	p.State.Last.Reason = strings.Repeat("<", 200<<10)
	if err := saveState(disk.OS{}, StatePath(r.dir, "products"), p, false); err != nil {
		t.Fatal(err)
	}
	r.fx.states = nil
	r.restart()
	if st := r.fx.last(); st.Last == nil || len(st.Last.Reason) > schema.MaxReasonBytes+8 || st.Seq != p.Seq {
		t.Fatalf("published %+v", st.Last)
	}
}

// TestAnAbortRetriedAfterAFailedPublishReportsItsRows: the outcome of a
// message applied again after the broker failed is the outcome it would
// have had (the discarded generation stays open until its state is
// recorded).
func TestAnAbortRetriedAfterAFailedPublishReportsItsRows(t *testing.T) {
	r := newRig(t, disk.OS{}, 2)
	s := newStream()
	r.mustApply(append([]Msg{s.begin("a1", schema.ModeReplace)}, s.rows("a1", 1, 4)...)...)
	abort := s.abort("a1", schema.AbortStrict)
	r.fx.failWith = errors.New("broker away")
	if err := r.apply(abort); err == nil {
		t.Fatal("the abort was applied with the broker away")
	}
	r.fx.failWith = nil
	r.mustApply(abort)
	if st := r.fx.last(); st.Last == nil || st.Last.Outcome != schema.OutcomeAborted || st.Last.Rows != 4 {
		t.Fatalf("outcome %+v, want aborted with 4 rows", st.Last)
	}
	checkFiles(t, r.dir)
}
