package api

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// dialFrom opens a connection to the harness's server from local address ip.
func dialFrom(t *testing.T, h *harness, ip string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// healthz sends GET /healthz on c and returns the status.
func healthz(t *testing.T, c net.Conn) int {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// One address holding its cap of silent connections cannot take the
// slots left: its next connection is refused with 429, another address is
// still served, and a slot it gives back can be taken again.
func TestOneAddressCannotTakeEverySlot(t *testing.T) {
	const perAddr = 4
	h := start(t, func(c *Config) { c.MaxConns = 2 * perAddr; c.MaxConnsPerAddr = perAddr })
	greedy := netip.MustParseAddr("127.0.0.1")
	var held []net.Conn
	for range perAddr {
		held = append(held, dialFrom(t, h, greedy.String())) // silent: never sends a request
	}
	waitFor(t, "the held connections counted", func() bool { return h.srv.conns.counted(greedy) == perAddr })

	over := dialFrom(t, h, greedy.String())
	over.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(over), nil)
	if err != nil {
		t.Fatalf("connection %d from one address: %v, want a 429 answer", perAddr+1, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), `"too_many_connections"`) {
		t.Fatalf("connection %d from one address: %d %s", perAddr+1, resp.StatusCode, body)
	}
	if _, err := over.Read(make([]byte, 1)); err == nil {
		t.Fatal("the refused connection stays open")
	}

	if got := healthz(t, dialFrom(t, h, "127.0.0.2")); got != http.StatusOK {
		t.Fatalf("another address, while the first holds its cap: %d", got)
	}

	held[0].Close()
	waitFor(t, "a closed connection uncounted", func() bool { return h.srv.conns.counted(greedy) == perAddr-1 })
	if got := healthz(t, dialFrom(t, h, greedy.String())); got != http.StatusOK {
		t.Fatalf("the first address after giving one back: %d", got)
	}
	for _, c := range held[1:] {
		c.Close()
	}
	waitFor(t, "the closed connections uncounted", func() bool { return h.srv.conns.counted(greedy) <= 1 })
}

func TestAddrKeyGroupsIPv6By64(t *testing.T) {
	a, _ := addrKey(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa::1")})
	b, _ := addrKey(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:bbbb::2")})
	c, _ := addrKey(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:3::1")})
	v4, _ := addrKey(&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7")})
	if a != b || a == c {
		t.Fatalf("one /64 gives %v and %v; another %v", a, b, c)
	}
	if v4 != netip.MustParseAddr("192.0.2.7") {
		t.Fatalf("an IPv4-mapped address counts as %v", v4)
	}
}

// counted reports the connections counted against ip now.
func (a *addrConns) counted(ip netip.Addr) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.open[ip]
}
