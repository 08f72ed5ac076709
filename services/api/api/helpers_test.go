package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/datadirtest"
)

const testKey = "test-key-0123456789abcdef"

// logBuffer collects the server's log lines for tests that look at them.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// harness is a server running on 127.0.0.1:0 over a temporary DATA_DIR.
type harness struct {
	t       testing.TB
	srv     *Server
	base    string
	dataDir string
	logs    *logBuffer
	client  *http.Client
	cancel  context.CancelFunc
	done    chan error
}

func start(t testing.TB, edit func(*Config), opts ...Option) *harness {
	t.Helper()
	return startWith(t, edit, nil, opts...)
}

// startWith is start with a hook that runs on the server before it serves.
func startWith(t testing.TB, edit func(*Config), before func(*Server), opts ...Option) *harness {
	t.Helper()
	h := &harness{t: t, dataDir: t.TempDir(), logs: &logBuffer{}, done: make(chan error, 1)}
	writeWriterStatus(t, h.dataDir, true) // as a caught-up writer beside the api does
	cfg := Config{DataDir: h.dataDir, Addr: "127.0.0.1:0", Keys: Keys{testKey}, RateLimit: 0}
	if edit != nil {
		edit(&cfg)
	}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(cfg, append([]Option{WithLogger(log)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	if before != nil {
		before(srv)
	}
	addr, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	h.base = "http://" + addr.String()
	h.client = &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}, Timeout: 30 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- srv.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	h.client.CloseIdleConnections()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.t.Error("Run did not return 30 s after its context ended")
	}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t testing.TB) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(a.body, &v); err != nil {
		t.Fatalf("not JSON (%v): %q", err, a.body)
	}
	return v
}

// get requests path with the test key unless headers set X-API-Key or
// Authorization themselves ("" removes it).
func (h *harness) get(path string, headers ...string) answer {
	h.t.Helper()
	return h.do(http.MethodGet, path, nil, headers...)
}

func (h *harness) do(method, path string, body io.Reader, headers ...string) answer {
	h.t.Helper()
	req, err := http.NewRequest(method, h.base+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("X-API-Key", testKey)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

// wantError checks an error answer: status, the {"error":{"code","message"}}
// shape, and that the message names mention.
func wantError(t testing.TB, a answer, status int, mention string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d: %s", a.status, status, a.body)
	}
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type %q", ct)
	}
	var v struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(a.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil || v.Error == nil || v.Error.Code == "" || v.Error.Message == "" {
		t.Fatalf("error body is not {\"error\":{\"code\",\"message\"}}: %s (%v)", a.body, err)
	}
	if mention != "" && !strings.Contains(strings.ToLower(v.Error.Message), mention) {
		t.Errorf("message %q does not name %q", v.Error.Message, mention)
	}
	for _, leak := range []string{"goroutine ", ".go:", "panic"} {
		if strings.Contains(string(a.body), leak) {
			t.Errorf("error body shows %q: %s", leak, a.body)
		}
	}
}

// publish writes a generation and makes it current.
func (h *harness) publish(g datadirtest.Gen) datadirtest.Gen {
	h.t.Helper()
	datadirtest.Publish(h.t, h.dataDir, g)
	return g
}

// lines returns records [first, first+n) of g as the file holds them.
func lines(t testing.TB, g datadirtest.Gen, first, n int) [][]byte {
	out := make([][]byte, 0, n)
	for i := first; i < first+n; i++ {
		out = append(out, g.Line(t, i))
	}
	return out
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) leases() int {
	_, n := h.srv.store.Stats()
	return n
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// writeWriterStatus writes the writer's status file into dataDir.
func writeWriterStatus(t testing.TB, dataDir string, caughtUp bool) {
	t.Helper()
	b := schema.EncodeWriterStatus(schema.WriterStatus{CaughtUp: caughtUp, Stream: "ROWS", TargetSeq: 40, AppliedSeq: 7, UpdatedAt: time.Now()})
	if err := os.WriteFile(filepath.Join(dataDir, schema.WriterStatusFile), b, 0o640); err != nil {
		t.Fatal(err)
	}
}
