package api

import (
	"net"
	"net/netip"
	"sync"

	"github.com/valyala/fasthttp"
)

// addrConns caps the connections open at once from one client address (an
// IPv4 address or an IPv6 /64). It is a fasthttp ConnState hook, so fiber
// still serves the *net.TCPConn accepted (NDJSON's sendfile needs it).
type addrConns struct {
	max  int // 0: no cap
	mu   sync.Mutex
	open map[netip.Addr]int
}

// tooMany is the whole answer to a connection over the cap, one write into
// a new socket's empty send buffer.
var tooMany = []byte("HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 118\r\n\r\n" +
	`{"error":{"code":"too_many_connections","message":"too many connections from your address; reuse or close some"}}` + "\n")

// state counts c. A new connection over the cap is answered 429 and closed;
// fasthttp reports every new connection closed (or hijacked) once.
func (a *addrConns) state(c net.Conn, st fasthttp.ConnState) {
	key, ok := addrKey(c.RemoteAddr())
	if a.max <= 0 || !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch st {
	case fasthttp.StateNew:
		if a.open[key]++; a.open[key] > a.max {
			_, _ = c.Write(tooMany)
			_ = c.Close()
		}
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		if a.open[key]--; a.open[key] <= 0 {
			delete(a.open, key)
		}
	}
}

// addrKey is the address a connection counts against.
func addrKey(addr net.Addr) (netip.Addr, bool) {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(tcp.IP)
	if ip = ip.Unmap(); ip.Is6() {
		p, _ := ip.Prefix(64)
		ip = p.Addr()
	}
	return ip, ok
}
