package api

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema/datadirtest"
	"github.com/rowpipe/rowpipe/services/api/internal/store"
)

// kiloRecords publishes dataset "kilo": 600 records of about 1 KB, so that
// pages of 10, 100 and 500 records leave each way a JSON page can (see
// oneWrite); NDJSON pages of 100 and 500 go by sendfile.
func kiloRecords(h *harness) datadirtest.Gen {
	return h.publish(datadirtest.Gen{Dataset: "kilo", Generation: 6, Rows: 600, Row: func(i int, vals []string) {
		vals[0] = strconv.Itoa(i)
		vals[1] = strings.Repeat(string(rune('a'+i%26)), 900+i%200)
		vals[2] = "kilo"
	}})
}

func wantPage(t testing.TB, g datadirtest.Gen, format string, offset, limit int) []byte {
	t.Helper()
	n := min(limit, g.Rows-offset)
	recs := lines(t, g, offset, n)
	if format == "ndjson" {
		var b []byte
		for _, r := range recs {
			b = append(append(b, r...), '\n')
		}
		return b
	}
	next := "null"
	if offset+n < g.Rows {
		next = strconv.Itoa(offset + n)
	}
	return []byte(envelope(g.Dataset, g.Generation, uint64(g.Rows), uint64(offset), limit, n, next, recs))
}

func TestPagesOfEverySizeAreTheFileBytes(t *testing.T) {
	h := start(t, nil)
	g := kiloRecords(h)
	for _, limit := range []int{10, 100, 500} {
		for _, format := range []string{"json", "ndjson"} {
			for _, offset := range []int{0, 37, g.Rows - limit} {
				q := fmt.Sprintf("/fetch-data?dataset=kilo&limit=%d&offset=%d&format=%s", limit, offset, format)
				a := h.get(q)
				want := wantPage(t, g, format, offset, limit)
				if a.status != 200 || !bytes.Equal(a.body, want) {
					t.Fatalf("%s: %d, %d bytes, want %d", q, a.status, len(a.body), len(want))
				}
				if cl := a.header.Get("Content-Length"); cl != strconv.Itoa(len(want)) {
					t.Errorf("%s: Content-Length %s, want %d", q, cl, len(want))
				}
				hd := h.do(http.MethodHead, q, nil)
				if hd.status != 200 || hd.header.Get("Content-Length") != strconv.Itoa(len(want)) || len(hd.body) != 0 {
					t.Errorf("HEAD %s: %d Content-Length %s, want %d", q, hd.status, hd.header.Get("Content-Length"), len(want))
				}
			}
		}
	}
	if n := len(wantPage(t, g, "json", 0, 10)); n > oneWrite {
		t.Fatalf("a page of 10 is %d bytes: not written with its headers", n)
	}
	if n := len(wantPage(t, g, "json", 0, 100)); n <= oneWrite || n > wholeMax {
		t.Fatalf("a page of 100 is %d bytes: not built whole", n)
	}
	if n := len(wantPage(t, g, "json", 0, 500)); n <= wholeMax {
		t.Fatalf("a page of 500 is %d bytes: not streamed", n)
	}
	waitFor(t, "every lease released", func() bool { return h.leases() == 0 })
}

// slowGet requests path over a connection whose receive buffer is small
// and reads the answer slowly: the server's writes are partial and wait.
func slowGet(t *testing.T, h *harness, path string) (*http.Response, []byte) {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return nil
	}}
	c, err := d.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\nX-API-Key: %s\r\n\r\n", path, testKey)
	resp, err := http.ReadResponse(bufio.NewReaderSize(slowReader{c}, 512), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(100 * time.Microsecond)
	return s.r.Read(p[:min(len(p), 700)])
}

