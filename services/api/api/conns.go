package api

import (
	"net"
	"net/netip"
	"sync"

	"github.com/valyala/fasthttp"
)

// addrConns caps the connections open at once from one client address: an
// IPv4 address, or an IPv6 /64 (what one host is usually given). It hooks
// fasthttp's ConnState, so the connection fiber serves stays the
// *net.TCPConn the listener accepted (NDJSON's sendfile needs it).
type addrConns struct {
	max int // 0: no cap

	mu   sync.Mutex
	open map[netip.Addr]int
}

func newAddrConns(max int) *addrConns {
	return &addrConns{max: max, open: make(map[netip.Addr]int)}
}

// tooMany is the whole answer to a connection over the cap: one write into
// a newly accepted socket's empty send buffer, which does not block.
var tooMany = []byte("HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 118\r\n\r\n" +
	`{"error":{"code":"too_many_connections","message":"too many connections from your address; reuse or close some"}}` + "\n")

// state is the fasthttp.Server ConnState hook. A new connection over the
// cap is answered 429 and closed at once; fasthttp then reports it closed
// like any other, so every StateNew is matched by one StateClosed (or
// StateHijacked, which fiber never causes here).
func (a *addrConns) state(c net.Conn, st fasthttp.ConnState) {
	if a.max <= 0 {
		return
	}
	key, ok := addrKey(c.RemoteAddr())
	if !ok {
		return
	}
	switch st {
	case fasthttp.StateNew:
		a.mu.Lock()
		a.open[key]++
		over := a.open[key] > a.max
		a.mu.Unlock()
		if over {
			_, _ = c.Write(tooMany)
			_ = c.Close()
		}
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		a.mu.Lock()
		if a.open[key]--; a.open[key] <= 0 {
			delete(a.open, key)
		}
		a.mu.Unlock()
	}
}

// addrKey is the address a connection counts against.
func addrKey(addr net.Addr) (netip.Addr, bool) {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return netip.Addr{}, false
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		ip = p.Addr()
	}
	return ip, true
}

// count reports the connections counted against addr now.
func (a *addrConns) count(addr netip.Addr) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.open[addr]
}
