package faults

import (
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
)

// startIngesterProc runs bin/ingester --wait on csvPath into products.
func startIngesterProc(t *testing.T, natsURL, csvPath string) *proc {
	t.Helper()
	return startProc(t, "ingester", ingesterBin, []string{"NATS_URL=" + natsURL, "WAIT_TIMEOUT=2m", "PUBLISH_GIVE_UP=1m"},
		"--dataset", "products", "--progress", "off", "--wait", csvPath)
}

var appliedRE = regexp.MustCompile(`applied_seq=(\d+)`)

var summaryRE = regexp.MustCompile(`dataset=products generation=(\d+) rows=(\d+) rejected=(\d+) .*outcome=(\S+).*`)

// summary parses the ingester's last summary line (a sync restarted under
// a new sync id prints one for each attempt).
func summary(t *testing.T, p *proc) (gen, rows uint64, outcome string) {
	t.Helper()
	gen, rows, outcome, _ = lastSummary(t, p)
	return gen, rows, outcome
}

func lastSummary(t *testing.T, p *proc) (gen, rows uint64, outcome, line string) {
	t.Helper()
	all := summaryRE.FindAllStringSubmatch(p.stdout.String(), -1)
	if all == nil {
		t.Fatalf("no summary line on stdout: %q", p.stdout.String())
	}
	m := all[len(all)-1]
	gen, _ = strconv.ParseUint(m[1], 10, 64)
	rows, _ = strconv.ParseUint(m[2], 10, 64)
	return gen, rows, m[4], m[0]
}

// waitBuilt waits until the writer has written at least n records of the
// generation being built; the ingester must still be running then.
func waitBuilt(t *testing.T, dir string, n uint64, ing *proc) {
	t.Helper()
	waitFor(t, 60*time.Second, "the writer to build "+strconv.FormatUint(n, 10)+" records", func() bool {
		if ing.exited() {
			t.Fatalf("the ingester finished (%v) before the fault at %d records; stdout %q", ing.err, n, ing.stdout.String())
		}
		h := newestHeader(dir, "products")
		return h.State == schema.StateBuilding && h.Count >= n
	})
}

// checkOneExactGeneration proves the ingest ended as one committed
// generation holding exactly the CSV: no duplicate, no gap, no other
// generation left on disk, and the writer's published outcome agrees.
func checkOneExactGeneration(t *testing.T, dir string, ing *proc, srv *jstest.Server, want [][]byte) schema.Header {
	t.Helper()
	gen, rows, outcome := summary(t, ing)
	if outcome != schema.OutcomeCommitted || rows != uint64(len(want)) {
		t.Fatalf("summary: generation %d rows %d outcome %s; want %d rows committed", gen, rows, outcome, len(want))
	}
	h := checkGeneration(t, dir, "products", want)
	if h.Generation != gen {
		t.Fatalf("CURRENT is generation %d, the ingester reported %d", h.Generation, gen)
	}
	if g := generationsOn(dir, "products"); len(g) != 1 || g[0] != gen {
		t.Fatalf("generations on disk %v, want only %d", g, gen)
	}
	st := datasetState(t, srv.Conn(), "products")
	if st.Current == nil || st.Current.Generation != gen || st.Current.Count != uint64(len(want)) || st.Building != nil {
		t.Fatalf("published state: current %+v building %+v", st.Current, st.Building)
	}
	return h
}

