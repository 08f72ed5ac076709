package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
	"github.com/rowpipe/rowpipe/services/api/api"
	"github.com/rowpipe/rowpipe/services/ingester/ingester"
)

// bigDataset ingests rows records of about 1.2 KB each through the real
// pipeline (JetStream, ingester, writer) and returns the DATA_DIR.
func bigDataset(t *testing.T, rows int) string {
	t.Helper()
	srv := jstest.Start(t)
	dir := t.TempDir()
	stopWriter := startWriter(t, srv.Conn(), dir)
	csvPath := filepath.Join(t.TempDir(), "big.csv")
	genCSVPad(t, csvPath, rows, 1, 7, 1100)
	res, err := ingester.Run(context.Background(), ingester.Config{Source: csvPath, Dataset: "products", Wait: true, Progress: "off"},
		srv.Conn(), nil, io.Discard, io.Discard)
	if err != nil || res.Outcome != "committed" {
		t.Fatalf("ingest: %v (%+v)", err, res)
	}
	stopWriter() // the api alone in the process from here on
	srv.Shutdown()
	return dir
}

// startAPI runs the api in-process on loopback over dir.
func startAPI(t *testing.T, dir string, mod func(*api.Config)) string {
	t.Helper()
	cfg := api.Config{DataDir: dir, Addr: "127.0.0.1:0", Keys: api.Keys{testKey}, WriteTimeout: 2 * time.Minute, ShutdownTimeout: time.Second}
	if mod != nil {
		mod(&cfg)
	}
	s, err := api.New(cfg, api.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	addr, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done // answers still running at the deadline are the test's own stalled clients
	})
	return addr.String()
}

