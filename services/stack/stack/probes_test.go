package stack

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
	"github.com/rowpipe/rowpipe/services/api/api"
	"github.com/rowpipe/rowpipe/services/ingester/ingester"
	"github.com/rowpipe/rowpipe/services/writer/writer"
)

// A NATS outage under a running stack: the api keeps serving from disk
// and stays ready; the writer stays alive and says what is wrong.
func TestNATSOutageKeepsTheAPIServingAndReady(t *testing.T) {
	const key = "outage-test-key-0123456789abcdef"
	cfg := testConfig(t)
	cfg.API.Keys = api.Keys{key}
	cfg.Ingest = sample
	s, _, _ := start(t, cfg)
	base := "http://" + s.APIAddr().String()
	waitForCount(t, base, key, "products", len(sampleRecords(t)))
	if code, body := get(t, base+"/readyz", ""); code != http.StatusOK {
		t.Fatalf("/readyz before the outage: %d %s", code, body)
	}

	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.broker.Shutdown(sctx)
	for deadline := time.Now().Add(5 * time.Second); s.writer.Healthy() == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the writer does not notice that NATS is gone")
		}
	}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if code, body := get(t, base+"/fetch-data?limit=5&offset=10", key); code != http.StatusOK {
			t.Fatalf("/fetch-data during the outage: %d %s", code, body)
		}
		if code, body := get(t, base+"/readyz", ""); code != http.StatusOK {
			t.Fatalf("/readyz during the outage: %d %s", code, body)
		}
	}
	if err := s.writer.Alive(); err != nil {
		t.Errorf("the writer's liveness fails during the outage: %v", err)
	}
	if err := s.writer.Healthy(); err == nil || !strings.Contains(err.Error(), "NATS") {
		t.Errorf("the writer's health detail does not name NATS: %v", err)
	}
	_, metrics := get(t, base+"/metrics", "")
	if !strings.Contains(string(metrics), "rowpipe_writer_nats_connected 0") {
		t.Errorf("/metrics does not show rowpipe_writer_nats_connected 0")
	}
}

// A new replica's api is not ready until its writer has rebuilt the files
// from the stream: 503 saying why, then 200 and the data.
func TestAPIIsReadyOnlyOnceItsWriterHasCaughtUp(t *testing.T) {
	const key = "rebuild-test-key-0123456789abcdef"
	srv := jstest.Start(t)
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The stream holds a sync, applied by a first replica.
	first := filepath.Join(t.TempDir(), "first")
	runWriter(t, ctx, first, srv)
	csvPath := filepath.Join(t.TempDir(), "p.csv")
	if err := os.WriteFile(csvPath, []byte("sku,qty\nA,1\nB,2\nC,3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ingester.Run(ctx, ingester.Config{Source: csvPath, Dataset: "products", Wait: true, Progress: "off"}, srv.Conn(), log, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}

	// A new replica: its api first, with no writer yet.
	dir := filepath.Join(t.TempDir(), "new")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	a, err := api.New(api.Config{DataDir: dir, Addr: "127.0.0.1:0", Dataset: "products", Keys: api.Keys{key}}, api.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	addr, err := a.Listen()
	if err != nil {
		t.Fatal(err)
	}
	go a.Run(ctx)
	base := "http://" + addr.String()
	wantNotReady(t, base, "no writer")

	// Its writer starts while NATS is away: it cannot catch up.
	nc := srv.Conn()
	srv.Shutdown()
	runWriterOn(t, ctx, dir, nc)
	waitForStatus(t, dir)
	wantNotReady(t, base, "catching up")

	// NATS is back: the writer rebuilds the files, the api becomes ready.
	srv.Restart()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := get(t, base+"/readyz", "")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the api never became ready after its writer could catch up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, body := get(t, base+"/fetch-data?format=ndjson", key)
	if code != http.StatusOK || string(body) != "{\"sku\":\"A\",\"qty\":\"1\"}\n{\"sku\":\"B\",\"qty\":\"2\"}\n{\"sku\":\"C\",\"qty\":\"3\"}\n" {
		t.Fatalf("once ready: %d %q", code, body)
	}
}

func runWriter(t *testing.T, ctx context.Context, dir string, srv *jstest.Server) {
	t.Helper()
	runWriterOn(t, ctx, dir, srv.Conn())
}

// runWriterOn runs a writer on dir until ctx ends; the test waits for it.
func runWriterOn(t *testing.T, ctx context.Context, dir string, nc *nats.Conn) {
	t.Helper()
	w, err := writer.New(writer.Config{DataDir: dir, MetricsAddr: "unused"}, nc, writer.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("writer on %s: %v", dir, err)
		}
	})
}

func wantNotReady(t *testing.T, base, mention string) {
	t.Helper()
	code, body := get(t, base+"/readyz", "")
	var e struct {
		Error struct{ Code, Message string }
	}
	if code != http.StatusServiceUnavailable || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error.Message, mention) {
		t.Fatalf("/readyz: %d %s; want 503 with a message that says %q", code, body, mention)
	}
}

// waitForStatus waits until a writer has written its status into dir.
func waitForStatus(t *testing.T, dir string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, schema.WriterStatusFile)); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer wrote no status")
		}
	}
}
