package api

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/valyala/fasthttp"
)

// benchServer is an api over the 1M-row dataset, called in process: the
// benchmarks measure the api's work per page (parameters, generation,
// header, index, the streamed body), not the network.
func benchServer(b *testing.B) *Server {
	dir, _ := millionRows(b)
	s, err := New(Config{DataDir: dir, Keys: Keys{testKey}}, WithLogger(discardLogger()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.store.Close)
	return s
}

// BenchmarkPage serves one page through the fiber handler into a discarded
// connection buffer: the api's work per request (parameters, key,
// generation, header, index, records, envelope, headers, metrics) without
// the network. offset=0 and offset=last must cost the same: the index finds
// any page with one small read. A page makes no allocation (the request
// set up by the loop makes none either).
func BenchmarkPage(b *testing.B) {
	s := benchServer(b)
	handler := s.App().Handler()
	w := bufio.NewWriterSize(io.Discard, 4096)
	for _, tc := range []struct {
		name  string
		query string
	}{
		{"offset=0/limit=10", "limit=10&offset=0"},
		{"offset=last/limit=10", "limit=10&offset=999990"},
		{"ndjson/offset=last/limit=10", "limit=10&offset=999990&format=ndjson"},
		{"offset=0/limit=100", "limit=100&offset=0"},
		{"offset=last/limit=100", "limit=100&offset=999900"},
		{"ndjson/offset=last/limit=100", "limit=100&offset=999900&format=ndjson"},
		{"offset=0/limit=1000", "limit=1000&offset=0"},
		{"offset=last/limit=1000", "limit=1000&offset=999000"},
		{"ndjson/offset=last/limit=1000", "limit=1000&offset=999000&format=ndjson"},
		{"metadata_only", "metadata_only=true"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var ctx fasthttp.RequestCtx
			uri := []byte("/fetch-data?dataset=million&" + tc.query)
			b.ReportAllocs()
			for b.Loop() {
				ctx.Request.Reset()
				ctx.Request.Header.SetMethod(fasthttp.MethodGet)
				ctx.Request.SetRequestURIBytes(uri)
				ctx.Request.Header.Set("X-API-Key", testKey)
				handler(&ctx)
				if ctx.Response.StatusCode() != http.StatusOK {
					b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
				if err := ctx.Response.Write(w); err != nil {
					b.Fatal(err)
				}
				ctx.Response.Reset()
			}
			w.Flush()
		})
	}
}

// BenchmarkPageHTTP is a page over a real loopback connection (keep-alive).
func BenchmarkPageHTTP(b *testing.B) {
	dir, _ := millionRows(b)
	h := start(b, func(c *Config) { c.DataDir = dir })
	for _, off := range []int{0, 999990} {
		b.Run(fmt.Sprintf("offset=%d/limit=10", off), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if a := h.get(fmt.Sprintf("/fetch-data?dataset=million&limit=10&offset=%d", off)); a.status != 200 {
					b.Fatal(a.status)
				}
			}
		})
	}
}