// dialSmall connects with a 4 KiB receive buffer, so that a client that
// stops reading stalls the server's answer after a few KiB instead of
// letting the kernel absorb it.
func dialSmall(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return err
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func sendGet(t *testing.T, c net.Conn, path string) {
	t.Helper()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\nX-API-Key: %s\r\n\r\n", path, testKey); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// readResponse reads one whole answer from a raw connection.
func readResponse(c net.Conn, br *bufio.Reader) (int, []byte, error) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

var leasesRE = regexp.MustCompile(`(?m)^rowpipe_api_leases (\d+)`)

// leases is the api's gauge of answers reading a generation now.
func leases(t *testing.T, addr string) int {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	m := leasesRE.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no rowpipe_api_leases in /metrics")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func heapInuse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestSlowAndIdleClientsKeepAPIMemoryFlat opens 200 connections to an
// in-process api serving a dataset of 8000 records of ~1.2 KB made by the
// real pipeline: 100 slow readers, each asking for a 5000-record page
// (~6 MB: more than the kernel's socket buffers can absorb) and reading it
// at ~5 KB/s through a 4 KiB receive window, 50
// keep-alive connections idle after one answer, and 50 that never send a
// byte. With all 100 answers in flight (the api's leases gauge says so),
// the process's HeapInuse (after GC) has grown by less than 16 MiB: the
// answers' bodies, ~600 MB together, are streamed from the files, never
// held. The bound is generous on purpose (fasthttp's per-connection read
// and write buffers, goroutines' heap objects and the test's own
// 200 connections are in the same process); measured growth is logged.
// Once the slow readers read to the end, every answer is byte for byte
// the reference answer (length and CRC-32C), and every lease is released.
func TestSlowAndIdleClientsKeepAPIMemoryFlat(t *testing.T) {
	const slow, idleAfter, silent = 100, 50, 50
	const pagePath = "/fetch-data?limit=5000&offset=1000"
	dir := bigDataset(t, 8000)
	addr := startAPI(t, dir, func(c *api.Config) { c.MaxLimit = 5000 })
	var refLen int // the answer every slow reader must get, byte for byte
	var refSum uint32
	for range 3 { // warm up: first answers allocate the server's pools
		if c := leases(t, addr); c != 0 {
			t.Fatalf("%d leases before any client", c)
		}
		c := dialSmall(t, addr)
		sendGet(t, c, pagePath)
		code, b, err := readResponse(c, bufio.NewReader(c))
		if err == nil {
			err = checkBigPage(code, b, 5000)
		}
		if err != nil {
			t.Fatalf("warm-up: %v", err)
		}
		refLen, refSum = len(b), crc32.Checksum(b, crcTable)
		c.Close()
	}
	before := heapInuse()
	t0 := time.Now()

	type slowConn struct {
		c    net.Conn
		done chan error
	}
	var conns []*slowConn
	var release sync.WaitGroup
	gate := make(chan struct{})
	for range slow {
		c := dialSmall(t, addr)
		sendGet(t, c, pagePath)
		sc := &slowConn{c: c, done: make(chan error, 1)}
		conns = append(conns, sc)
		release.Add(1)
		go func() { // read 512 bytes every 100 ms until the gate opens, then the rest
			defer release.Done()
			c.SetReadDeadline(time.Now().Add(time.Minute))
			res, err := http.ReadResponse(bufio.NewReaderSize(c, 512), nil)
			if err != nil {
				sc.done <- err
				return
			}
			defer res.Body.Close()
			sum, n := crc32.New(crcTable), 0
			buf := make([]byte, 512)
			for {
				select {
				case <-gate:
					rest, err := io.Copy(sum, res.Body)
					if n += int(rest); err == nil && (res.StatusCode != 200 || n != refLen || sum.Sum32() != refSum) {
						err = fmt.Errorf("status %d, %d bytes (crc %08x), want the reference answer's %d bytes (crc %08x)", res.StatusCode, n, sum.Sum32(), refLen, refSum)
					}
					sc.done <- err
					return
				case <-time.After(100 * time.Millisecond):
				}
				k, err := res.Body.Read(buf)
				sum.Write(buf[:k])
				if n += k; err != nil {
					sc.done <- fmt.Errorf("slow read after %d bytes: %w", n, err)
					return
				}
			}
		}()
	}
	for range idleAfter {
		c := dialSmall(t, addr)
		sendGet(t, c, "/fetch-data?limit=1")
		if code, _, err := readResponse(c, bufio.NewReader(c)); err != nil || code != 200 {
			t.Fatalf("keep-alive answer: %d %v", code, err)
		}
	}
	for range silent {
		dialSmall(t, addr)
	}
	t.Logf("%s: 200 connections open", time.Since(t0).Round(time.Millisecond))
	waitFor(t, 30*time.Second, "100 answers in flight", func() bool {
		n := leases(t, addr)
		return n == slow
	})
	time.Sleep(300 * time.Millisecond)
	if n := leases(t, addr); n != slow {
		t.Fatalf("%d answers in flight, want %d", n, slow)
	}
	after := heapInuse()
	grown := int64(after) - int64(before)
	t.Logf("HeapInuse %d KiB before, %d KiB with %d slow readers, %d idle keep-alive and %d silent connections: %+d KiB (%+d bytes a connection)",
		before>>10, after>>10, slow, idleAfter, silent, grown>>10, grown/(slow+idleAfter+silent))
	if grown > 16<<20 {
		t.Errorf("HeapInuse grew by %d MiB with 200 slow or idle clients; answers must stream", grown>>20)
	}

	t.Logf("%s: measured", time.Since(t0).Round(time.Millisecond))
	close(gate)
	release.Wait()
	t.Logf("%s: every slow reader has its whole answer", time.Since(t0).Round(time.Millisecond))
	for i, sc := range conns {
		if err := <-sc.done; err != nil {
			t.Fatalf("slow reader %d: %v", i, err)
		}
	}
	waitFor(t, 10*time.Second, "every lease released", func() bool { return leases(t, addr) == 0 })
}

// TestConnectionLimitAnswers runs the api with API_MAX_CONNS=50 and holds
// 50 connections (25 answers stalled mid-stream, 25 idle keep-alive):
// further connections are answered 503 and closed while the limit holds,
// the held keep-alive connections are still served, and once some close
// new connections are served again.
func TestConnectionLimitAnswers(t *testing.T) {
	const maxConns = 50
	dir := bigDataset(t, 2000)
	addr := startAPI(t, dir, func(c *api.Config) { c.MaxConns = maxConns })

	for range maxConns / 2 {
		c := dialSmall(t, addr)
		sendGet(t, c, "/fetch-data?limit=1000")
	}
	var idle []net.Conn
	var idleR []*bufio.Reader
	for range maxConns / 2 {
		c := dialSmall(t, addr)
		br := bufio.NewReader(c)
		sendGet(t, c, "/fetch-data?limit=1")
		if code, _, err := readResponse(c, br); err != nil || code != 200 {
			t.Fatalf("keep-alive answer: %d %v", code, err)
		}
		idle, idleR = append(idle, c), append(idleR, br)
	}
	for i := range 10 {
		c := dialSmall(t, addr)
		sendGet(t, c, "/healthz")
		code, body, err := readResponse(c, bufio.NewReader(c))
		if err != nil || code != http.StatusServiceUnavailable {
			t.Fatalf("connection %d over API_MAX_CONNS=%d: status %d, err %v, body %q", maxConns+i+1, maxConns, code, err, body)
		}
		if i == 0 {
			t.Logf("over the limit: %d %q", code, body)
		}
	}
	// The held connections are still served.
	sendGet(t, idle[0], "/fetch-data?limit=2")
	if code, _, err := readResponse(idle[0], idleR[0]); err != nil || code != 200 {
		t.Fatalf("a held keep-alive connection while at the limit: %d %v", code, err)
	}
	for _, c := range idle[:10] {
		c.Close()
	}
	waitFor(t, 10*time.Second, "a new connection to be served once some closed", func() bool {
		c := dialSmall(t, addr)
		defer c.Close()
		sendGet(t, c, "/healthz")
		code, _, err := readResponse(c, bufio.NewReader(c))
		return err == nil && code == 200
	})
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// checkBigPage checks a whole answer of n records.
func checkBigPage(code int, body []byte, n int) error {
	var p page
	if code != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", code, body)
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("%d bytes, not JSON: %w", len(body), err)
	}
	if p.Returned != uint64(n) || len(p.Data) != n {
		return fmt.Errorf("returned %d with %d records, want %d", p.Returned, len(p.Data), n)
	}
	return nil
}
