package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rowpipe/rowpipe/services/api/api"
	"github.com/rowpipe/rowpipe/services/ingester/ingester"
	"github.com/rowpipe/rowpipe/services/stack/stack"
	"github.com/rowpipe/rowpipe/services/writer/writer"
)

const testKey = "faults-test-key-0123456789abcdef"

// startStack runs the all-in-one stack (embedded NATS on loopback, writer,
// api) on a fresh DATA_DIR; it stops at the end of the test.
func startStack(t *testing.T, mod func(*stack.Config)) *stack.Stack {
	t.Helper()
	dir := t.TempDir()
	// Not "127.0.0.1:0": the stack hands port 0 to nats-server, which
	// reads it as its default port 4222 (see doc.go), so two stacks on one
	// machine collide. A port known to be free a moment ago instead.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := l.Addr().String()
	l.Close()
	cfg := stack.Config{
		NATSListen:          natsAddr,
		NATSMaxMemory:       16 << 20,
		NATSMaxBufferedMsgs: 4096,
		NATSMaxBufferedSize: 4 << 20,
		Writer:              writer.Config{DataDir: dir, MetricsAddr: "unused"},
		API:                 api.Config{DataDir: dir, Addr: "127.0.0.1:0", Dataset: "products", Keys: api.Keys{testKey}},
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	s, err := stack.Start(ctx, cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})), io.Discard, io.Discard)
	if err != nil {
		cancel()
		t.Fatalf("stack.Start: %v; warnings and errors logged:\n%s", err, tail(logs.String(), 3000))
	}
	t.Cleanup(func() {
		cancel()
		if err := s.Wait(); err != nil {
			t.Errorf("stack stopped with: %v", err)
		}
	})
	return s
}

// page is /fetch-data's JSON answer, records kept as their raw bytes.
type page struct {
	Dataset    string            `json:"dataset"`
	Generation uint64            `json:"generation"`
	Count      uint64            `json:"count"`
	Offset     uint64            `json:"offset"`
	Limit      uint64            `json:"limit"`
	Returned   uint64            `json:"returned"`
	NextOffset *uint64           `json:"next_offset"`
	Data       []json.RawMessage `json:"data"`
}

