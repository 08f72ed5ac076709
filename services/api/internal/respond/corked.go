package respond

import "syscall"

// corked holds back a connection's partial TCP segments (TCP_CORK) while a
// response starts, so that the headers the server writes first leave in
// the same segment as the start of the body: one packet and one wake-up of
// the client instead of two. Whatever happens it is released right after
// the body's first write, and on Close at the latest (the kernel also
// releases it by itself after 200 ms).
type corked struct{ fd int }

// hold corks rc; the zero corked holds nothing.
func (c *corked) hold(rc syscall.RawConn) {
	c.fd = cork(rc) + 1 // 0: nothing held
}

// release uncorks, once.
func (c *corked) release() {
	if c.fd > 0 {
		uncork(c.fd - 1)
		c.fd = 0
	}
}
