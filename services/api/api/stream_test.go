package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/datadirtest"
)

// page is the envelope as a client decodes it.
type page struct {
	Dataset    string              `json:"dataset"`
	Generation uint64              `json:"generation"`
	Count      uint64              `json:"count"`
	Offset     uint64              `json:"offset"`
	Limit      int                 `json:"limit"`
	Returned   int                 `json:"returned"`
	NextOffset *uint64             `json:"next_offset"`
	Data       []map[string]string `json:"data"`
}

// checkPage checks that a page is internally consistent: returned agrees
// with count, offset and limit; ids run on from offset; next_offset is right.
func checkPage(p page, offset uint64, limit int) error {
	want := 0
	if offset < p.Count {
		want = int(min(uint64(limit), p.Count-offset))
	}
	if p.Returned != want || len(p.Data) != want {
		return fmt.Errorf("returned %d with %d records, want %d (count %d, offset %d)", p.Returned, len(p.Data), want, p.Count, offset)
	}
	for i, r := range p.Data {
		if r["id"] != strconv.FormatUint(offset+uint64(i), 10) {
			return fmt.Errorf("record %d has id %q", i, r["id"])
		}
	}
	next := offset + uint64(want)
	if (next < p.Count) != (p.NextOffset != nil) || (p.NextOffset != nil && *p.NextOffset != next) {
		return fmt.Errorf("next_offset %v, want %d of %d", p.NextOffset, next, p.Count)
	}
	return nil
}

// rowsOf is the record count of generation g in the swap test: each
// generation has another count, so a count names its generation.
func rowsOf(g uint64) int { return 40 + 13*int(g) }

func TestSwapUnderConcurrentReadersEveryPageIsOneGeneration(t *testing.T) {
	h := start(t, nil)
	gen := func(g uint64) datadirtest.Gen {
		return datadirtest.Gen{Dataset: "swap", Generation: g, Rows: rowsOf(g), Tag: "v" + strconv.FormatUint(g, 10)}
	}
	h.publish(gen(1))
	var (
		stop             atomic.Bool
		pages, gone      atomic.Int64
		wg               sync.WaitGroup
		mu               sync.Mutex
		failures         []string
		latest, lastSeen atomic.Uint64
	)
	latest.Store(1)
	lastSeen.Store(1)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 10 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(r), 7))
			for !stop.Load() {
				limit := []int{1, 7, 100, 1000}[rnd.IntN(4)]
				offset := uint64(rnd.IntN(400))
				q := fmt.Sprintf("/fetch-data?dataset=swap&limit=%d&offset=%d", limit, offset)
				pin := uint64(0)
				if rnd.IntN(4) == 0 {
					pin = max(1, lastSeen.Load())
					if back := uint64(rnd.IntN(3)); pin > back {
						pin -= back // now and then one already pruned
					}
					q += "&generation=" + strconv.FormatUint(pin, 10)
				}
				if rnd.IntN(5) == 0 {
					q += "&format=ndjson"
				}
				a := h.get(q)
				if pin != 0 && a.status == http.StatusGone {
					gone.Add(1)
					continue
				}
				if a.status != 200 {
					fail("%s: status %d %s", q, a.status, a.body)
					continue
				}
				var p page
				if strings.Contains(q, "ndjson") {
					p = ndjsonPage(a, offset)
				} else if err := json.Unmarshal(a.body, &p); err != nil {
					fail("%s: %v", q, err)
					continue
				}
				g := p.Generation
				if p.Count != uint64(rowsOf(g)) {
					fail("%s: generation %d with count %d, want %d: a mixed header?", q, g, p.Count, rowsOf(g))
					continue
				}
				if pin != 0 && g != pin {
					fail("%s: pinned, answered generation %d", q, g)
				}
				if err := checkPage(p, offset, limit); err != nil {
					fail("%s: %v", q, err)
				}
				for _, rec := range p.Data {
					if rec["ver"] != "v"+strconv.FormatUint(g, 10) {
						fail("%s: generation %d holds a record of %q", q, g, rec["ver"])
						break
					}
				}
				lastSeen.Store(g)
				pages.Add(1)
			}
		}()
	}
	// The writer's side: a new generation every few ms, keeping two.
	for g := uint64(2); g <= 30; g++ {
		h.publish(gen(g))
		latest.Store(g)
		if g > 2 {
			datadirtest.Remove(t, h.dataDir, "swap", g-2)
		}
		for i := 0; i < 20 && !stop.Load(); i++ {
			runtime.Gosched()
			time.Sleep(100 * time.Microsecond)
		}
	}
	waitFor(t, "a few more pages of the last generation", func() bool { return lastSeen.Load() == 30 })
	stop.Store(true)
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	if pages.Load() < 50 {
		t.Errorf("only %d pages were read during the swaps", pages.Load())
	}
	t.Logf("%d pages over 29 swaps, %d pinned pages answered 410", pages.Load(), gone.Load())
	waitFor(t, "every lease released", func() bool { return h.leases() == 0 })
	if open, _ := h.srv.store.Stats(); open > 2 {
		t.Errorf("%d generations still open, want at most the current and one pinned", open)
	}
}