// TestIngesterKill9MidFileThenRerun SIGKILLs bin/ingester twice in the
// middle of a 100K-row file (at seeded random stream positions while it is
// still publishing rows) and runs the same command again: the
// re-run resumes the interrupted sync (same sync id, the generation the
// first begin opened), and the result is one generation that is exactly
// the CSV: no duplicate row from the re-published prefix, no gap.
func TestIngesterKill9MidFileThenRerun(t *testing.T) {
	needBinaries(t)
	rng := seed(t)
	const rows = 100_000
	srv := jstest.Start(t)
	dir := t.TempDir()
	startWriter(t, srv.Conn(), dir)
	csvPath := filepath.Join(t.TempDir(), "products.csv")
	want := genCSV(t, csvPath, rows, 1, rng.Uint64())

	// Kill points are stream positions, so that each kill lands while the
	// ingester is still reading and publishing the file (a kill after it
	// has published end is TestIngesterKill9AfterEndBeforeCommit).
	nc := srv.Conn()
	var firstGen, pos uint64
	for kill := 1; kill <= 2; kill++ {
		ing := startIngesterProc(t, srv.URL(), csvPath)
		at := pos + uint64(rows/10+rng.IntN(rows/3))
		waitFor(t, 60*time.Second, "the ingester to publish past seq "+strconv.FormatUint(at, 10), func() bool {
			if ing.exited() {
				t.Fatalf("the ingester exited (%v) before the kill at seq %d; stdout %q", ing.err, at, ing.stdout.String())
			}
			return streamLastSeq(t, nc) >= at
		})
		ing.kill()
		pos = streamLastSeq(t, nc)
		if pos >= rows+2 && kill == 1 {
			t.Fatalf("kill %d came after the whole file was published (stream at %d)", kill, pos)
		}
		waitFor(t, 30*time.Second, "the writer to open the generation", func() bool { return newestHeader(dir, "products").Generation != 0 })
		h := newestHeader(dir, "products")
		if firstGen == 0 {
			firstGen = h.Generation
		}
		if h.Generation != firstGen || h.State != schema.StateBuilding {
			t.Fatalf("after kill %d the newest generation is %d (%s), not the first one (%d) building", kill, h.Generation, h.State, firstGen)
		}
		t.Logf("kill %d: stream at seq %d, generation %d has %d records", kill, pos, h.Generation, h.Count)
	}
	ing := startIngesterProc(t, srv.URL(), csvPath)
	if code := ing.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("re-run exit status %d; stdout %q", code, ing.stdout.String())
	}
	h := checkOneExactGeneration(t, dir, ing, srv, want)
	// The re-run goes on after the last message the stream holds of the
	// interrupted sync: same sync id, same generation.
	_, _, _, line := lastSummary(t, ing)
	resumed := strings.Contains(line, " resumed=true")
	if !resumed || h.Generation != firstGen {
		t.Fatalf("re-run: resumed %v, committed generation %d; the interrupted sync opened %d", resumed, h.Generation, firstGen)
	}
	t.Logf("re-run: resumed %v, generation %d (the interrupted sync opened %d); stdout %q", resumed, h.Generation, firstGen, ing.stdout.String())
}

// TestNATSRestartMidIngest restarts the JetStream server (file store)
// twice while bin/ingester --wait publishes a 100K-row file to an
// in-process writer: both reconnect and go on, the ingester's --wait still
// learns the outcome, and the generation is exactly the CSV.
func TestNATSRestartMidIngest(t *testing.T) {
	needBinaries(t)
	rng := seed(t)
	const rows = 100_000
	srv := jstest.Start(t)
	dir := t.TempDir()
	startWriter(t, srv.Conn(), dir)
	csvPath := filepath.Join(t.TempDir(), "products.csv")
	want := genCSV(t, csvPath, rows, 1, rng.Uint64())

	ing := startIngesterProc(t, srv.URL(), csvPath)
	points := []uint64{uint64(rows/10 + rng.IntN(rows/4)), 0}
	points[1] = points[0] + uint64(rows/10+rng.IntN(rows/4))
	for i, at := range points {
		waitBuilt(t, dir, at, ing)
		srv.Restart()
		t.Logf("restart %d of the NATS server at >= %d records (the writer had %d)", i+1, at, newestHeader(dir, "products").Count)
		time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
	}
	if code := ing.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("ingester exit status %d; stdout %q", code, ing.stdout.String())
	}
	checkOneExactGeneration(t, dir, ing, srv, want)
}