// TestConcurrentReadersWhileResyncsSwapGenerations has 32 clients paging
// through the api of an in-process stack while the real ingester re-syncs
// the dataset 5 times (6 versions, each with its own row count and its
// version in every record). Half the readers follow next_offset on the
// current generation; the other half pin generation=G (JSON or NDJSON)
// and page through all of G, accepting only 410 once G is pruned. Every
// answer must be one generation throughout: its count is the row count of
// exactly one version, every record is that version's record at
// offset+i byte for byte, returned and next_offset agree with count, and
// the generation number maps to one version, the one the ingester
// committed under that number.
func TestConcurrentReadersWhileResyncsSwapGenerations(t *testing.T) {
	rng := seed(t)
	const versions, readers = 6, 32
	rowsOf := func(v int) int { return 3000 + 731*v }
	s := startStack(t, nil)
	base := "http://" + s.APIAddr().String()
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	dir := t.TempDir()
	files := make([]string, versions)
	want := make([][][]byte, versions)
	byCount := map[uint64]int{}
	for v := range versions {
		files[v] = filepath.Join(dir, fmt.Sprintf("v%d.csv", v))
		want[v] = genCSV(t, files[v], rowsOf(v), v, rng.Uint64())
		byCount[uint64(rowsOf(v))] = v
	}
	ingest := func(v int) uint64 {
		res, err := ingester.Run(context.Background(), ingester.Config{Source: files[v], Dataset: "products", Wait: true, Progress: "off"},
			nc, nil, io.Discard, io.Discard)
		if err != nil || res.Outcome != "committed" {
			t.Fatalf("ingest of version %d: %v (%+v)", v, err, res)
		}
		return res.Generation
	}
	committed := map[uint64]int{ingest(0): 0}

	var (
		mu       sync.Mutex
		seen     = map[uint64]int{} // generation -> version, as the answers show it
		answers  atomic.Int64
		gone     atomic.Int64
		switched atomic.Int64
		failed   atomic.Bool
	)
	fail := func(format string, args ...any) {
		if failed.CompareAndSwap(false, true) {
			t.Errorf(format, args...)
		}
	}
	observe := func(gen uint64, v int) {
		mu.Lock()
		defer mu.Unlock()
		if old, ok := seen[gen]; ok && old != v {
			fail("generation %d served version %d and version %d", gen, old, v)
		}
		seen[gen] = v
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: readers}, Timeout: 30 * time.Second}
	get := func(url string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("X-API-Key", testKey)
		res, err := client.Do(req)
		if err != nil {
			fail("GET %s: %v", url, err)
			return 0, nil
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			fail("GET %s: reading the body: %v", url, err)
		}
		answers.Add(1)
		return res.StatusCode, b
	}
	// checkPage proves one JSON answer is internally consistent and returns
	// its version.
	checkPage := func(url string, b []byte) (page, int) {
		var p page
		if err := json.Unmarshal(b, &p); err != nil {
			fail("%s: not JSON: %v: %.200s", url, err, b)
			return p, -1
		}
		v, ok := byCount[p.Count]
		if !ok {
			fail("%s: count %d is no version's row count", url, p.Count)
			return p, -1
		}
		observe(p.Generation, v)
		wantN := min(p.Limit, p.Count-min(p.Offset, p.Count))
		if p.Returned != wantN || uint64(len(p.Data)) != wantN {
			fail("%s: generation %d count %d offset %d limit %d: returned %d with %d records, want %d", url, p.Generation, p.Count, p.Offset, p.Limit, p.Returned, len(p.Data), wantN)
		}
		end := p.Offset + uint64(len(p.Data))
		if (p.NextOffset == nil) != (end >= p.Count) || p.NextOffset != nil && *p.NextOffset != end {
			fail("%s: next_offset %v at %d of %d", url, p.NextOffset, end, p.Count)
		}
		for i, r := range p.Data {
			if !bytes.Equal(r, want[v][p.Offset+uint64(i)]) {
				fail("%s: generation %d (version %d) record %d is not that version's: %.120s", url, p.Generation, v, p.Offset+uint64(i), r)
				break
			}
		}
		return p, v
	}
	limits := []int{1, 7, 10, 100, 1000}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := range readers {
		wg.Add(1)
		rr := rand.New(rand.NewPCG(rng.Uint64(), uint64(r)))
		go func() {
			defer wg.Done()
			for !failed.Load() {
				select {
				case <-stop:
					return
				default:
				}
				limit := limits[rr.IntN(len(limits))]
				if r%2 == 0 { // follow next_offset on whatever is current
					offset := uint64(rr.IntN(2000))
					var gen uint64
					for range 20 {
						url := fmt.Sprintf("%s/fetch-data?limit=%d&offset=%d", base, limit, offset)
						code, b := get(url)
						if code != http.StatusOK {
							fail("%s: status %d: %.200s", url, code, b)
							return
						}
						p, _ := checkPage(url, b)
						if gen != 0 && p.Generation != gen {
							switched.Add(1)
						}
						gen = p.Generation
						if p.NextOffset == nil {
							break
						}
						offset = *p.NextOffset
					}
					continue
				}
				// Pin the current generation and read all of it.
				code, b := get(base + "/fetch-data?metadata_only=true")
				if code != http.StatusOK {
					fail("metadata: status %d: %.200s", code, b)
					return
				}
				var meta struct{ Generation, Count uint64 }
				json.Unmarshal(b, &meta)
				v, ok := byCount[meta.Count]
				if !ok {
					fail("metadata count %d is no version's", meta.Count)
					return
				}
				observe(meta.Generation, v)
				ndjson := r%4 == 1
				for offset := uint64(0); offset < meta.Count; offset += uint64(limit) {
					url := fmt.Sprintf("%s/fetch-data?generation=%d&limit=%d&offset=%d", base, meta.Generation, limit, offset)
					if ndjson {
						url += "&format=ndjson"
					}
					code, b := get(url)
					if code == http.StatusGone {
						gone.Add(1)
						break
					}
					if code != http.StatusOK {
						fail("%s: status %d: %.200s", url, code, b)
						return
					}
					if !ndjson {
						if p, _ := checkPage(url, b); p.Generation != meta.Generation {
							fail("%s: pinned to %d, served %d", url, meta.Generation, p.Generation)
						}
						continue
					}
					sc := bufio.NewScanner(bytes.NewReader(b))
					sc.Buffer(nil, 1<<20)
					i := offset
					for sc.Scan() {
						if i >= meta.Count || !bytes.Equal(sc.Bytes(), want[v][i]) {
							fail("%s: line %d is not generation %d's (version %d) record: %.120s", url, i-offset, meta.Generation, v, sc.Bytes())
							break
						}
						i++
					}
					if n := min(uint64(limit), meta.Count-offset); i-offset != n {
						fail("%s: %d lines, want %d", url, i-offset, n)
					}
				}
			}
		}()
	}
	for v := 1; v < versions; v++ {
		time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond)
		committed[ingest(v)] = v
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	for gen, v := range seen {
		if cv, ok := committed[gen]; !ok || cv != v {
			t.Errorf("answers served generation %d as version %d; the ingester committed it as version %d (known: %t)", gen, v, cv, ok)
		}
	}
	if len(seen) < 3 {
		t.Errorf("the readers saw only %d generations of %d: the swaps did not happen under them", len(seen), versions)
	}
	t.Logf("%d answers, %d generations seen, %d page walks crossed a swap, %d pinned reads ended in 410", answers.Load(), len(seen), switched.Load(), gone.Load())
}

// TestACommittedSyncIsServedByTheNextRequest re-syncs the dataset while
// the api serves it, and asks right after each commit: the first request
// after `ingester --wait` returns must already answer the new generation
// (the api looks at CURRENT on every request).
func TestACommittedSyncIsServedByTheNextRequest(t *testing.T) {
	rng := seed(t)
	s := startStack(t, nil)
	url := "http://" + s.APIAddr().String() + "/fetch-data?dataset=products&limit=1"
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	get := func() page {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("X-API-Key", testKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p page
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, %v", resp.StatusCode, err)
		}
		return p
	}
	dir := t.TempDir()
	for v := range 5 {
		path := filepath.Join(dir, fmt.Sprintf("v%d.csv", v))
		rows := 200 + 37*v
		genCSV(t, path, rows, v, rng.Uint64())
		res, err := ingester.Run(context.Background(), ingester.Config{Source: path, Dataset: "products", Wait: true, Progress: "off"},
			nc, nil, io.Discard, io.Discard)
		if err != nil || res.Outcome != "committed" {
			t.Fatalf("ingest of version %d: %v (%+v)", v, err, res)
		}
		for i := range 3 { // the first after the commit, then the usual path
			if p := get(); p.Generation != res.Generation || p.Count != uint64(rows) {
				t.Fatalf("version %d, request %d after the commit: generation %d with %d rows, want %d with %d",
					v, i, p.Generation, p.Count, res.Generation, rows)
			}
		}
	}
}