// ndjsonPage reads an NDJSON answer as a page of records (no envelope:
// generation and count come from ETag-independent headers).
func ndjsonPage(a answer, offset uint64) page {
	p := page{Offset: offset}
	for _, line := range bytes.Split(bytes.TrimSuffix(a.body, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r map[string]string
		json.Unmarshal(line, &r)
		p.Data = append(p.Data, r)
	}
	p.Returned = len(p.Data)
	p.Count, _ = strconv.ParseUint(a.header.Get("X-Total-Count"), 10, 64)
	if v, err := strconv.Atoi(strings.TrimPrefix(p.Data0Ver(), "v")); err == nil {
		p.Generation = uint64(v)
	} else {
		p.Generation = genOfCount(p.Count)
	}
	if next := p.Offset + uint64(p.Returned); next < p.Count {
		p.NextOffset = &next
	}
	return p
}

func (p page) Data0Ver() string {
	if len(p.Data) == 0 {
		return ""
	}
	return p.Data[0]["ver"]
}

func genOfCount(n uint64) uint64 { return (n - 40) / 13 }

func TestTornHeaderRewritesUnderConcurrentReaders(t *testing.T) {
	h := start(t, nil)
	g := datadirtest.Gen{Dataset: "torn", Generation: 3, Rows: 100, Mode: schema.ModeAppend}
	full := datadirtest.Publish(t, h.dataDir, g)
	short := full
	short.Count = 60
	path, _ := datadirtest.Paths(h.dataDir, "torn", 3)
	encFull, _ := schema.EncodeHeader(full)
	encShort, _ := schema.EncodeHeader(short)
	cut := bytes.Index(encFull, []byte(`"count"`)) + 4
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads atomic.Int64
	errs := make(chan string, 10)
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				q := "/fetch-data?dataset=torn&limit=50&offset=40"
				if (i+r)%2 == 0 {
					q = "/fetch-data?dataset=torn&metadata_only=true"
				}
				a := h.get(q)
				var p page
				if a.status != 200 || json.Unmarshal(a.body, &p) != nil {
					select {
					case errs <- fmt.Sprintf("%s: %d %s", q, a.status, a.body):
					default:
					}
					continue
				}
				if p.Count != 60 && p.Count != 100 {
					errs <- fmt.Sprintf("%s: count %d, neither header", q, p.Count)
				}
				if p.Data != nil {
					if err := checkPage(p, 40, 50); err != nil {
						errs <- fmt.Sprintf("%s: %v", q, err)
					}
				}
				reads.Add(1)
			}
		}()
	}
	// Rewrite the header 400 times in two writes each, so readers can
	// catch it half-written.
	for i := range 400 {
		enc := [2][]byte{encShort, encFull}[i%2]
		f.WriteAt(enc[:cut], 0)
		runtime.Gosched()
		f.WriteAt(enc[cut:], int64(cut))
		time.Sleep(50 * time.Microsecond)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	t.Logf("%d reads, %d torn header reads retried", reads.Load(), h.srv.store.TornRetries())
}

