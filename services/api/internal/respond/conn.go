package respond

import (
	"errors"
	"net"
	"syscall"
)

// HeadRoom is the room a held answer keeps in front of its body for the
// response head the server writes first (see Conn): a head that does not
// fit is written at once, as it would be without holding.
const HeadRoom = 1024

// Conn is a server connection that can hold back the response head the
// server writes before a body, so that the head leaves in the same write
// system call as the body: one packet and one wake-up of the client, like
// TCP_CORK, without the two setsockopt calls corking costs.
//
// A body (Buffered, or a Body offered whole) starts holding with its Hold
// method in the handler; the server's writes then go into the body's
// HeadRoom instead of the socket, and the body's first write sends them
// with its own bytes. Whatever happens, the held bytes are written before
// anything else the connection writes, and at the latest when the body is
// closed (which the server does before it closes the connection): holding
// never reorders or drops a byte. Holding is only ever started, used and
// ended by the goroutine serving the connection; Close (which another
// goroutine may call, to shut an idle connection) does not touch it.
type Conn struct {
	net.Conn
	held *[]byte // while holding: the held bytes (cap: the room); nil: not holding
}

// WrapListener returns ln whose accepted connections are *Conn. Under
// each, the socket's deadlines are put on lazily, only when a read or
// write waits (deadlineConn). That is below Conn, so that whatever writes
// to the connection wrapped (release, Body.offerHeld, the raw writes
// through SyscallConn) waits under the deadline wanted.
func WrapListener(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: lazyDeadlines(c)}, nil
}

// Write implements net.Conn: while holding, p is added to the held bytes
// if it fits; otherwise the held bytes are written first, then p.
func (c *Conn) Write(p []byte) (int, error) {
	if h := c.held; h != nil {
		if len(*h)+len(p) <= cap(*h) {
			*h = append(*h, p...)
			return len(p), nil
		}
		if err := c.release(); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

// SyscallConn gives the raw connection of the connection wrapped (for
// sendfile and direct writes), or an error when it has none. A
// deadlineConn's waits under the deadlines wanted, like its Read and
// Write.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("respond: the connection has no raw connection")
}

// hold makes the connection's writes go to room (len 0) until release or
// take. A hold already in place is released first.
func (c *Conn) hold(room *[]byte) error {
	if err := c.release(); err != nil {
		return err
	}
	c.held = room
	return nil
}

// holding reports whether room holds the connection's writes.
func (c *Conn) holding(room *[]byte) bool { return c.held == room }

// take stops holding without writing: the caller sends the held bytes.
func (c *Conn) take() { c.held = nil }

// release stops holding and writes what was held.
func (c *Conn) release() error {
	h := c.held
	if h == nil {
		return nil
	}
	c.held = nil
	if len(*h) == 0 {
		return nil
	}
	_, err := c.Conn.Write(*h)
	*h = (*h)[:0]
	return err
}

// heldHead is a body's side of a held head: the connection holding it (nil
// when not holding) and the room it holds in.
type heldHead struct {
	conn *Conn
	room []byte
}

// start makes c hold back what the server writes next, in room (whose
// capacity is the most held).
func (h *heldHead) start(c *Conn, room []byte) {
	h.room = room[:0]
	if c.hold(&h.room) == nil {
		h.conn = c
	}
}

// stop stops holding, writing what is held.
func (h *heldHead) stop() error {
	c := h.conn
	if c == nil {
		return nil
	}
	h.conn = nil
	if c.holding(&h.room) {
		return c.release()
	}
	return nil
}

// claim ends the hold for a body that sends the held head itself, in
// front of its own bytes at buf[HeadRoom:]: what the server still buffers
// (bw: the head) is flushed into the room first, then the head is moved
// to end at buf[HeadRoom]. It returns the connection and where the head
// starts in buf. c is nil when nothing is held any more (the head did not
// fit the room and was written already): the body then writes alone.
func (h *heldHead) claim(bw bufferedWriter, buf []byte) (c *Conn, from int, err error) {
	c = h.conn
	if c == nil {
		return nil, 0, nil
	}
	if bw != nil && bw.Buffered() > 0 {
		if err := bw.Flush(); err != nil {
			h.stop()
			return nil, 0, err
		}
	}
	h.conn = nil
	if !c.holding(&h.room) {
		return nil, 0, nil
	}
	c.take()
	return c, frontHeld(buf, h.room, HeadRoom), nil
}

// frontHeld copies the held bytes room (which may be the start of buf
// itself; len(room) ≤ at) to end right at buf[at], and returns where they
// now start.
func frontHeld(buf []byte, room []byte, at int) int {
	k := len(room)
	copy(buf[at-k:at], room) // memmove: the ranges may overlap
	return at - k
}
