package faults

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
	"github.com/rowpipe/rowpipe/services/ingester/ingester"
)

// mountTmpfs mounts a tmpfs of size at a new folder, or skips the test
// when that is not possible (not root, no mount permission).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s (trying lazily)", dir, err, out)
			exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

var metricsAddrRE = regexp.MustCompile(`msg="health and metrics" addr=(\S+)`)

// healthz asks a writer process its /healthz (the address is in its log).
func healthz(t *testing.T, w *proc) (int, string) {
	t.Helper()
	var m []string
	waitFor(t, 10*time.Second, "the writer's metrics address", func() bool {
		m = metricsAddrRE.FindStringSubmatch(w.stderr.String())
		return m != nil
	})
	res, err := http.Get("http://" + m[1] + "/healthz")
	if err != nil {
		t.Fatalf("healthz: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestWriterOnAFullTmpfsRecoversWhenSpaceReturns runs bin/writer with
// DATA_DIR on a real 2 MiB tmpfs while a 6 MB sync streams in. The disk
// fills: the writer says so on /healthz (still 200, alive: a restart would
// not help; the body says "degraded: ... no space left"), the sync
// is not committed, and what is on disk is consistent (the header counts
// only whole records, each the CSV's). The tmpfs is then grown (mount -o
// remount,size=64m) after a kill -9 and restart of the writer on the
// still-full disk: the writer resumes on its own and commits a generation that is exactly the CSV and byte for byte a
// clean writer's. It needs root; it is skipped otherwise. (The writer's own
// TestAFullDiskStopsConsumingKeepsWhatIsDurableAndRecovers does this with
// an injected file layer at a chosen byte; this one uses the kernel's
// ENOSPC, wherever it lands, including the checkpoint and the state file.)
func TestWriterOnAFullTmpfsRecoversWhenSpaceReturns(t *testing.T) {
	needBinaries(t)
	const rows = 20_000
	dir := mountTmpfs(t, "2m")
	srv := jstest.Start(t)
	nc := srv.Conn()
	csvPath := filepath.Join(t.TempDir(), "products.csv")
	want := genCSV(t, csvPath, rows, 1, 3)

	w := startWriterProc(t, srv.URL(), dir)
	if _, err := ingester.Run(context.Background(), ingester.Config{Source: csvPath, Dataset: "products", Progress: "off"},
		srv.Conn(), nil, io.Discard, io.Discard); err != nil {
		t.Fatalf("ingest: %v", err)
	}
	last := streamLastSeq(t, nc)
	waitFor(t, 30*time.Second, "the writer to report the full disk", func() bool {
		code, body := healthz(t, w)
		return code == http.StatusOK && strings.Contains(body, "degraded") && strings.Contains(body, "no space left")
	})
	_, body := healthz(t, w)
	t.Logf("full: /healthz says %q", strings.TrimSpace(body))
	if w.exited() {
		t.Fatalf("the writer exited on a full disk: %v", w.err)
	}
	if currentGen(dir, "products") != 0 {
		t.Fatal("CURRENT exists although the sync cannot have been written whole")
	}
	// What is on disk holds: a whole header, and the records it counts.
	h := newestHeader(dir, "products")
	if h.Generation == 0 || h.State != schema.StateBuilding || h.Count >= rows {
		t.Fatalf("while full: newest header %+v", h)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "products", schema.DataFile(h.Generation)))
	idx, _ := os.ReadFile(filepath.Join(dir, "products", schema.IndexFile(h.Generation)))
	x, err := schema.OpenIndex(bytes.NewReader(idx))
	if err != nil {
		t.Fatalf("index while full: %v", err)
	}
	for i := range h.Count {
		start, end, err := x.Range(i, 1)
		if err != nil || end > int64(len(data)) || !bytes.Equal(data[start:end-1], want[i]) {
			t.Fatalf("record %d counted by the header while the disk is full is not whole (%v)", i, err)
		}
	}
	t.Logf("full: generation %d holds %d whole records of %d", h.Generation, h.Count, rows)

	// A crash while full: nothing the writer recorded as applied (its
	// checkpoint) may be ahead of what is on disk, or the restart skips it.
	w.kill()
	w = startWriterProc(t, srv.URL(), dir)
	waitFor(t, 30*time.Second, "the restarted writer to hit the full disk again", func() bool {
		code, body := healthz(t, w)
		return code == http.StatusOK && strings.Contains(body, "degraded") && strings.Contains(body, "no space left")
	})

	if out, err := exec.Command("mount", "-o", "remount,size=64m", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	waitFor(t, 60*time.Second, "the writer to commit once space returns", func() bool { return committedAt(dir, "products", last) })
	if code, body := healthz(t, w); code != http.StatusOK || strings.Contains(body, "degraded") {
		t.Fatalf("still degraded once space returned: %d %q", code, body)
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	if code := w.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("writer exit status %d", code)
	}
	checkGeneration(t, dir, "products", want)

	clean := t.TempDir()
	c := startWriterProc(t, srv.URL(), clean)
	waitFor(t, 60*time.Second, "a clean writer", func() bool { return committedAt(clean, "products", last) })
	c.kill()
	sameFiles(t, datasetFiles(t, clean, "products"), datasetFiles(t, dir, "products"))
}
