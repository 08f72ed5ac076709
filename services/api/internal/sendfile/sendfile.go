// Package sendfile copies a byte range of a file to a connection inside the
// kernel (sendfile(2)): the bytes go from the page cache to the socket
// without being read into the process. It is the api's only code below the
// standard library's and fiber's public API; bench/README.md has the
// measurement that keeps it.
package sendfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// ErrUnsupported is returned, having written nothing, for a connection
// that is not a socket; it wraps errors.ErrUnsupported.
var ErrUnsupported = fmt.Errorf("sendfile: not a socket: %w", errors.ErrUnsupported)

// Copy writes the n bytes of f at off to conn and returns how many it
// wrote. It waits for conn the way conn.Write does, under conn's write
// deadline, and does not move f's offset (concurrent reads of f at their
// own offsets are unaffected; concurrent Copies of f never wait for each
// other's connections). A file shorter than off+n gives
// io.ErrUnexpectedEOF after what it had.
func Copy(conn any, f *os.File, off, n int64) (int64, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return 0, ErrUnsupported
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, ErrUnsupported
	}
	src, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var written int64
	// f's read lock is held for one sendfile at a time, not while conn
	// is waited for.
	send := func(out uintptr) (m int, err error) {
		if rerr := src.Read(func(in uintptr) bool {
			m, err = syscall.Sendfile(int(out), int(in), &off, int(min(n-written, 1<<30)))
			return true
		}); rerr != nil {
			return 0, rerr
		}
		return m, err
	}
	var serr error
	err = rc.Write(func(out uintptr) bool {
		for written < n {
			m, err := send(out)
			written += int64(max(m, 0))
			switch {
			case err == syscall.EAGAIN:
				return false // wait until the socket can take more
			case err == syscall.EINTR:
			case err != nil:
				serr = err
				return true
			case m == 0:
				serr = io.ErrUnexpectedEOF
				return true
			}
		}
		return true
	})
	if serr == nil {
		serr = err
	}
	return written, serr
}