// TestIngesterKill9AfterEndBeforeCommit kills bin/ingester --wait after
// it has published the whole file (end included) but before the writer
// has committed it, the common case of a writer that lags the broker, and
// runs the same command again, as the ingester's own error message tells a
// person to. The re-run resumes the sync, whose end is already the last
// message in the stream, so it publishes nothing and waits for the
// writer. Contract: one generation, the CSV exactly, the summary names it.
func TestIngesterKill9AfterEndBeforeCommit(t *testing.T) {
	needBinaries(t)
	const rows = 20_000
	srv := jstest.Start(t)
	nc := srv.Conn()
	dir := t.TempDir()
	csvPath := filepath.Join(t.TempDir(), "products.csv")
	want := genCSV(t, csvPath, rows, 1, 1)

	// The writer applies begin (so the state names the building sync),
	// then stops: it lags.
	w := startWriterProc(t, srv.URL(), dir)
	ing := startIngesterProc(t, srv.URL(), csvPath)
	waitFor(t, 30*time.Second, "the writer to publish the building sync", func() bool {
		st, err := stateOf(nc, "products")
		return err == nil && st.Building != nil
	})
	w.cmd.Process.Signal(syscall.SIGTERM)
	w.wait(t, 20*time.Second)
	waitFor(t, 30*time.Second, "the whole file in the stream", func() bool { return streamLastSeq(t, nc) >= rows+2 })
	ing.kill() // waiting for the writer: the file is published, not committed

	rerun := startIngesterProc(t, srv.URL(), csvPath)
	waitFor(t, 30*time.Second, "the re-run to resume the sync", func() bool {
		return strings.Contains(rerun.stderr.String(), "resuming an interrupted sync")
	})
	w = startWriterProc(t, srv.URL(), dir)
	if code := rerun.wait(t, time.Minute); code != 0 {
		t.Fatalf("re-run exit status %d: %q", code, rerun.stdout.String())
	}
	t.Logf("re-run: %s", strings.TrimSpace(rerun.stdout.String()))
	gen, _, _ := summary(t, rerun)
	last := streamLastSeq(t, nc)
	waitFor(t, 30*time.Second, "the writer to apply the whole stream", func() bool {
		_, body := healthz(t, w)
		m := appliedRE.FindStringSubmatch(body)
		if m == nil {
			return false
		}
		n, _ := strconv.ParseUint(m[1], 10, 64)
		return n >= last
	})
	g := generationsOn(dir, "products")
	cur := currentGen(dir, "products")
	for _, x := range g {
		h, _ := headerOf(dir, "products", x)
		t.Logf("generation %d: state %s, sync %s, count %d, last_seq %d", x, h.State, h.Sync, h.Count, h.LastSeq)
	}
	if len(g) != 1 || cur != gen {
		t.Fatalf("generations on disk %v, CURRENT %d, the ingester reported %d: want one generation, the reported one", g, cur, gen)
	}
	checkGeneration(t, dir, "products", want)
}

// TestResumedSyncStraddlingTheDuplicateWindow makes bin/ingester publish
// rows, stops it (SIGSTOP) for 2.5 s with a batch open, lets it publish
// some more, kills it, and re-runs it at once, while the killed run's last
// messages may still be landing. The re-run resumes the sync after the
// last message the stream holds: it must complete as resumed, in the
// generation it opened, with one summary line.
func TestResumedSyncStraddlingTheDuplicateWindow(t *testing.T) {
	needBinaries(t)
	const rows = 100_000
	srv := jstest.Start(t)
	nc := srv.Conn()
	dir := t.TempDir()
	startWriter(t, nc, dir)
	csvPath := filepath.Join(t.TempDir(), "products.csv")
	want := genCSV(t, csvPath, rows, 1, 5)

	ing := startIngesterProc(t, srv.URL(), csvPath)
	waitFor(t, 30*time.Second, "5000 rows in the stream", func() bool { return streamLastSeq(t, nc) > 5000 })
	ing.cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(2500 * time.Millisecond)
	at := streamLastSeq(t, nc)
	ing.cmd.Process.Signal(syscall.SIGCONT)
	waitFor(t, 30*time.Second, "10000 more rows", func() bool { return streamLastSeq(t, nc) > at+10000 })
	ing.kill()
	t.Logf("paused at stream seq %d, killed at %d", at, streamLastSeq(t, nc))
	rerun := startIngesterProc(t, srv.URL(), csvPath)
	if code := rerun.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("re-run exit status %d: %q", code, rerun.stdout.String())
	}
	h := checkOneExactGeneration(t, dir, rerun, srv, want)
	if strings.Contains(rerun.stderr.String(), "starting the sync again") || !strings.Contains(rerun.stdout.String(), "resumed=true") || h.Generation != 1 {
		t.Fatalf("the resumed sync was restarted under a new sync id (generation %d); stdout %q; stderr %q", h.Generation, rerun.stdout.String(), tail(rerun.stderr.String(), 1500))
	}
	if n := len(summaryRE.FindAllString(rerun.stdout.String(), -1)); n != 1 {
		t.Fatalf("%d summary lines on stdout, want 1: %q", n, rerun.stdout.String())
	}
}
