package respond

import (
	"io"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// BigMax is the largest body a Body with a direct connection (SetDirect)
// produces whole before sending it: such a body is read with one read,
// joined in place and offered to the connection in one write. Whatever the
// connection does not take at once (a slow client) is sent from the file in
// ChunkSize pieces, so the big buffer is held only for that one attempt and
// a slow client never holds more than a streamed answer does.
const BigMax = 256 << 10

var bigs = sync.Pool{New: func() any { b := make([]byte, BigMax); return &b }}

// SetDirect lets the body write to the connection itself (rc, the raw
// connection under the server's buffered writer) once the server has
// flushed the response headers: an NDJSON body (no join, head or tail) whose
// source is the open file srcFd (≥ 0) is sent with sendfile, without a copy
// through memory; another body of up to BigMax bytes is produced whole and
// offered in one non-blocking write. The connection's write deadline holds
// throughout. Set it before handing the body to the server.
func (b *Body) SetDirect(rc syscall.RawConn, srcFd int) {
	b.rc, b.srcFd = rc, srcFd
}

// writeDirect is WriteTo's first step with a direct connection. It returns
// the bytes written and whether the body is finished; when it is not, the
// chunked WriteTo goes on from where it stopped.
func (b *Body) writeDirect(w io.Writer) (n int64, done bool, err error) {
	// The server must have sent everything before the body (it flushes
	// the headers before a body of more than a few KiB); make sure.
	if bw, ok := w.(interface {
		Buffered() int
		Flush() error
	}); ok && bw.Buffered() > 0 {
		if err := bw.Flush(); err != nil {
			return 0, false, err
		}
	}
	if !b.join && b.srcFd >= 0 && len(b.head) == 0 && len(b.tail) == 0 {
		n, err := b.sendfile()
		return n, err == nil, err
	}
	if b.size > BigMax {
		return 0, false, nil
	}
	return b.offerWhole()
}

// sendfile sends the range from the file to the connection, waiting for the
// connection as needed (within its write deadline).
func (b *Body) sendfile() (int64, error) {
	var sent int64
	var werr error
	err := b.rc.Write(func(fd uintptr) bool {
		for b.pos < b.end {
			off := b.pos
			n, err := unix.Sendfile(int(fd), b.srcFd, &off, int(min(b.end-b.pos, 1<<30)))
			b.cork.release() // the headers left with the first bytes
			if n > 0 {
				b.pos += int64(n)
				sent += int64(n)
			}
			switch {
			case err == unix.EINTR:
			case err == unix.EAGAIN:
				return false // wait until the connection takes more
			case err == unix.EPIPE || err == unix.ECONNRESET:
				werr = err
				return true
			case err != nil:
				werr = &SourceError{err}
				return true
			case n == 0:
				werr = &SourceError{io.ErrUnexpectedEOF} // the file is shorter than its index says
				return true
			}
		}
		return true
	})
	b.written += sent
	if err == nil {
		err = werr
	}
	return sent, err
}

// offerWhole produces the whole body in a big pooled buffer and offers it
// to the connection in one write that does not wait. It gives the buffer
// back before returning; the part not taken is left to the chunked path.
func (b *Body) offerWhole() (int64, bool, error) {
	bp := bigs.Get().(*[]byte)
	defer bigs.Put(bp)
	out := append((*bp)[:0], b.head[b.headOff:]...)
	rangeOut := 0
	if b.pos < b.end {
		r := Body{src: b.src, pos: b.pos, end: b.end, join: b.join}
		got, err := r.fill(out[len(out) : len(out)+int(b.end-b.pos)])
		if err != nil {
			return 0, false, err
		}
		rangeOut = len(got)
		out = out[:len(out)+rangeOut]
	}
	out = append(out, b.tail[b.tailOff:]...)

	var n int
	var werr error
	err := b.rc.Write(func(fd uintptr) bool {
		for {
			m, err := unix.Write(int(fd), out)
			if err == unix.EINTR {
				continue
			}
			b.cork.release() // the headers left with the first bytes
			if m > 0 {
				n = m
			}
			if err != nil && err != unix.EAGAIN {
				werr = err
			}
			return true // one attempt: what is not taken now is streamed
		}
	})
	if err == nil {
		err = werr
	}
	b.advance(n, rangeOut)
	if err != nil {
		return int64(n), false, err
	}
	return int64(n), n == len(out), nil
}

// advance moves the body's position past n bytes of output, rangeOut of
// which (at most) come from the range.
func (b *Body) advance(n, rangeOut int) {
	b.written += int64(n)
	h := min(n, len(b.head)-b.headOff)
	b.headOff += h
	n -= h
	r := min(n, rangeOut)
	if r == rangeOut {
		b.pos = b.end // in join mode this skips the dropped final newline
	} else {
		b.pos += int64(r)
	}
	n -= r
	b.tailOff += min(n, len(b.tail)-b.tailOff)
	if b.headOff == len(b.head) && b.pos == b.end && b.tailOff == len(b.tail) {
		b.err = io.EOF
	}
}
