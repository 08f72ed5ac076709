package api

import (
	"testing"
)

// Stalled gzip downloads hold at most MaxGzip compressors: an answer asked
// for with gzip beyond them goes uncompressed (and is served), and a slot
// given back by a client that left is used again.
func TestGzipAnswersAreBounded(t *testing.T) {
	const maxGzip = 2
	h := start(t, func(c *Config) { c.MaxGzip = maxGzip })
	bigRecords(h)
	gzip := "Accept-Encoding: gzip\r\n"
	for range maxGzip {
		c := rawRequest(t, h, "/fetch-data?dataset=big&limit=1000", gzip, 1024) // then stalls
		defer c.Close()
	}
	if n := len(h.srv.gzip); n != maxGzip {
		t.Fatalf("%d gzip slots taken by %d stalled downloads", n, maxGzip)
	}
	a := h.get("/fetch-data?dataset=big&limit=3", "Accept-Encoding", "gzip")
	if a.status != 200 || a.header.Get("Content-Encoding") != "" {
		t.Fatalf("with every gzip slot taken: status %d, Content-Encoding %q; want 200 uncompressed", a.status, a.header.Get("Content-Encoding"))
	}
	if h.leases() != maxGzip {
		t.Fatalf("%d leases, want the %d stalled", h.leases(), maxGzip)
	}

	c := rawRequest(t, h, "/fetch-data?dataset=big&limit=1000", gzip, 1024)
	c.SetLinger(0)
	c.Close() // refused gzip, identity: takes no slot
	waitFor(t, "the uncompressed stream's lease released", func() bool { return h.leases() == maxGzip })
	if n := len(h.srv.gzip); n != maxGzip {
		t.Fatalf("%d gzip slots taken", n)
	}
}

// A gzip slot is given back when the answer ends, streamed or not.
func TestGzipSlotsAreGivenBack(t *testing.T) {
	h := start(t, func(c *Config) { c.MaxGzip = 1 })
	bigRecords(h)
	for _, limit := range []string{"3", "1000"} {
		for range 3 {
			a := h.get("/fetch-data?dataset=big&limit="+limit, "Accept-Encoding", "gzip")
			if a.status != 200 || a.header.Get("Content-Encoding") != "gzip" {
				t.Fatalf("limit=%s: status %d, Content-Encoding %q; want 200 gzip", limit, a.status, a.header.Get("Content-Encoding"))
			}
			waitFor(t, "the slot given back", func() bool { return len(h.srv.gzip) == 0 })
		}
	}
	c := rawRequest(t, h, "/fetch-data?dataset=big&limit=1000", "Accept-Encoding: gzip\r\n", 1024)
	c.SetLinger(0)
	c.Close()
	waitFor(t, "the slot of a client that left given back", func() bool { return len(h.srv.gzip) == 0 })
}
