package respond

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// cork sets TCP_CORK on the connection and returns its descriptor, or -1
// if it could not (then nothing is held back).
func cork(rc syscall.RawConn) int {
	fd := -1
	rc.Control(func(s uintptr) {
		if unix.SetsockoptInt(int(s), unix.IPPROTO_TCP, unix.TCP_CORK, 1) == nil {
			fd = int(s)
		}
	})
	return fd
}

// uncork clears TCP_CORK: what is held back leaves at once.
func uncork(fd int) {
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_CORK, 0)
}
