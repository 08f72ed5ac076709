package stack

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rowpipe/rowpipe/services/api/api"
	"github.com/rowpipe/rowpipe/services/ingester/ingester"
	"github.com/rowpipe/rowpipe/services/writer/writer"
)

// sample is the CSV that `make run` ingests.
const sample = "../../../samples/products.csv"

// syncBuffer is a bytes.Buffer safe for the stack's goroutines to write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{
		NATSListen:          "127.0.0.1:0",
		NATSMaxMemory:       16 << 20,
		NATSMaxBufferedMsgs: 4096,
		NATSMaxBufferedSize: 4 << 20,
		Writer:              writer.Config{DataDir: dir, MetricsAddr: "unused"},
		API:                 api.Config{DataDir: dir, Addr: "127.0.0.1:0", Dataset: "products"},
		Ingester:            ingester.Config{Dataset: "products", Progress: "off"},
	}
	return cfg
}

func start(t *testing.T, cfg Config) (*Stack, *syncBuffer, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := Start(ctx, cfg, log, out, out)
	if err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := s.Wait(); err != nil {
			t.Errorf("Wait after cancel: %v", err)
		}
	})
	return s, out, cancel
}

func get(t *testing.T, url, key string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res.StatusCode, body
}

// waitForCount polls metadata_only until the dataset holds want records.
func waitForCount(t *testing.T, base, key, dataset string, want int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		code, body := get(t, base+"/fetch-data?metadata_only=true&dataset="+dataset, key)
		var meta struct{ Count int }
		if code == http.StatusOK && json.Unmarshal(body, &meta) == nil && meta.Count == want {
			return
		}
		last = fmt.Sprintf("status %d: %.200s", code, body)
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("dataset %s never reached %d records; last answer %s", dataset, want, last)
}

// sampleRecords reads the sample with encoding/csv: an oracle independent
// of the ingester's own reader.
func sampleRecords(t *testing.T) []map[string]string {
	t.Helper()
	f, err := os.Open(sample)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]map[string]string, 0, len(rows)-1)
	for _, r := range rows[1:] {
		m := make(map[string]string, len(r))
		for i, v := range r {
			m[rows[0][i]] = v
		}
		out = append(out, m)
	}
	return out
}

func TestStackIngestsAndServesTheSampleInOneProcess(t *testing.T) {
	cfg := testConfig(t)
	cfg.API.Keys = api.Keys{"test-key-0123456789abcdef"}
	cfg.Ingest = sample
	s, out, _ := start(t, cfg)
	base := "http://" + s.APIAddr().String()
	want := sampleRecords(t)

	waitForCount(t, base, "test-key-0123456789abcdef", "products", len(want))
	var got []map[string]string
	for offset := 0; offset < len(want); offset += 100 {
		code, body := get(t, fmt.Sprintf("%s/fetch-data?limit=100&offset=%d", base, offset), "test-key-0123456789abcdef")
		if code != http.StatusOK {
			t.Fatalf("page at %d: status %d: %s", offset, code, body)
		}
		var page struct{ Data []map[string]string }
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatalf("page at %d: %v", offset, err)
		}
		got = append(got, page.Data...)
	}
	if len(got) != len(want) {
		t.Fatalf("served %d records, the sample has %d", len(got), len(want))
	}
	for i := range want {
		for k, v := range want[i] {
			if got[i][k] != v {
				t.Fatalf("record %d field %q: served %q, want %q", i, k, got[i][k], v)
			}
		}
	}
	// The ingester prints its summary once the writer's state says
	// committed, which may come a moment after the api serves the rows.
	summary := func() bool {
		return strings.Contains(out.String(), "dataset=products") && strings.Contains(out.String(), "rejected=0")
	}
	for deadline := time.Now().Add(10 * time.Second); !summary() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !summary() {
		t.Errorf("no ingest summary line on stdout: %q", out.String())
	}
	if strings.Contains(out.String(), "test-key-0123456789abcdef") {
		t.Error("the configured API key was printed")
	}
}

func TestStackServesNATSClientsOnNATSListen(t *testing.T) {
	cfg := testConfig(t)
	cfg.API.Keys = api.Keys{"another-test-key-0123456789"}
	s, _, _ := start(t, cfg)
	if s.NATSURL() == "" {
		t.Fatal("no client URL although NATS_LISTEN is 127.0.0.1:0")
	}
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatalf("an external client cannot connect to %s: %v", s.NATSURL(), err)
	}
	defer nc.Close()

	// An external ingest, as bin/ingester does it, lands in the api.
	csvPath := filepath.Join(t.TempDir(), "tiny.csv")
	if err := os.WriteFile(csvPath, []byte("sku,qty\nA-1,3\nB-2,5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := ingester.Run(context.Background(), ingester.Config{Source: csvPath, Dataset: "tiny", Wait: true, Progress: "off"}, nc, nil, io.Discard, io.Discard)
	if err != nil || res.Rows != 2 {
		t.Fatalf("ingest over NATS_LISTEN: rows %d, err %v", res.Rows, err)
	}
	code, body := get(t, "http://"+s.APIAddr().String()+"/fetch-data?dataset=tiny&format=ndjson", "another-test-key-0123456789")
	if code != http.StatusOK || string(body) != "{\"sku\":\"A-1\",\"qty\":\"3\"}\n{\"sku\":\"B-2\",\"qty\":\"5\"}\n" {
		t.Fatalf("status %d body %q", code, body)
	}
}

func TestStackWithNATSListenOffHasNoPort(t *testing.T) {
	cfg := testConfig(t)
	cfg.NATSListen = "off"
	cfg.API.Keys = api.Keys{"key-for-the-off-test-0123456"}
	s, _, _ := start(t, cfg)
	if url := s.NATSURL(); url != "" {
		t.Fatalf("NATS_LISTEN=off still serves clients at %s", url)
	}
}

func TestDevModeMakesAKeyKeepsItAndPrintsACurlLine(t *testing.T) {
	cfg := testConfig(t)
	cfg.Dev = true
	s, out, cancel := start(t, cfg)
	raw, err := os.ReadFile(filepath.Join(cfg.Writer.DataDir, ".dev-api-key"))
	if err != nil {
		t.Fatalf("dev key not kept in DATA_DIR: %v", err)
	}
	key := strings.TrimSpace(string(raw))
	banner := out.String()
	console := "http://" + s.APIAddr().String() + "/"
	for _, want := range []string{key, "curl -H 'X-API-Key: " + key + "'", "console    " + console} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
	if code, body := get(t, "http://"+s.APIAddr().String()+"/datasets", key); code != http.StatusOK {
		t.Fatalf("the printed dev key does not work: %d %s", code, body)
	}
	if code, _ := get(t, "http://"+s.APIAddr().String()+"/datasets", ""); code != http.StatusUnauthorized {
		t.Fatalf("dev mode serves without a key: status %d", code)
	}
	if code, body := get(t, console, ""); code != http.StatusOK || !strings.Contains(string(body), "rowpipe console") {
		t.Fatalf("the printed console URL: %d %.200s", code, body)
	}
	cancel()
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}

	// A second run over the same DATA_DIR reuses the key.
	s2, out2, _ := start(t, cfg)
	if !strings.Contains(out2.String(), key) {
		t.Fatalf("second dev run printed another key:\n%s", out2.String())
	}
	_ = s2
}

func TestStackRefusesToStartWithoutAKeyOutsideDevMode(t *testing.T) {
	cfg := testConfig(t)
	_, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "API_KEYS") {
		t.Fatalf("Start without keys: err %v, want one naming API_KEYS", err)
	}
}