var millionOnce struct {
	sync.Once
	dir string
	gen datadirtest.Gen
}

// millionRows writes, once per test binary, a dataset of 1,000,000
// records in a folder removed by TestMain.
func millionRows(t testing.TB) (string, datadirtest.Gen) {
	millionOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rowpipe-api-1m-")
		if err != nil {
			t.Fatal(err)
		}
		millionOnce.dir = dir
		millionOnce.gen = datadirtest.Gen{Dataset: "million", Generation: 11, Rows: 1_000_000}
		datadirtest.Publish(t, dir, millionOnce.gen)
	})
	if millionOnce.dir == "" {
		t.Fatal("the 1M-row dataset could not be written")
	}
	return millionOnce.dir, millionOnce.gen
}

func TestMain(m *testing.M) {
	code := m.Run()
	if millionOnce.dir != "" {
		os.RemoveAll(millionOnce.dir)
	}
	os.Exit(code)
}

func TestLastPageOfAMillionRows(t *testing.T) {
	dir, g := millionRows(t)
	h := start(t, func(c *Config) { c.DataDir = dir })
	for _, tc := range []struct {
		offset, limit, returned int
		next                    string
	}{
		{999_000, 1000, 1000, "null"},
		{999_999, 10, 1, "null"},
		{500_000, 3, 3, "500003"},
		{0, 2, 2, "2"},
	} {
		a := h.get(fmt.Sprintf("/fetch-data?dataset=million&limit=%d&offset=%d", tc.limit, tc.offset))
		want := envelope("million", 11, 1_000_000, uint64(tc.offset), tc.limit, tc.returned, tc.next, lines(t, g, tc.offset, tc.returned))
		if a.status != 200 || string(a.body) != want {
			t.Fatalf("offset %d: status %d, %d bytes (want %d)", tc.offset, a.status, len(a.body), len(want))
		}
	}
}

// bigRecords makes a dataset whose page of 1000 records is ~16 MB of
// barely compressible text, far more than the socket buffers hold.
func bigRecords(h *harness) datadirtest.Gen {
	rnd := rand.New(rand.NewPCG(1, 2))
	blob := make([]byte, 24<<10)
	for i := range blob {
		blob[i] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[rnd.IntN(62)]
	}
	return h.publish(datadirtest.Gen{Dataset: "big", Generation: 2, Rows: 1000, Row: func(i int, vals []string) {
		vals[0] = strconv.Itoa(i)
		vals[1] = string(blob[i%1000 : i%1000+16<<10])
		vals[2] = "big"
	}})
}

// rawRequest sends a GET over a fresh connection and reads only the first
// n bytes of the answer.
func rawRequest(t *testing.T, h *harness, path string, headers string, n int) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\nX-API-Key: %s\r\n%s\r\n", path, testKey, headers)
	if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn)
}

func TestClientGoneMidStreamReleasesTheGeneration(t *testing.T) {
	h := start(t, nil)
	bigRecords(h)
	for _, tc := range []struct{ name, query, headers string }{
		{"json", "", ""},
		{"ndjson", "&format=ndjson", ""},
		{"csv", "&format=csv", ""},
		{"gzip", "", "Accept-Encoding: gzip\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(h.srv.metrics.StreamErrors)
			c := rawRequest(t, h, "/fetch-data?dataset=big&limit=1000"+tc.query, tc.headers, 4096)
			if n := h.leases(); n != 1 {
				t.Errorf("%d leases while the answer streams, want 1", n)
			}
			c.SetLinger(0) // reset, as a vanished client does
			c.Close()
			waitFor(t, "the lease released after the client left", func() bool { return h.leases() == 0 })
			waitFor(t, "the early end counted", func() bool { return testutil.ToFloat64(h.srv.metrics.StreamErrors) > before })
		})
	}
	if a := h.get("/fetch-data?dataset=big&limit=2"); a.status != 200 {
		t.Fatalf("after the disconnects: %d", a.status)
	}
}

