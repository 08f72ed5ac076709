package ingester

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// folder makes a folder holding files (name -> content).
func folder(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// oneSync checks that dataset's messages hold exactly one complete sync of
// the CSV text src (no carriage returns), from the file path.
func (e *env) oneSync(t *testing.T, dataset, path, src string) {
	t.Helper()
	syncs := applyLikeWriter(t, e.messages(dataset))
	if len(syncs) != 1 {
		t.Fatalf("dataset %s: %d syncs, want 1", dataset, len(syncs))
	}
	header, records := splitCSV(t, src)
	want := encodeRows(t, header, records)
	for _, a := range syncs {
		if a.Begin.Dataset != dataset || a.Begin.Source.Name != path || a.End == nil || a.Abort != nil || a.Failed != "" {
			t.Fatalf("dataset %s: sync %+v, want one from %s that ended", dataset, a, path)
		}
		if len(a.Rows) != len(want) {
			t.Fatalf("dataset %s: %d rows, want %d", dataset, len(a.Rows), len(want))
		}
		for i := range want {
			if !bytes.Equal(a.Rows[i], want[i]) {
				t.Errorf("dataset %s row %d: %s, want %s", dataset, i+1, a.Rows[i], want[i])
			}
		}
	}
}

func lines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

func TestFolderSyncsEachFileToTheDatasetOfItsName(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.fakeWriter(ctx, "products", "")
	e.fakeWriter(ctx, "orders-2024", "")
	products := "Handle,Title\nmug,Crème Mug\ncap,Cap\n"
	orders := "Name,Total\n#1001,12.50\n"
	dir := folder(t, map[string]string{
		"Products.csv":    products,
		"Orders 2024.CSV": orders,
		".draft.csv":      "a\n1\n", // being written: left alone
		"notes.txt":       "a\n1\n",
		"orders.csv.part": "a\n1\n",
	})
	if err := os.MkdirAll(filepath.Join(dir, "sub", "inner.csv"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "deep.csv"), []byte("a\n1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	cfg := e.config("ignored", dir) // DATASET in the environment: not used for a folder
	cfg.Wait = true
	out := e.run(ctx, cfg)
	if out.err != nil {
		t.Fatalf("Run: %v\nstderr: %s", out.err, out.stderr)
	}
	if !strings.Contains(out.stderr, "not used for a folder") {
		t.Errorf("no warning that the dataset setting is not used; stderr: %s", out.stderr)
	}
	// Name order ("O" < "P"), one summary line per file, each waited for.
	got := lines(out.stdout)
	if len(got) != 2 || !strings.HasPrefix(got[0], "dataset=orders-2024 ") || !strings.Contains(got[0], " rows=1 rejected=0 ") ||
		!strings.HasPrefix(got[1], "dataset=products ") || !strings.Contains(got[1], " rows=2 rejected=0 ") ||
		!strings.Contains(got[0], "outcome=committed") || !strings.Contains(got[1], "outcome=committed") {
		t.Fatalf("stdout:\n%s\nwant a committed summary for orders-2024 (1 row), then products (2 rows)", out.stdout)
	}
	e.oneSync(t, "products", filepath.Join(dir, "Products.csv"), products)
	e.oneSync(t, "orders-2024", filepath.Join(dir, "Orders 2024.CSV"), orders)
	nProducts, nOrders := len(e.messages("products")), len(e.messages("orders-2024"))
	if n, err := streamMsgs(e.nc); err != nil || n != uint64(nProducts+nOrders) {
		t.Errorf("the stream holds %d messages (%v), want only the %d of products and orders-2024", n, err, nProducts+nOrders)
	}

	// Again: both unchanged, nothing published.
	out = e.run(ctx, cfg)
	if out.err != nil || strings.Count(out.stdout, "outcome=unchanged") != 2 {
		t.Errorf("second run: err %v, stdout:\n%s", out.err, out.stdout)
	}
	if n, _ := streamMsgs(e.nc); n != uint64(nProducts+nOrders) {
		t.Errorf("the second run published %d messages", n-uint64(nProducts+nOrders))
	}
}

func TestFolderFileWithABadNameIsReportedAndSkipped(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("x", 70) + ".csv"
	dir := folder(t, map[string]string{
		"good.csv": "a,b\n1,2\n",
		"---.csv":  "a\n1\n",
		long:       "a\n1\n",
		"Dup.csv":  "a\n1\n",
		"dup.csv":  "a\n2\n3\n",
	})
	out := e.run(context.Background(), e.config("", dir))
	if ExitCode(out.err) != ExitRefused || !strings.Contains(out.err.Error(), "3 of 5 CSV files not synced (---.csv, Dup.csv, "+long+")") {
		t.Fatalf("err %v (exit %d), want exit 3 naming the skipped files\nstderr: %s", out.err, ExitCode(out.err), out.stderr)
	}
	for _, want := range []string{
		filepath.Join(dir, "---.csv") + `: skipped: the file name gives no valid dataset name (""): invalid dataset name: the name is empty`,
		filepath.Join(dir, long) + ": skipped: the file name gives no valid dataset name",
		"is 70 characters long",
		filepath.Join(dir, "Dup.csv") + `: skipped: another file names the same dataset: dup.csv also gives dataset "dup" and keeps it`,
	} {
		if !strings.Contains(out.stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, out.stderr)
		}
	}
	got := lines(out.stdout)
	if len(got) != 2 || !strings.HasPrefix(got[0], "dataset=dup ") || !strings.Contains(got[0], " rows=2 ") ||
		!strings.HasPrefix(got[1], "dataset=good ") || !strings.Contains(got[1], " rows=1 ") {
		t.Fatalf("stdout:\n%s\nwant summaries of dup (2 rows, from dup.csv) and good only", out.stdout)
	}
	e.oneSync(t, "dup", filepath.Join(dir, "dup.csv"), "a\n2\n3\n")
	e.oneSync(t, "good", filepath.Join(dir, "good.csv"), "a,b\n1,2\n")
	if n, err := streamMsgs(e.nc); err != nil || n != uint64(len(e.messages("dup"))+len(e.messages("good"))) {
		t.Errorf("the stream holds %d messages (%v): a skipped file published something", n, err)
	}
}

// A one-shot folder run exits with the worst of its files' statuses:
// refused (3) over failed (1) over done (0).
func TestFolderExitStatusIsTheWorstFiles(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.fakeWriter(ctx, "a", "")
	e.fakeWriter(ctx, "b", "disk full")
	e.fakeWriter(ctx, "c", "")
	dir := folder(t, map[string]string{"a.csv": "x\n1\n", "b.csv": "x\n2\n", "c.csv": "x\n3\n"})
	cfg := e.config("", dir)
	cfg.Wait = true

	out := e.run(ctx, cfg)
	if ExitCode(out.err) != ExitFailure || !strings.Contains(out.err.Error(), "1 of 3 CSV files not synced (b.csv)") ||
		!strings.Contains(out.err.Error(), "disk full") {
		t.Fatalf("err %v (exit %d), want exit 1 for b.csv, which the writer failed", out.err, ExitCode(out.err))
	}
	// The failure of b did not stop c.
	if s := out.stdout; !strings.Contains(s, "dataset=a ") || !strings.Contains(s, "dataset=b ") || !strings.Contains(s, "outcome=failed") ||
		!strings.Contains(s, "dataset=c ") || strings.Count(s, "outcome=committed") != 2 {
		t.Errorf("stdout:\n%s", s)
	}
	if out.res.Dataset != "b" || out.res.Outcome != "failed" {
		t.Errorf("result %+v, want b's (the worst file's)", out.res)
	}

	// An empty file is refused (3), which outranks b's failure, whatever
	// the order of the files.
	if err := os.WriteFile(filepath.Join(dir, "0-empty.csv"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out = e.run(ctx, cfg)
	if ExitCode(out.err) != ExitRefused || !strings.Contains(out.err.Error(), "2 of 4 CSV files not synced (0-empty.csv, b.csv)") ||
		!strings.Contains(out.err.Error(), "0-empty.csv: is empty") {
		t.Fatalf("err %v (exit %d), want exit 3 naming the empty file", out.err, ExitCode(out.err))
	}
	if !strings.Contains(out.stdout, "dataset=a ") || !strings.Contains(out.stdout, "dataset=c ") {
		t.Errorf("the other files were not gone through:\n%s", out.stdout)
	}
}

// Without a stream, no file is synced; a skipped file still makes it exit 3.
func TestFolderWithoutNATS(t *testing.T) {
	e := newEnv(t)
	nc, err := nats.Connect(e.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	dir := folder(t, map[string]string{"a.csv": "x\n1\n", "b.csv": "x\n2\n"})
	cfg := e.config("", dir)
	cfg.PublishGiveUp = 200 * time.Millisecond
	var stderr syncBuffer
	_, err = Run(context.Background(), cfg, nc, slog.New(slog.NewTextHandler(&stderr, nil)), io.Discard, io.Discard)
	if ExitCode(err) != ExitFailure || !strings.Contains(err.Error(), "2 of 2 CSV files not synced (a.csv, b.csv)") {
		t.Fatalf("err %v (exit %d), want exit 1 for both files", err, ExitCode(err))
	}
	if strings.Count(stderr.String(), "no file of the folder can be synced") != 1 {
		t.Errorf("want the cause logged once:\n%s", stderr.String())
	}
	if err := os.WriteFile(filepath.Join(dir, "___.csv"), []byte("x\n3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), cfg, nc, nil, io.Discard, io.Discard)
	if ExitCode(err) != ExitRefused || !strings.Contains(err.Error(), "3 of 3 CSV files not synced (___.csv, a.csv, b.csv)") {
		t.Fatalf("err %v (exit %d), want exit 3 (a skipped file outranks the failure)", err, ExitCode(err))
	}
}

func TestEmptyFolderIsNotAnError(t *testing.T) {
	e := newEnv(t)
	dir := folder(t, map[string]string{"readme.txt": "drop CSV files here\n"})
	out := e.run(context.Background(), e.config("", dir))
	if out.err != nil || out.stdout != "" || !strings.Contains(out.stderr, `msg="no CSV files in `+dir+`"`) {
		t.Fatalf("err %v, stdout %q, stderr %s; want nil, nothing, and the log line", out.err, out.stdout, out.stderr)
	}
	if _, err := streamMsgs(e.nc); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("an empty folder touched the stream: %v", err)
	}
}

// With --every, the folder is listed again at each interval: an empty one
// waits, a file dropped in later is synced, a removed one stops syncing
// and its dataset keeps what it had.
func TestFolderEveryPicksUpFilesAddedLater(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.fakeWriter(ctx, "first", "")
	e.fakeWriter(ctx, "second", "")
	dir := t.TempDir()
	cfg := e.config("", dir)
	cfg.Every = time.Second
	var stdout, stderr syncBuffer
	log := slog.New(slog.NewTextHandler(&stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, cfg, e.nc, log, &stdout, &stderr)
		done <- err
	}()
	count := func(prefix string) int { return strings.Count(stdout.String(), prefix) }

	// Empty: said once, not at every pass.
	waitFor(t, func() bool { return strings.Count(stderr.String(), "listing the folder") >= 3 })
	if n := strings.Count(stderr.String(), "no CSV files in "+dir); n != 1 {
		t.Errorf("the empty folder was reported %d times in 3 passes, want once:\n%s", n, stderr.String())
	}
	if err := os.WriteFile(filepath.Join(dir, "first.csv"), []byte("k\n1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return count("dataset=first ") >= 1 })
	if err := os.WriteFile(filepath.Join(dir, "Second.csv"), []byte("k\n2\n3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "---.csv"), []byte("k\n4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return count("dataset=second ") >= 1 })

	// Removed: after the pass that may have begun before the removal, no
	// pass mentions first again.
	if err := os.Remove(filepath.Join(dir, "first.csv")); err != nil {
		t.Fatal(err)
	}
	n2 := count("dataset=second ")
	waitFor(t, func() bool { return count("dataset=second ") >= n2+1 })
	n1, n2 := count("dataset=first "), count("dataset=second ")
	waitFor(t, func() bool { return count("dataset=second ") >= n2+2 })
	if got := count("dataset=first "); got != n1 {
		t.Errorf("first.csv was removed, yet %d more syncs of first ran:\n%s", got-n1, stdout.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v once stopped, want nil", err)
	}
	if strings.Count(stdout.String(), "outcome=published") != 2 || !strings.Contains(stdout.String(), "dataset=second generation=") ||
		!strings.Contains(stdout.String(), "outcome=unchanged") {
		t.Errorf("want one published sync per file, the later passes unchanged:\n%s", stdout.String())
	}
	if n := strings.Count(stderr.String(), "---.csv: skipped: "); n != 1 {
		t.Errorf("---.csv reported %d times over several passes, want once:\n%s", n, stderr.String())
	}
	if strings.Contains(stderr.String(), "cannot go through the folder") {
		t.Errorf("a skipped file made a pass error, logged at each pass:\n%s", stderr.String())
	}
	e.oneSync(t, "first", filepath.Join(dir, "first.csv"), "k\n1\n") // no abort, nothing deleted
	e.oneSync(t, "second", filepath.Join(dir, "Second.csv"), "k\n2\n3\n")
}

// A folder that cannot be listed is refused before any connection; the
// command refuses --dataset with a folder (main_test.go).
func TestCheckSourceFolder(t *testing.T) {
	if err := CheckSource(Config{Source: t.TempDir()}); err != nil {
		t.Errorf("an empty folder: %v", err)
	}
	if !IsFolder(t.TempDir()) || IsFolder(writeFile(t, "f.csv", "a\n1\n")) || IsFolder("-") || IsFolder("http://example.com/") {
		t.Error("IsFolder is wrong")
	}
	_, err := Run(context.Background(), Config{Source: t.TempDir(), Every: time.Millisecond}, nil, nil, io.Discard, io.Discard)
	if ExitCode(err) != ExitUsage {
		t.Errorf("a folder with --every 1ms: %v, want a usage error", err)
	}
}