func TestSlowClientsGetEveryByte(t *testing.T) {
	h := start(t, nil)
	g := kiloRecords(h)
	for _, limit := range []int{10, 100, 500} {
		for _, format := range []string{"json", "ndjson"} {
			q := fmt.Sprintf("/fetch-data?dataset=kilo&limit=%d&offset=3&format=%s", limit, format)
			resp, body := slowGet(t, h, q)
			if want := wantPage(t, g, format, 3, limit); resp.StatusCode != 200 || !bytes.Equal(body, want) {
				t.Fatalf("%s to a slow client: %d, %d bytes, want %d", q, resp.StatusCode, len(body), len(want))
			}
		}
	}
	waitFor(t, "every lease released", func() bool { return h.leases() == 0 })
}

func TestStalledClientIsCutInEveryFormat(t *testing.T) {
	h := start(t, func(c *Config) { c.WriteTimeout = 300 * time.Millisecond })
	bigRecords(h)
	// Streamed in chunks, sent by sendfile, offered whole (~160 KB), CSV.
	for _, q := range []string{"limit=1000", "limit=1000&format=ndjson", "limit=10", "limit=1000&format=csv"} {
		c := rawRequest(t, h, "/fetch-data?dataset=big&"+q, "", 1024)
		defer c.Close()
	}
	// The clients neither read nor leave.
	waitFor(t, "every lease released by the write timeout", func() bool { return h.leases() == 0 })
}

// The bytes counted in the metrics are the bytes sent, for answers read
// whole in the handler as for streamed ones.
func TestResponseBytesAreCounted(t *testing.T) {
	h := start(t, nil)
	kiloRecords(h)
	var sent int
	for _, limit := range []int{10, 100, 500} {
		sent += len(h.get(fmt.Sprintf("/fetch-data?dataset=kilo&limit=%d", limit)).body)
	}
	waitFor(t, "the streams' metrics", func() bool { return h.leases() == 0 })
	body := string(h.get("/metrics", "X-API-Key", "").body)
	want := fmt.Sprintf(`rowpipe_api_response_bytes_total{route="/fetch-data"} %d`, sent)
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, `rowpipe_api_response_bytes_total{route="/fetch-data"}`) {
			if v, _ := strconv.ParseFloat(strings.Fields(line)[1], 64); int(v) != sent {
				t.Fatalf("%s, want %s", line, want)
			}
			return
		}
	}
	t.Fatalf("/metrics lacks %s", want)
}

// CURRENT renamed between two requests: the first request later than
// store.Fresh after the rename serves the new generation, however close the
// swaps come.
func TestEverySwapIsServedByTheNextRequest(t *testing.T) {
	h := start(t, nil)
	for _, gen := range []uint64{3, 4} {
		datadirtest.Write(t, h.dataDir, datadirtest.Gen{Dataset: "swap", Generation: gen, Rows: int(gen)})
	}
	for i := range 200 {
		gen := uint64(3 + i%2)
		datadirtest.SetCurrent(t, h.dataDir, "swap", gen)
		time.Sleep(store.Fresh)
		a := h.get("/fetch-data?dataset=swap&metadata_only=true")
		if m := a.json(t); m["generation"] != float64(gen) || m["count"] != float64(gen) {
			t.Fatalf("swap %d to generation %d: served %v", i, gen, m)
		}
		if p := h.get("/fetch-data?dataset=swap&format=ndjson"); bytes.Count(p.body, []byte{'\n'}) != int(gen) {
			t.Fatalf("swap %d to generation %d: a page of %d records", i, gen, bytes.Count(p.body, []byte{'\n'}))
		}
	}
}

// An NDJSON page that goes by sendfile on a socket is written as any other
// body on a connection that is not one.
func TestNDJSONOverAConnectionThatIsNotASocket(t *testing.T) {
	h := start(t, nil)
	g := kiloRecords(h)
	req := httptest.NewRequest(http.MethodGet, "/fetch-data?dataset=kilo&limit=100&format=ndjson", nil)
	req.Header.Set("X-API-Key", testKey)
	resp, err := h.srv.App().Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if want := wantPage(t, g, "ndjson", 0, 100); err != nil || resp.StatusCode != 200 || !bytes.Equal(body, want) {
		t.Fatalf("%d, %d bytes (%v), want %d", resp.StatusCode, len(body), err, len(want))
	}
	waitFor(t, "the lease released", func() bool { return h.leases() == 0 })
}