// A stream can end after its request: what it logs then must not read
// the request's bytes, which the next request on the reused context
// overwrites.
func TestAnAbandonedStreamLogsItsOwnDataset(t *testing.T) {
	h := start(t, nil)
	bigRecords(h)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 { // other requests, on new connections, reusing the contexts
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://")); err == nil {
					fmt.Fprintf(c, "GET /datasets/xyz/records HTTP/1.1\r\nHost: test\r\nX-API-Key: %s\r\nConnection: close\r\n\r\n", testKey)
					io.Copy(io.Discard, c)
					c.Close()
				}
			}
		})
	}
	for range 300 {
		c := rawRequest(t, h, "/datasets/big/records?limit=1000", "", 4096)
		c.SetLinger(0)
		c.Close()
	}
	close(stop)
	wg.Wait()
	waitFor(t, "the leases released", func() bool { return h.leases() == 0 })
	for line := range strings.Lines(h.logs.String()) {
		if strings.Contains(line, "stopped early") && !strings.Contains(line, " dataset=big ") {
			t.Fatalf("an early end logged under another dataset: %s", line)
		}
	}
}

func TestStalledClientIsCutAtTheWriteTimeout(t *testing.T) {
	h := start(t, func(c *Config) { c.WriteTimeout = 300 * time.Millisecond })
	bigRecords(h)
	c := rawRequest(t, h, "/fetch-data?dataset=big&limit=1000", "", 1024)
	defer c.Close()
	// The client neither reads nor leaves.
	waitFor(t, "the lease released by the write timeout", func() bool { return h.leases() == 0 })
}

func TestStalledNDJSONClientHoldsUpNoOtherReader(t *testing.T) {
	h := start(t, func(c *Config) { c.WriteTimeout = time.Hour })
	g := bigRecords(h)
	stalled := rawRequest(t, h, "/fetch-data?dataset=big&limit=1000&format=ndjson", "", 4096)
	defer stalled.Close()
	// The first client neither reads nor leaves; another reader of the
	// same generation file gets its whole answer meanwhile.
	a := h.get("/fetch-data?dataset=big&limit=1000&offset=0&format=ndjson")
	if want := append(bytes.Join(lines(t, g, 0, 1000), []byte("\n")), '\n'); a.status != 200 || !bytes.Equal(a.body, want) {
		t.Fatalf("the second reader: %d, %d bytes, want %d", a.status, len(a.body), len(want))
	}
	if n := h.leases(); n != 1 {
		t.Fatalf("%d leases, want the stalled answer's", n)
	}
}

func TestPrunedGenerationKeepsStreamingToItsReader(t *testing.T) {
	h := start(t, nil)
	g := bigRecords(h)
	resp, err := http.NewRequest(http.MethodGet, h.base+"/fetch-data?dataset=big&limit=1000&offset=0", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Header.Set("X-API-Key", testKey)
	r, err := h.client.Do(resp)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	br := bufio.NewReader(r.Body)
	if _, err := br.Peek(1024); err != nil {
		t.Fatal(err)
	}
	// Meanwhile a new generation lands and the old one is pruned.
	h.publish(datadirtest.Gen{Dataset: "big", Generation: 3, Rows: 1, Tag: "new"})
	datadirtest.Remove(t, h.dataDir, "big", 2)
	var p page
	if err := json.NewDecoder(br).Decode(&p); err != nil {
		t.Fatalf("the rest of the answer: %v", err)
	}
	if p.Generation != 2 || len(p.Data) != 1000 || p.Data[999]["vals"] != "" || p.Data[999]["name"] != lineField(t, g, 999, "name") {
		t.Fatalf("generation %d, %d records", p.Generation, len(p.Data))
	}
	if o := h.get("/fetch-data?dataset=big").json(t); o["generation"] != 3.0 {
		t.Fatalf("after the swap: %v", o["generation"])
	}
	waitFor(t, "the pruned generation closed", func() bool { open, _ := h.srv.store.Stats(); return open == 1 })
}

func lineField(t testing.TB, g datadirtest.Gen, i int, field string) string {
	var m map[string]string
	json.Unmarshal(g.Line(t, i), &m)
	return m[field]
}

func TestGracefulShutdownLetsRunningStreamsFinish(t *testing.T) {
	h := start(t, func(c *Config) { c.ShutdownTimeout = 20 * time.Second })
	bigRecords(h)
	req, _ := http.NewRequest(http.MethodGet, h.base+"/fetch-data?dataset=big&limit=1000", nil)
	req.Header.Set("X-API-Key", testKey)
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	br.Peek(1024)
	h.cancel()
	h.cancel = nil
	waitFor(t, "shutdown started", h.srv.stopping.Load)
	select {
	case err := <-h.done:
		t.Fatalf("Run returned (%v) while an answer was still streaming", err)
	default:
	}
	var p page
	if err := json.NewDecoder(br).Decode(&p); err != nil || len(p.Data) != 1000 {
		t.Fatalf("the streaming answer was cut by the shutdown: %v, %d records", err, len(p.Data))
	}
	resp.Body.Close()
	h.client.CloseIdleConnections()
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return once the stream had finished")
	}
	if _, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://")); err == nil {
		t.Error("a new connection was accepted after shutdown")
	}
}

