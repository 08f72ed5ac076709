package dataset

import (
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
)

// TestPurgeKeepsTheStreamFromTheCurrentGenerationOn: after each commit the
// stream is purged below the current generation's begin, even while an
// older generation is kept on disk (KEEP_GENERATIONS=2), and below a
// building sync's begin while one is open.
func TestPurgeKeepsTheStreamFromTheCurrentGenerationOn(t *testing.T) {
	r := newRig(t, disk.OS{}, 2)
	s := newStream()
	first := s.sync("s1", schema.ModeReplace, 3)
	r.mustApply(first...)
	second := s.sync("s2", schema.ModeReplace, 2)
	r.mustApply(second...)
	if got, want := r.fx.purged, []uint64{first[0].Seq, second[0].Seq}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("purged below %v, want %v (each current generation's begin)", got, want)
	}
	building := s.begin("s3", schema.ModeReplace)
	r.mustApply(building)
	r.restart() // Repair purges again, keeping what the open sync needs
	if got := r.fx.purged[len(r.fx.purged)-1]; got != second[0].Seq {
		t.Fatalf("after a restart with a sync open, purged below %d, want %d", got, second[0].Seq)
	}
}
