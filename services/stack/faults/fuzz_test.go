package faults

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
	"github.com/rowpipe/rowpipe/services/api/api"
	"github.com/rowpipe/rowpipe/services/ingester/ingester"
)

// escapeQuery percent-encodes the bytes an HTTP client cannot put raw in a
// request line (controls, space, '#', non-ASCII) and keeps every other byte
// as fuzzed, malformed escapes and all.
func escapeQuery(q string) string {
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c <= ' ' || c == '#' || c >= 0x7f {
			b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// printable keeps the printable ASCII of s (what a header value can hold).
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return -1
		}
		return r
	}, s)
}

// FuzzAPIRequestParameters drives the api (over a real dataset made by
// the pipeline) with fuzzed query strings, dataset names in the path and
// Accept headers, on every data route: the answer is never a 5xx; a 4xx
// is a JSON error {"error":{"code","message"}} with both set; a 200 JSON
// answer is valid JSON. `go test` runs the seeds; `go test -fuzz
// FuzzAPIRequestParameters ./faults/` explores.
func FuzzAPIRequestParameters(f *testing.F) {
	srv := jstest.Start(f)
	dir := f.TempDir()
	stopWriter := startWriter(f, srv.Conn(), dir)
	csvPath := filepath.Join(f.TempDir(), "small.csv")
	genCSV(f, csvPath, 50, 1, 1)
	res, err := ingester.Run(context.Background(), ingester.Config{Source: csvPath, Dataset: "products", Wait: true, Progress: "off"},
		srv.Conn(), nil, io.Discard, io.Discard)
	if err != nil {
		f.Fatalf("ingest: %v", err)
	}
	stopWriter()
	gen := res.Generation
	s, err := api.New(api.Config{DataDir: dir, Addr: "127.0.0.1:0", Keys: api.Keys{testKey}, MaxLimit: 100},
		api.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		f.Fatal(err)
	}
	app := s.App()

	for _, q := range []string{
		"", "limit=10&offset=0", "limit=0", "limit=-1", "limit=101", "limit=1e3", "limit=%zz", "offset=99999999999999999999999",
		"offset=-0", "offset=+1", "limit=10&limit=20", "metadata_only=true", "metadata_only=maybe", "format=ndjson", "format=csv",
		"format=xml", "generation=0", "generation=1", "generation=18446744073709551616", "dataset=products", "dataset=../etc",
		"dataset=Products", "dataset=", "dataset=nats", "limit=\x00", "a=b&&&=&", "limit=1&offset=7&format=ndjson&generation=" + strconv.FormatUint(gen, 10),
	} {
		for route := range 4 {
			f.Add(uint8(route), "products", q, "")
		}
	}
	f.Add(uint8(2), "..", "", "application/x-ndjson")
	f.Add(uint8(3), "UPPER", "limit=1", "text/csv")
	f.Add(uint8(3), "products", "limit=5", "application/x-ndjson;q=0.5, application/json")
	f.Add(uint8(0), "", "limit=2", "*/*;q=oops")

	f.Fuzz(func(t *testing.T, route uint8, name, query, accept string) {
		path := []string{"/fetch-data", "/datasets", "/datasets/" + url.PathEscape(name), "/datasets/" + url.PathEscape(name) + "/records"}[route%4]
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL.Path, req.URL.RawPath, req.URL.RawQuery = path, "", escapeQuery(query)
		req.RequestURI = ""
		req.Header.Set("X-API-Key", testKey)
		if a := printable(accept); a != "" {
			req.Header.Set("Accept", a)
		}
		resp, err := app.Test(req, -1)
		if err != nil {
			t.Fatalf("GET %s?%s: %v", path, req.URL.RawQuery, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s?%s: reading: %v", path, req.URL.RawQuery, err)
		}
		ct := resp.Header.Get("Content-Type")
		where := path + "?" + req.URL.RawQuery + " Accept " + printable(accept)
		switch {
		case resp.StatusCode >= 500:
			t.Fatalf("%s: %d %s", where, resp.StatusCode, body)
		case resp.StatusCode >= 400:
			var e struct {
				Error struct{ Code, Message string }
			}
			if !strings.Contains(ct, "json") || json.Unmarshal(body, &e) != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%s: %d with %q, not a JSON error: %.300s", where, resp.StatusCode, ct, body)
			}
		case resp.StatusCode == 200 && strings.HasPrefix(ct, "application/json") && !json.Valid(body):
			t.Fatalf("%s: 200 JSON that is not valid JSON: %.300s", where, body)
		}
	})
}
