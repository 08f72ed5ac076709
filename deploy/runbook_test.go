package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
	"github.com/rowpipe/rowpipe/pkg/svc"
	"github.com/rowpipe/rowpipe/services/api/api"
	"github.com/rowpipe/rowpipe/services/ingester/ingester"
	"github.com/rowpipe/rowpipe/services/stack/stack"
	"github.com/rowpipe/rowpipe/services/writer/writer"
)

// natscliVersion is the nats CLI the README's runbook is checked with.
const natscliVersion = "v0.5.0"

// runbookSection is the README section whose ```sh blocks this test runs.
const runbookSection = "## Operations with the nats CLI"

// runbookBlock is one fenced sh block of the runbook, marked
// "# runbook: <name>" on its first line; "(runs until stopped)" after the
// name marks a command that runs until it is signalled (a writer).
type runbookBlock struct {
	name      string
	untilStop bool
	script    string
}

// runbookBlocks extracts the marked blocks of the runbook section, in
// order. Every sh block of the section must be marked, so that none goes
// unchecked.
func runbookBlocks(t *testing.T) []runbookBlock {
	t.Helper()
	readme := readFile(t, filepath.Join(repoRoot(t), "README.md"))
	i := strings.Index(readme, "\n"+runbookSection+"\n")
	if i < 0 {
		t.Fatalf("README.md has no %q section", runbookSection)
	}
	section := readme[i+len(runbookSection)+2:]
	if j := strings.Index(section, "\n## "); j >= 0 {
		section = section[:j]
	}
	marker := regexp.MustCompile(`^# runbook: ([a-z-]+)( \(runs until stopped\))?$`)
	var blocks []runbookBlock
	lines := strings.Split(section, "\n")
	for n := 0; n < len(lines); n++ {
		if strings.TrimSpace(lines[n]) != "```sh" {
			continue
		}
		start := n + 1
		for n++; n < len(lines) && strings.TrimSpace(lines[n]) != "```"; n++ {
		}
		if n == len(lines) {
			t.Fatalf("README.md: the sh block at line %d of %q is not closed", start, runbookSection)
		}
		body := lines[start:n]
		if len(body) == 0 {
			t.Fatalf("README.md: empty sh block in %q", runbookSection)
		}
		m := marker.FindStringSubmatch(body[0])
		if m == nil {
			t.Fatalf("README.md: the sh block starting %q in %q has no \"# runbook: <name>\" first line; every block there is run by this test", body[0], runbookSection)
		}
		blocks = append(blocks, runbookBlock{name: m[1], untilStop: m[2] != "", script: strings.Join(body, "\n") + "\n"})
	}
	return blocks
}

// natsCLI returns the path of the nats CLI at natscliVersion, installed
// with go install under the user's cache folder (once per machine).
func natsCLI(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = t.TempDir()
	}
	dir := filepath.Join(cache, "rowpipe", "natscli-"+natscliVersion)
	bin := filepath.Join(dir, "nats")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	if out, err := exec.Command(bin, "--version").Output(); err == nil && strings.TrimSpace(string(out)) == natscliVersion {
		return bin
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, goTool(t), "install", "github.com/nats-io/natscli/nats@"+natscliVersion)
	cmd.Dir = t.TempDir() // outside any module
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOWORK=off", "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install github.com/nats-io/natscli/nats@%s (needs the Go module proxy): %v\n%s", natscliVersion, err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || strings.TrimSpace(string(out)) != natscliVersion {
		t.Fatalf("%s --version: %q, %v; want %s", bin, out, err, natscliVersion)
	}
	t.Logf("installed nats %s in %s (%s)", natscliVersion, dir, time.Since(start).Round(time.Second))
	return bin
}

// goTool is the go command that runs this test.
func goTool(t *testing.T) string {
	t.Helper()
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("no go command")
	}
	return p
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// buildWriter builds the writer command into dir/bin/writer, where the
// runbook (after `make build`) expects it.
func buildWriter(t *testing.T, dir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(t), "build", "-o", filepath.Join(dir, "bin", "writer"), "github.com/rowpipe/rowpipe/services/writer")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build the writer: %v\n%s", err, out)
	}
}

