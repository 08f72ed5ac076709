package respond

import (
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// cork sets TCP_CORK on the connection and returns its descriptor, or -1
// if it could not (then nothing is held back).
func cork(rc syscall.RawConn) int {
	c := corkers.Get().(*corker)
	c.fd = -1
	rc.Control(c.set)
	fd := c.fd
	corkers.Put(c)
	return fd
}

// corker is cork's rc.Control function and its result. Values are pooled
// and set is bound once per value, so that corking allocates nothing.
type corker struct {
	fd  int
	set func(fd uintptr)
}

var corkers = sync.Pool{New: func() any {
	c := new(corker)
	c.set = c.corkFd
	return c
}}

func (c *corker) corkFd(s uintptr) {
	if unix.SetsockoptInt(int(s), unix.IPPROTO_TCP, unix.TCP_CORK, 1) == nil {
		c.fd = int(s)
	}
}

// uncork clears TCP_CORK: what is held back leaves at once.
func uncork(fd int) {
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_CORK, 0)
}
