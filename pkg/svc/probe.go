package svc

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Probe asks the server this process would run, listening on addr
// (API_ADDR, METRICS_ADDR: host:port, host optional), for path over
// loopback, and returns the exit status of a container health check: 0
// when it answers 200, 1 otherwise, having written why to w. Images without
// a shell (distroless) check themselves this way: `api --probe /readyz`.
func Probe(w io.Writer, addr, path string) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintf(w, "probe: address %q: %v\n", addr, err)
		return 1
	}
	c := &http.Client{Timeout: 3 * time.Second}
	res, err := c.Get("http://" + net.JoinHostPort("127.0.0.1", port) + path)
	if err != nil {
		fmt.Fprintf(w, "probe: %v\n", err)
		return 1
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	if res.StatusCode != http.StatusOK {
		fmt.Fprintf(w, "probe %s: %s: %s\n", path, res.Status, body)
		return 1
	}
	return 0
}
