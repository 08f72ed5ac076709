//go:build unix

package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
)

// The writer process keeps what it creates from other users (0750 and
// 0640 whatever the umask it inherits), serves its liveness from the
// start, and checks itself with --probe.
func TestTheWriterProcessModesAndProbe(t *testing.T) {
	srv := jstest.Start(t)
	dir := filepath.Join(t.TempDir(), "data")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Setenv("NATS_URL", srv.URL())
	t.Setenv("DATA_DIR", dir)
	t.Setenv("METRICS_ADDR", addr)
	t.Setenv("LOG_LEVEL", "error")
	defer syscall.Umask(syscall.Umask(0o022)) // what a shell usually hands down

	done := make(chan int, 1)
	go func() { done <- run(nil) }()
	status := filepath.Join(dir, schema.WriterStatusFile)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(status); err == nil {
			if st, err := schema.DecodeWriterStatus(b); err == nil && st.CaughtUp {
				break // an empty stream: caught up at once
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer never reported itself caught up")
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o750 {
		t.Errorf("DATA_DIR mode %v, want 0750", fi.Mode().Perm())
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if want := os.FileMode(0o640); !e.IsDir() && fi.Mode().Perm()&^want != 0 {
			t.Errorf("%s mode %v, want at most 0640", e.Name(), fi.Mode().Perm())
		}
	}

	res, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "caught_up=true") {
		t.Errorf("/healthz: %d %q", res.StatusCode, body)
	}
	if code := run([]string{"--probe", "/healthz"}); code != 0 {
		t.Errorf("writer --probe /healthz: exit %d", code)
	}

	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("after SIGTERM: exit %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the writer did not stop on SIGTERM")
	}
	if code := run([]string{"--probe", "/healthz"}); code != 1 {
		t.Errorf("writer --probe /healthz with no writer running: exit %d, want 1", code)
	}
}