// runbookEnv is the environment of the runbook's commands: the CLI first on
// PATH, a home of its own (no saved nats context), no NATS_* or rowpipe
// variable of the person running the test, and the placeholders.
func runbookEnv(home, natsBin string, vars map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "NATS_"), name == "HOME", name == "XDG_CONFIG_HOME", name == "PATH":
			continue
		case slices.Contains([]string{"STREAM", "STREAM_REPLICAS", "STREAM_MAX_BYTES", "DATA_DIR", "DATASET",
			"KEEP_GENERATIONS", "FSYNC", "METRICS_ADDR", "LOG_LEVEL", "LOG_FORMAT", "SEQ"}, name):
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"PATH="+filepath.Dir(natsBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// runBlock runs a block with sh -eu in dir and returns its stdout; it
// fails the test if the block fails.
func runBlock(t *testing.T, b runbookBlock, dir string, env []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-eu", "-c", b.script)
	cmd.Dir, cmd.Env, cmd.WaitDelay = dir, env, 5*time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("runbook block %q failed: %v\n%s\nstdout:\n%s\nstderr:\n%s", b.name, err, b.script, tail(stdout.String(), 4000), tail(stderr.String(), 4000))
	}
	t.Logf("runbook %s: %s", b.name, time.Since(start).Round(time.Millisecond))
	return stdout.String()
}

// runUntil starts a block that runs until stopped (a writer), waits until
// ready returns nil, then sends SIGTERM to its process group and checks
// that the writer stopped cleanly. It returns the block's stderr.
func runUntil(t *testing.T, b runbookBlock, dir string, env []string, ready func() error) string {
	t.Helper()
	cmd := exec.Command("sh", "-eu", "-c", b.script)
	cmd.Dir, cmd.Env, cmd.WaitDelay = dir, env, 5*time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			return errors.New("did not stop within 30 s of SIGTERM")
		}
	}
	defer stop()
	deadline := time.Now().Add(time.Minute)
	var last error
	for {
		if last = ready(); last == nil {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("runbook block %q exited before it was ready (%v): %v\n%s", b.name, last, err, tail(out.String(), 4000))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("runbook block %q: not ready within a minute: %v\n%s", b.name, last, tail(out.String(), 4000))
		}
	}
	took := time.Since(start)
	err := stop()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == -1) { // sh itself may die of the SIGTERM
		t.Fatalf("runbook block %q after SIGTERM: %v\n%s", b.name, err, tail(out.String(), 4000))
	}
	if !strings.Contains(out.String(), `msg="writer stopped" applied_seq=`) || strings.Contains(out.String(), "level=ERROR") {
		t.Fatalf("runbook block %q: the writer did not stop cleanly:\n%s", b.name, tail(out.String(), 4000))
	}
	t.Logf("runbook %s: ready in %s", b.name, took.Round(time.Millisecond))
	return out.String()
}

// runInTerminal runs a block on a pseudo-terminal, answering the terminal
// queries and "Next Page?" prompts of the CLI (no: one page is enough),
// and returns what it printed with the escape sequences removed.
func runInTerminal(t *testing.T, b runbookBlock, dir string, env []string) (string, bool) {
	t.Helper()
	ctrl, tty, err := openPTY()
	if errors.Is(err, errors.ErrUnsupported) {
		return "", false
	}
	if err != nil {
		t.Fatalf("pseudo-terminal: %v", err)
	}
	defer ctrl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-eu", "-c", b.script)
	cmd.Dir, cmd.Env = dir, append(env, "TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()

	var mu sync.Mutex
	var out []byte
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 32<<10)
		answered := 0
		for {
			n, err := ctrl.Read(buf)
			mu.Lock()
			out = append(out, buf[:n]...)
			dsr := bytes.Count(out, []byte("\x1b[6n"))
			mu.Unlock()
			for ; answered < dsr; answered++ {
				ctrl.Write([]byte("\x1b[1;1R")) // the cursor position report survey asks for
			}
			if err != nil {
				return // EIO once the command and its children have exited
			}
		}
	}()
	// Answer "Next Page?" once survey reads keys: after the prompt and the
	// cursor query that follows it; again every second until the command
	// has ended, in case a key was read before the terminal was raw.
	go func() {
		for {
			select {
			case <-read:
				return
			case <-time.After(time.Second):
			}
			mu.Lock()
			i := bytes.LastIndex(out, []byte("Next Page?"))
			ready := i >= 0 && bytes.Contains(out[i:], []byte("\x1b[6n"))
			mu.Unlock()
			if ready {
				ctrl.Write([]byte("n\r"))
			}
		}
	}()
	err = cmd.Wait()
	select {
	case <-read:
	case <-time.After(5 * time.Second):
	}
	mu.Lock()
	text := ansi.ReplaceAllString(strings.ReplaceAll(string(out), "\r\n", "\n"), "")
	mu.Unlock()
	if err != nil {
		t.Fatalf("runbook block %q failed: %v\n%s\noutput:\n%s", b.name, err, b.script, tail(text, 4000))
	}
	t.Logf("runbook %s: %s", b.name, time.Since(start).Round(time.Millisecond))
	return text, true
}