func TestShutdownDeadlineIsKept(t *testing.T) {
	h := start(t, func(c *Config) { c.ShutdownTimeout = 200 * time.Millisecond })
	bigRecords(h)
	c := rawRequest(t, h, "/fetch-data?dataset=big&limit=1000", "", 1024)
	defer c.Close()
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err == nil || !strings.Contains(err.Error(), "still running") {
			t.Fatalf("Run with a stalled stream at the deadline: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run waited far past its shutdown deadline")
	}
}

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	h := start(t, func(c *Config) { c.MaxLimit = 321 })
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Parameters map[string]struct {
				Schema map[string]any `json:"schema"`
			} `json:"parameters"`
		} `json:"components"`
	}
	a := h.get("/openapi.json", "X-API-Key", "")
	if err := json.Unmarshal(a.body, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("%v %s", err, doc.OpenAPI)
	}
	registered := map[string]bool{}
	for _, r := range h.srv.App().GetRoutes(true) {
		path := r.Path
		for _, p := range r.Params {
			path = strings.Replace(path, ":"+p, "{"+p+"}", 1)
		}
		op := strings.ToLower(r.Method) + " " + path
		registered[op] = true
		if _, ok := doc.Paths[path][strings.ToLower(r.Method)]; !ok {
			t.Errorf("route %s is not in /openapi.json", op)
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" { // shared by the path's operations
				continue
			}
			if !registered[method+" "+path] {
				t.Errorf("/openapi.json documents %s %s, which is not a route", method, path)
			}
		}
	}
	if len(registered) < 16 {
		t.Errorf("only %d routes registered", len(registered))
	}
	if limit := doc.Components.Parameters["limit"].Schema; limit["maximum"] != 321.0 || limit["default"] != 10.0 {
		t.Errorf("limit: maximum %v, default %v, want MAX_LIMIT 321, default 10", limit["maximum"], limit["default"])
	}
}

func TestMetricsShowEveryComponentOfASharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	writerMetric := prometheus.NewCounter(prometheus.CounterOpts{Name: "rowpipe_writer_rows_written_total", Help: "stand-in for the writer's metrics"})
	reg.MustRegister(writerMetric)
	writerMetric.Add(3)
	h := start(t, nil, WithRegisterer(reg), WithGatherer(reg))
	h.get("/healthz")
	body := string(h.get("/metrics", "X-API-Key", "").body)
	for _, want := range []string{"rowpipe_writer_rows_written_total 3", "# TYPE rowpipe_api_requests_total counter"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "go_goroutines") {
		t.Error("the api added Go collectors to a registry it does not own")
	}
	// A second api on the same registry is refused, not silently merged.
	if _, err := New(Config{DataDir: t.TempDir(), Keys: Keys{"k"}}, WithRegisterer(reg)); err == nil {
		t.Error("two apis registered the same metrics")
	}
}

