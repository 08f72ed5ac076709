package faults

import (
	"context"
	"io"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
	"github.com/rowpipe/rowpipe/services/ingester/ingester"
)

// TestWriterKill9WhileRowsStreamIn runs bin/writer as a process and
// SIGKILLs it at 12 random moments (a seeded random delay after each
// restart has made progress) while the real ingester streams a 200K-row
// CSV into JetStream, restarting it each time. The generation it ends with
// is byte for byte (data file, index, CURRENT) what bin/writer makes from
// the same stream into an empty DATA_DIR without interruption, and it holds
// exactly the CSV's records under a complete header.
func TestWriterKill9WhileRowsStreamIn(t *testing.T) {
	needBinaries(t)
	rng := seed(t)
	const rows, kills = 200_000, 12
	srv := jstest.Start(t)
	nc := srv.Conn()
	csvPath := filepath.Join(t.TempDir(), "products.csv")
	want := genCSV(t, csvPath, rows, 1, rng.Uint64())

	dir := t.TempDir()
	ckpt := []string{"CHECKPOINT_INTERVAL=1s", "CHECKPOINT_INTERVAL=20ms"}
	start := func() *proc {
		return startWriterProc(t, srv.URL(), dir, ckpt[rng.IntN(len(ckpt))])
	}
	w := start()

	// The real ingester, in-process on its own connection.
	ingested := make(chan error, 1)
	go func() {
		_, err := ingester.Run(context.Background(), ingester.Config{Source: csvPath, Dataset: "products", Progress: "off"},
			srv.Conn(), nil, io.Discard, io.Discard)
		ingested <- err
	}()
	publishing := true
	var prev uint64
	during := 0
	for k := 1; k <= kills; k++ {
		waitFor(t, 60*time.Second, "the writer to make progress", func() bool {
			return newestHeader(dir, "products").LastSeq > prev || w.exited()
		})
		if w.exited() {
			t.Fatalf("the writer exited on its own: %v", w.err)
		}
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		select {
		case err := <-ingested:
			if err != nil {
				t.Fatalf("ingest: %v", err)
			}
			publishing = false
		default:
		}
		if publishing {
			during++
		}
		w.kill()
		h := newestHeader(dir, "products")
		prev = h.LastSeq
		t.Logf("kill %2d: generation %d at seq %d, %d records, state %s, ingester publishing: %v", k, h.Generation, h.LastSeq, h.Count, h.State, publishing)
		w = start()
	}
	if publishing {
		if err := <-ingested; err != nil {
			t.Fatalf("ingest: %v", err)
		}
	}
	last := streamLastSeq(t, nc)
	// Committed means on disk and published: a SIGTERM between the two
	// would leave the publication to the next start.
	waitFor(t, 60*time.Second, "the restarted writer to commit the sync", func() bool {
		st, err := stateOf(nc, "products")
		return committedAt(dir, "products", last) && err == nil && st.Seq >= last
	})
	w.cmd.Process.Signal(syscall.SIGTERM)
	if code := w.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("writer exit status %d after SIGTERM", code)
	}
	t.Logf("%d kills, %d of them while the ingester was still publishing; stream last seq %d", kills, during, last)
	if during < kills/2 {
		t.Logf("note: the ingest outran most kills this time (the writer still had a backlog to apply)")
	}

	clean := t.TempDir()
	c := startWriterProc(t, srv.URL(), clean)
	waitFor(t, 60*time.Second, "a clean writer to apply the stream", func() bool { return committedAt(clean, "products", last) })
	c.cmd.Process.Signal(syscall.SIGTERM)
	if code := c.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("clean writer exit status %d", code)
	}

	sameFiles(t, datasetFiles(t, clean, "products"), datasetFiles(t, dir, "products"))
	h := checkGeneration(t, dir, "products", want)
	if h.LastSeq != last || h.Rejected != 0 || h.Source.SHA256 == "" {
		t.Fatalf("header: last_seq %d (stream %d), rejected %d, sha256 %q", h.LastSeq, last, h.Rejected, h.Source.SHA256)
	}
	if g := generationsOn(dir, "products"); len(g) != 1 {
		t.Fatalf("generations on disk: %v, want one", g)
	}
	if st := datasetState(t, nc, "products"); st.Last == nil || st.Last.Outcome != schema.OutcomeCommitted || st.Last.Rows != rows {
		t.Fatalf("published state: seq %d current %+v building %+v last %+v", st.Seq, st.Current, st.Building, st.Last)
	}
}