var ansi = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|[78])`)

// datasetRecords reads the records of the current generation of a dataset,
// one line each without its '\n'.
func datasetRecords(t *testing.T, dataDir, dataset string) (schema.Header, []string) {
	t.Helper()
	dir := filepath.Join(dataDir, dataset)
	cur, err := os.ReadFile(filepath.Join(dir, schema.CurrentFile))
	if err != nil {
		t.Fatal(err)
	}
	gen, _ := schema.ParseCurrent(cur)
	b, err := os.ReadFile(filepath.Join(dir, schema.DataFile(gen)))
	if err != nil {
		t.Fatal(err)
	}
	h, err := schema.ReadHeader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return h, strings.Split(strings.TrimSuffix(string(b[h.Size:]), "\n"), "\n")
}

// sameDatasetFiles is nil when got/<dataset> holds exactly the files of
// want/<dataset> (CURRENT, generations, indexes, rejects), byte for byte.
func sameDatasetFiles(want, got, dataset string) error {
	list := func(dir string) (map[string][]byte, error) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		files := map[string][]byte{}
		for _, e := range entries {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") || strings.HasSuffix(e.Name(), ".tmp") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, err
			}
			files[e.Name()] = b
		}
		return files, nil
	}
	w, err := list(filepath.Join(want, dataset))
	if err != nil {
		return err
	}
	g, err := list(filepath.Join(got, dataset))
	if err != nil {
		return err
	}
	if len(w) == 0 {
		return fmt.Errorf("%s holds no file", filepath.Join(want, dataset))
	}
	for name, b := range w {
		gb, ok := g[name]
		if !ok {
			return fmt.Errorf("%s is missing", name)
		}
		if !bytes.Equal(b, gb) {
			return fmt.Errorf("%s differs (%d bytes, want %d)", name, len(gb), len(b))
		}
	}
	for name := range g {
		if _, ok := w[name]; !ok {
			return fmt.Errorf("%s should not be there", name)
		}
	}
	return nil
}

// TestRunbookCommandsWork runs every command of the README's runbook
// ("Operations with the nats CLI") with the real nats CLI against a test
// stack holding an ingested dataset, and checks what each prints: the
// stream and its rows as JSON, the dataset state, a durable consumer moved
// back to a sequence, a backup restored into a fresh server with the same
// messages, and replicas rebuilt from the stream (the restored one too)
// byte-identical to the stack's files.
func TestRunbookCommandsWork(t *testing.T) {
	if testing.Short() {
		t.Skip("installs the nats CLI and runs a stack: skipped with -short")
	}
	if runtime.GOOS == "windows" {
		t.Skip("the runbook is for sh")
	}
	blocks := runbookBlocks(t)
	natsBin := natsCLI(t)
	work := t.TempDir()
	buildWriter(t, work)

	// A stack with its NATS on a free loopback port, and a dataset in it.
	const rows = 25
	const maxBytes = 64 << 20
	dataDir := filepath.Join(work, "stack-data")
	csvPath := filepath.Join(work, "products.csv")
	writeProductsCSV(t, csvPath, rows)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	defer func() {
		if t.Failed() {
			t.Logf("stack log tail:\n%s", tail(logs.String(), 4000))
		}
	}()
	log := slog.New(slog.NewTextHandler(logs, nil))
	// Authentication on, as on every deployment: the blocks log in as the
	// README says (admin; writer for the replicas).
	const adminPW, writerPW, ingesterPW = "runbook-admin-password-0123", "runbook-writer-password-0123", "runbook-ingester-password-01"
	s, err := stack.Start(ctx, stack.Config{
		NATSAdminPassword: adminPW, NATSWriterPassword: writerPW, NATSIngesterPassword: ingesterPW,
		NATSListen:          "127.0.0.1:" + strconv.Itoa(freePort(t)),
		NATSMaxMemory:       16 << 20,
		NATSMaxBufferedMsgs: 4096,
		NATSMaxBufferedSize: 4 << 20,
		Writer:              writer.Config{DataDir: dataDir, MetricsAddr: "unused", StreamMaxBytes: maxBytes},
		API: api.Config{DataDir: dataDir, Addr: "127.0.0.1:" + strconv.Itoa(freePort(t)), Dataset: "products",
			Keys: api.Keys{"runbook-test-key-0123456789abcdef"}},
	}, log, io.Discard, io.Discard)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	defer func() {
		cancel()
		if err := s.Wait(); err != nil {
			t.Errorf("stack: %v", err)
		}
	}()
	natsURL := s.NATSURL()
	if nc, err := nats.Connect(natsURL); err == nil {
		nc.Close()
		t.Fatal("the test stack lets a client in without credentials")
	}
	nc, err := nats.Connect(natsURL, nats.UserInfo("admin", adminPW))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	iauth, err := svc.NATSAuth{User: "ingester", Password: ingesterPW}.Options() // as bin/ingester logs in
	if err != nil {
		t.Fatal(err)
	}
	inc, err := nats.Connect(natsURL, iauth...)
	if err != nil {
		t.Fatal(err)
	}
	defer inc.Close()
	ictx, icancel := context.WithTimeout(ctx, time.Minute)
	res, err := ingester.Run(ictx, ingester.Config{Source: csvPath, Dataset: "products", Wait: true, Progress: "off", StreamMaxBytes: maxBytes},
		inc, log, io.Discard, io.Discard)
	icancel()
	if err != nil || res.Outcome != schema.OutcomeCommitted {
		t.Fatalf("ingest: %+v, %v", res, err)
	}
	h := checkDatasetMatchesCSV(t, dataDir, "products", csvPath)
	_, records := datasetRecords(t, dataDir, "products")
	gen := h.Generation
	msgs := uint64(rows + 2) // begin, the rows, end
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := js.Stream(ctx, schema.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	origInfo, err := orig.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if origInfo.State.Msgs != msgs {
		t.Fatalf("stream holds %d messages, want %d", origInfo.State.Msgs, msgs)
	}
	record := func(seq uint64) string { return records[seq-gen-1] } // the row message at stream seq

	fresh := jstest.Start(t) // the server a backup is restored into
	seq := gen + 3
	home := filepath.Join(work, "home")
	env := func(natsURL string) []string {
		return runbookEnv(home, natsBin, map[string]string{
			"NATS_URL": natsURL, "NEW_NATS_URL": fresh.URL(), "SEQ": strconv.FormatUint(seq, 10),
			"NATS_USER": "admin", "NATS_PASSWORD": adminPW, "NATS_WRITER_PASSWORD": writerPW,
			"METRICS_ADDR": "127.0.0.1:0", "STREAM_MAX_BYTES": strconv.Itoa(maxBytes),
		})
	}
	lines := func(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

	checks := map[string]func(b runbookBlock){
		"inspect": func(b runbookBlock) {
			out := runBlock(t, b, work, env(natsURL))
			for _, re := range []string{
				fmt.Sprintf(`(?m)^\s+Messages: %d$`, msgs),
				fmt.Sprintf(`(?m)^\s+Last Sequence: %d @`, origInfo.State.LastSeq),
				fmt.Sprintf(`rows\.products\s*│\s*%d\b`, msgs),
				fmt.Sprintf(`(?m)^\s+Rowpipe-Row: %d$`, seq-gen), `(?m)^\s+Rowpipe-Event: row$`,
			} {
				if !regexp.MustCompile(re).MatchString(out) {
					t.Errorf("inspect: the output does not match %s:\n%s", re, out)
				}
			}
			if !slices.Contains(lines(out), record(seq)) {
				t.Errorf("inspect: stream get does not show the record of seq %d as JSON:\n%s", seq, out)
			}
		},
		"view": func(b runbookBlock) {
			out, ok := runInTerminal(t, b, work, env(natsURL))
			if !ok {
				t.Logf("runbook view: skipped, no pseudo-terminal on %s", runtime.GOOS)
				return
			}
			// One page: the begin and 9 rows, each under "[seq] Subject: ...".
			got := lines(out)
			isHead := func(l string) bool { return strings.HasPrefix(l, "[") && strings.Contains(l, "] Subject: ") }
			at := 0
			for s := gen; s < gen+10; s++ {
				head := fmt.Sprintf("[%d] Subject: rows.products Received: ", s)
				i := slices.IndexFunc(got[at:], func(l string) bool { return strings.HasPrefix(l, head) })
				if i < 0 {
					t.Fatalf("view: no %q line after line %d:\n%s", head, at, out)
				}
				at += i + 1
				msg := got[at:]
				if k := slices.IndexFunc(msg, isHead); k >= 0 {
					msg = msg[:k]
				}
				if s > gen && !slices.Contains(msg, record(s)) {
					t.Fatalf("view: message %d is not shown as its record %s:\n%s", s, record(s), out)
				}
			}
			if !strings.Contains(out, "Rowpipe-Event: begin") || !strings.Contains(out, "Next Page?") ||
				strings.Contains(out, fmt.Sprintf("[%d] Subject", gen+10)) {
				t.Errorf("view: want one page of 10 messages starting with the begin, then a prompt:\n%s", out)
			}
		},
		"dump": func(b runbookBlock) {
			got := lines(runBlock(t, b, work, env(natsURL)))
			if uint64(len(got)) != msgs {
				t.Fatalf("dump: %d lines, want %d (begin, %d rows, end):\n%s", len(got), msgs, rows, strings.Join(got, "\n"))
			}
			var begin schema.Begin
			var end schema.End
			if err := json.Unmarshal([]byte(got[0]), &begin); err != nil || begin.Sync != res.Sync || begin.Dataset != "products" {
				t.Errorf("dump: first line is not the begin of sync %s: %s (%v)", res.Sync, got[0], err)
			}
			if err := json.Unmarshal([]byte(got[len(got)-1]), &end); err != nil || end.Rows != rows {
				t.Errorf("dump: last line is not the end of %d rows: %s (%v)", rows, got[len(got)-1], err)
			}
			if !slices.Equal(got[1:len(got)-1], records) {
				t.Errorf("dump: the row bodies are not the writer's records, byte for byte")
			}
		},
		"state": func(b runbookBlock) {
			out := runBlock(t, b, work, env(natsURL))
			st, err := schema.DecodeState([]byte(strings.TrimSpace(out)))
			if err != nil {
				t.Fatalf("state: %v: %s", err, out)
			}
			if st.Current == nil || st.Current.Generation != gen || st.Current.Count != rows ||
				st.Last == nil || st.Last.Sync != res.Sync || st.Last.Outcome != schema.OutcomeCommitted {
				t.Errorf("state: %s; want generation %d with %d rows, last sync %s committed", out, gen, rows, res.Sync)
			}
		},
		"history": func(b runbookBlock) {
			out := runBlock(t, b, work, env(natsURL))
			if !strings.Contains(out, "History for ROWS_STATE > products") || strings.Count(out, "│ PUT ") < 2 {
				t.Errorf("history: want the begin and the commit as two PUTs:\n%s", out)
			}
		},
		"replay": func(b runbookBlock) {
			// Against the stack, then (below) against the restored copy.
			runUntil(t, b, work, env(natsURL), func() error { return sameDatasetFiles(dataDir, filepath.Join(work, "replica"), "products") })
		},
		"rebuild": func(b runbookBlock) {
			// Damage the replica first: the rebuild must put it right.
			replica := filepath.Join(work, "replica", "products")
			if err := os.Truncate(filepath.Join(replica, schema.DataFile(gen)), int64(h.Size)); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(replica, schema.CurrentFile)); err != nil {
				t.Fatal(err)
			}
			out := runUntil(t, b, work, env(natsURL), func() error { return sameDatasetFiles(dataDir, filepath.Join(work, "replica"), "products") })
			if !strings.Contains(out, "rebuild: removing") {
				t.Errorf("rebuild: the writer did not say it rebuilds:\n%s", out)
			}
		},
		"consumer": func(b runbookBlock) {
			out := runBlock(t, b, work, env(natsURL))
			re := regexp.MustCompile(`str seq: (\d+) `)
			var seen []string
			for _, m := range re.FindAllStringSubmatch(out, -1) {
				seen = append(seen, m[1])
			}
			want := []string{strconv.FormatUint(seq, 10), strconv.FormatUint(seq+1, 10), strconv.FormatUint(seq, 10)}
			if !slices.Equal(seen, want) {
				t.Errorf("consumer: delivered stream sequences %v, want %v:\n%s", seen, want, out)
			}
			if !strings.Contains(out, fmt.Sprintf("Deliver Policy: From Sequence %d", seq)) ||
				!slices.Contains(lines(out), record(seq)) || !slices.Contains(lines(out), record(seq+1)) {
				t.Errorf("consumer: want the deliver policy and the records of seq %d and %d:\n%s", seq, seq+1, out)
			}
			if _, err := orig.Consumer(ctx, "audit"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
				t.Errorf("consumer: audit should be removed: %v", err)
			}
		},
		"backup": func(b runbookBlock) {
			out := runBlock(t, b, work, env(natsURL))
			if !strings.Contains(out, fmt.Sprintf("%d messages", msgs)) {
				t.Errorf("backup: validate does not report %d messages:\n%s", msgs, out)
			}
			for _, f := range []string{"rows-backup/backup.json", "state-backup/backup.json"} {
				if !fileExists(filepath.Join(work, f)) {
					t.Errorf("backup: no %s", f)
				}
			}
		},
		"restore": func(b runbookBlock) {
			out := runBlock(t, b, work, env(natsURL))
			if !regexp.MustCompile(fmt.Sprintf(`(?m)^\s+Messages: %d$`, msgs)).MatchString(out) {
				t.Errorf("restore: stream info on the new server does not show %d messages:\n%s", msgs, out)
			}
			fjs, err := jetstream.New(fresh.Conn())
			if err != nil {
				t.Fatal(err)
			}
			rs, err := fjs.Stream(ctx, schema.DefaultStream)
			if err != nil {
				t.Fatalf("restore: no %s on the new server: %v", schema.DefaultStream, err)
			}
			ri, err := rs.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ri.State.Msgs != origInfo.State.Msgs || ri.State.FirstSeq != origInfo.State.FirstSeq || ri.State.LastSeq != origInfo.State.LastSeq {
				t.Errorf("restored stream state %+v, original %+v", ri.State, origInfo.State)
			}
			t.Logf("restore: created %s, original created %s", ri.Created, origInfo.Created)
			for _, seq := range []uint64{gen, gen + 1, origInfo.State.LastSeq} {
				a, err1 := orig.GetMsg(ctx, seq)
				b, err2 := rs.GetMsg(ctx, seq)
				if err1 != nil || err2 != nil || !bytes.Equal(a.Data, b.Data) || !a.Time.Equal(b.Time) || a.Subject != b.Subject {
					t.Errorf("restore: message %d differs (%v, %v)", seq, err1, err2)
				}
			}
			okv, _ := js.KeyValue(ctx, schema.StateBucket(schema.DefaultStream))
			rkv, err := fjs.KeyValue(ctx, schema.StateBucket(schema.DefaultStream))
			if err != nil {
				t.Fatalf("restore: no state bucket on the new server: %v", err)
			}
			oe, err1 := okv.Get(ctx, "products")
			re, err2 := rkv.Get(ctx, "products")
			if err1 != nil || err2 != nil || !bytes.Equal(oe.Value(), re.Value()) {
				t.Errorf("restore: the state of products differs (%v, %v)", err1, err2)
			}
		},
	}
	var ran []string
	var replay runbookBlock
	for _, b := range blocks {
		check, ok := checks[b.name]
		if !ok {
			t.Fatalf("README.md runbook block %q: this test has no check for it; add one", b.name)
		}
		if b.untilStop != (b.name == "replay" || b.name == "rebuild") {
			t.Fatalf("README.md runbook block %q: \"(runs until stopped)\" is for the writer commands only", b.name)
		}
		if b.name == "replay" {
			replay = b
		}
		check(b)
		ran = append(ran, b.name)
	}
	for name := range checks {
		if !slices.Contains(ran, name) {
			t.Errorf("README.md runbook has no %q block", name)
		}
	}
	if t.Failed() || replay.name == "" {
		return
	}
	// The replica built from the stack's stream refuses the restored copy
	// (a restored stream is created anew) and says to rebuild, as the
	// README says.
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	cmd := exec.CommandContext(rctx, "sh", "-eu", "-c", replay.script)
	cmd.Dir, cmd.Env = work, env(fresh.URL())
	// On a timeout the writer goes too, not only sh, and its output says why.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "--rebuild") {
		t.Errorf("a writer on a DATA_DIR built from the old stream, on the restored one: %v, want exit status 1 and a word about --rebuild:\n%s", err, tail(string(out), 2000))
	}

	// The replay again, from the restored copy, in a fresh folder: the
	// files are those of the stack.
	other := t.TempDir()
	if err := os.Symlink(filepath.Join(work, "bin"), filepath.Join(other, "bin")); err != nil {
		t.Fatal(err)
	}
	runUntil(t, replay, other, env(fresh.URL()), func() error { return sameDatasetFiles(dataDir, filepath.Join(other, "replica"), "products") })
}