func TestNewRefusesToStartWithoutKeys(t *testing.T) {
	_, err := New(Config{DataDir: t.TempDir()})
	if !errors.Is(err, ErrNoKeys) || !strings.Contains(err.Error(), "API_KEYS") {
		t.Fatalf("no keys: %v", err)
	}
	if _, err := New(Config{DataDir: t.TempDir(), Keys: Keys{" ", ""}}); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("blank keys: %v", err)
	}
	if _, err := New(Config{DataDir: t.TempDir(), Auth: "disabled"}); err == nil || !strings.Contains(err.Error(), "API_AUTH") {
		t.Fatalf("API_AUTH=disabled: %v", err)
	}
	h := start(t, func(c *Config) { c.Keys = nil; c.Auth = AuthOff })
	proto(h)
	if a := h.get("/fetch-data?dataset=proto", "X-API-Key", ""); a.status != 200 {
		t.Fatalf("API_AUTH=off: %d", a.status)
	}
	if !strings.Contains(h.logs.String(), "API_AUTH=off") {
		t.Error("serving without keys was not logged")
	}
	if _, err := New(Config{DataDir: t.TempDir(), Keys: Keys{"k"}, Dataset: "Bad Name"}); err == nil || !strings.Contains(err.Error(), "DATASET") {
		t.Fatalf("bad DATASET: %v", err)
	}
}

func TestKeysNeverShowInPrintsOrLogs(t *testing.T) {
	t.Setenv("API_KEYS", "sekrit-one, sekrit-two")
	t.Setenv("DATA_DIR", t.TempDir())
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Keys) != 2 || cfg.Keys[1] != "sekrit-two" {
		t.Fatalf("API_KEYS read as %d keys", len(cfg.Keys))
	}
	js, _ := json.Marshal(cfg)
	for _, s := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), string(js)} {
		if strings.Contains(s, "sekrit") {
			t.Errorf("a key shows in %s", s)
		}
	}
	h := start(t, func(c *Config) { *c = cfg; c.DataDir = t.TempDir() })
	proto(h)
	h.get("/fetch-data?dataset=proto", "X-API-Key", "sekrit-one")
	h.get("/fetch-data?dataset=proto", "X-API-Key", "sekrit-wrong")
	h.get("/fetch-data?dataset=proto", "X-API-Key", "", "Authorization", "Bearer sekrit-bad")
	h.stop()
	if logs := h.logs.String(); strings.Contains(logs, "sekrit") {
		t.Errorf("a key shows in the log:\n%s", logs)
	}
}

func TestDefaultsMatchTheContract(t *testing.T) {
	for _, k := range []string{"DATA_DIR", "DATASET", "API_ADDR", "API_KEYS", "API_KEYS_FILE", "MAX_LIMIT"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "./data" || cfg.Dataset != "products" || cfg.Addr != ":5000" || cfg.MaxLimit != 1000 || len(cfg.Keys) != 0 || cfg.Auth != AuthOn {
		t.Fatalf("%+v", cfg)
	}
	if got := (Config{}).withDefaults(); got.DataDir != cfg.DataDir || got.MaxLimit != 1000 || got.ShutdownTimeout != cfg.ShutdownTimeout {
		t.Fatalf("a zero Config's defaults differ from the environment's: %+v", got)
	}
}

func TestPanicIsAJSON500WithoutAStack(t *testing.T) {
	h := startWith(t, nil, func(s *Server) {
		s.App().Get("/boom", func(*fiber.Ctx) error { panic("kaboom") })
	})
	a := h.get("/boom")
	wantError(t, a, 500, "")
	if strings.Contains(string(a.body), "kaboom") {
		t.Errorf("the panic shows in the answer: %s", a.body)
	}
	if !strings.Contains(h.logs.String(), "kaboom") {
		t.Error("the panic was not logged")
	}
	if a := h.get("/healthz"); a.status != 200 {
		t.Fatal("the server did not survive the panic")
	}
}

func TestManyClientsAtOnceUseBoundedMemory(t *testing.T) {
	h := start(t, nil)
	bigRecords(h)
	var wg sync.WaitGroup
	var m0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	conns := make([]*net.TCPConn, 0, 50)
	var mu sync.Mutex
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := rawRequest(t, h, "/fetch-data?dataset=big&limit=1000", "", 1024)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	waitFor(t, "50 streams in flight", func() bool { return h.leases() == 50 })
	var m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m1)
	// 50 answers of ~16 MB each are in flight; what they hold is a few
	// buffers each, not their bodies.
	if grown := int64(m1.HeapInuse) - int64(m0.HeapInuse); grown > 50*256<<10 {
		t.Errorf("heap grew by %d KiB for 50 streaming answers", grown>>10)
	}
	for _, c := range conns {
		c.SetLinger(0)
		c.Close()
	}
	waitFor(t, "every lease released", func() bool { return h.leases() == 0 })
}

func TestConnectionLimit(t *testing.T) {
	h := start(t, func(c *Config) { c.MaxConns = 2 })
	bigRecords(h)
	for range 2 {
		c := rawRequest(t, h, "/fetch-data?dataset=big&limit=1000", "", 1024)
		defer c.Close()
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a third connection with API_MAX_CONNS=2: %d", resp.StatusCode)
	}
}

func TestAFileShorterThanItsIndexCutsTheAnswerAndIsLogged(t *testing.T) {
	h := start(t, nil)
	proto(h)
	big := bigRecords(h)
	cut := func(dataset string, gen uint64, by int64) {
		data, _ := datadirtest.Paths(h.dataDir, dataset, gen)
		st, _ := os.Stat(data)
		if err := os.Truncate(data, st.Size()-by); err != nil {
			t.Fatal(err)
		}
	}
	cut("proto", 7, 5)
	cut("big", big.Generation, 5)

	// A page read whole before its headers go out (see oneWrite) is a
	// clean 503 that says to retry: nothing of the page was sent.
	a := h.get("/fetch-data?dataset=proto&limit=25")
	if a.status != http.StatusServiceUnavailable || !strings.Contains(string(a.body), `"code":"unavailable"`) || a.header.Get("Retry-After") == "" {
		t.Fatalf("a small page over a truncated file: %d %s, want 503 unavailable with Retry-After", a.status, a.body)
	}
	if a.header.Get("ETag") != "" || a.header.Get("X-Total-Count") != "" {
		t.Errorf("the 503 carries the page's headers: %v", a.header)
	}
	// A CSV page's 503 is the JSON error, not a CSV attachment.
	if a := h.get("/fetch-data?dataset=proto&limit=25&format=csv"); a.status != http.StatusServiceUnavailable || a.header.Get("Content-Disposition") != "" {
		t.Errorf("a small CSV page over a truncated file: %d, Content-Disposition %q", a.status, a.header.Get("Content-Disposition"))
	}

	// A streamed page is cut after its headers, in every format and with
	// gzip (sent without a length): never a complete-looking answer.
	for _, q := range []struct{ query, encoding string }{{"", ""}, {"&format=ndjson", ""}, {"&format=csv", ""}, {"", "gzip"}} {
		req, _ := http.NewRequest(http.MethodGet, h.base+"/fetch-data?dataset=big&limit=1000"+q.query, nil)
		req.Header.Set("X-API-Key", testKey)
		req.Header.Set("Accept-Encoding", q.encoding)
		if resp, err := h.client.Do(req); err == nil {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Fatalf("%s: a truncated file was served as a whole answer (%d bytes)", q, len(body))
			}
		}
	}
	waitFor(t, "the lease released", func() bool { return h.leases() == 0 })
	if n := strings.Count(h.logs.String(), "could not be read"); n < 5 {
		t.Errorf("%d short reads logged, want 5:\n%s", n, h.logs.String())
	}
	// The pages before the cut still serve.
	for _, q := range []string{"/fetch-data?dataset=proto&limit=5", "/fetch-data?dataset=big&limit=5"} {
		if a := h.get(q); a.status != 200 || !json.Valid(a.body) {
			t.Fatalf("%s: %d", q, a.status)
		}
	}
}
