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

// bigs are the buffers of offerWhole: HeadRoom (for a held head), then BigMax.
var bigs = sync.Pool{New: func() any { b := make([]byte, HeadRoom+BigMax); return &b }}

// SetDirect lets the body write to the connection itself (rc, the raw
// connection under the server's buffered writer) once the response headers
// the server buffered have left: an NDJSON body (no join, head or tail)
// whose source is the open file srcFd (≥ 0) is sent with sendfile, without
// a copy through memory; another body of up to BigMax bytes is produced
// whole and offered in one non-blocking write (its first bytes leave with
// the headers). The connection's write deadline holds throughout. Set it
// before handing the body to the server.
func (b *Body) SetDirect(rc syscall.RawConn, srcFd int) {
	b.rc, b.srcFd = rc, srcFd
	if b.direct.sendfile == nil {
		// Bound once per Body (Reset keeps them), so that a pooled body
		// hands rc.Write a function without allocating one each time.
		b.direct.sendfile, b.direct.offer = b.sendfileStep, b.offerStep
	}
}

// directOps are the functions a Body with a direct connection runs inside
// rc.Write, and what they report back.
type directOps struct {
	sendfile, offer func(fd uintptr) bool
	out             []byte // offerStep: the bytes to offer
	n               int64  // bytes the last step wrote
	err             error  // the error that stopped the last step
}

// writeDirect is WriteTo's first step with a direct connection. It returns
// the bytes written and whether the body is finished; when it is not, the
// chunked WriteTo goes on from where it stopped.
func (b *Body) writeDirect(w io.Writer) (n int64, done bool, err error) {
	bw, _ := w.(bufferedWriter)
	byFile := !b.join && b.srcFd >= 0 && len(b.head) == 0 && len(b.tail) == 0
	if !byFile && b.size <= BigMax {
		return b.offerWhole(bw)
	}
	// Neither sendfile nor the chunks carry what the server has buffered
	// (the headers): it must leave first.
	if bw != nil && bw.Buffered() > 0 {
		if err := bw.Flush(); err != nil {
			return 0, false, err
		}
	}
	if err := b.unhold(); err != nil {
		return 0, false, err
	}
	if !byFile {
		return 0, false, nil // over BigMax: streamed in chunks
	}
	n, err = b.sendfile()
	return n, err == nil, err
}

// bufferedWriter is the server's buffered writer of the connection, as
// WriteTo is given it (a *bufio.Writer).
type bufferedWriter interface {
	io.Writer
	Buffered() int
	Available() int
	Flush() error
}

// sendfile sends the range from the file to the connection, waiting for the
// connection as needed (within its write deadline).
func (b *Body) sendfile() (int64, error) {
	b.direct.n, b.direct.err = 0, nil
	err := b.rc.Write(b.direct.sendfile)
	sent := b.direct.n
	b.written += sent
	if err == nil {
		err = b.direct.err
	}
	return sent, err
}

// sendfileStep is sendfile's rc.Write function: it returns false to wait
// until the connection takes more.
func (b *Body) sendfileStep(fd uintptr) bool {
	for b.pos < b.end {
		off := b.pos
		n, err := unix.Sendfile(int(fd), b.srcFd, &off, int(min(b.end-b.pos, 1<<30)))
		if n > 0 {
			b.pos += int64(n)
			b.direct.n += int64(n)
		}
		switch {
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return false // wait until the connection takes more
		case err == unix.EPIPE || err == unix.ECONNRESET:
			b.direct.err = err
			return true
		case err != nil:
			b.direct.err = &SourceError{err}
			return true
		case n == 0:
			b.direct.err = &SourceError{io.ErrUnexpectedEOF} // the file is shorter than its index says
			return true
		}
	}
	return true
}

// offerWhole produces the whole body in a big pooled buffer and offers it
// to the connection in one write that does not wait. What bw holds (the
// headers) leaves first, topped up with the start of the body, as it would
// if the server wrote a body it holds: the first packet carries data. It
// gives the buffer back before returning; the part not taken is left to
// the chunked path.
func (b *Body) offerWhole(bw bufferedWriter) (int64, bool, error) {
	bp := bigs.Get().(*[]byte)
	defer bigs.Put(bp)
	out := append((*bp)[HeadRoom:HeadRoom], b.head[b.headOff:]...)
	rangeOut := 0
	if b.pos < b.end {
		lines := b.lines // a copy: what is not taken is read again
		got, err := readRange(b.src, out[len(out):len(out)+int(b.end-b.pos)], b.pos, true, b.join, &lines)
		if err != nil {
			return 0, false, err
		}
		rangeOut = len(got)
		out = out[:len(out)+rangeOut]
	}
	out = append(out, b.tail[b.tailOff:]...)

	if n, done, held, err := b.offerHeld(bw, *bp, out, rangeOut); held {
		return n, done, err
	}
	var n int
	if bw != nil && bw.Buffered() > 0 {
		n, _ = bw.Write(out[:min(len(out), bw.Available())])
		if err := bw.Flush(); err != nil {
			return 0, false, err
		}
	}
	if n == len(out) {
		b.advance(n, rangeOut)
		return int64(n), true, nil
	}
	n += b.offer(out[n:])
	err := b.direct.err
	b.advance(n, rangeOut)
	if err != nil {
		return int64(n), false, err
	}
	return int64(n), n == len(out), nil
}

// offer makes one write attempt of out that does not wait, and returns
// the bytes written; b.direct.err is the error that stopped it.
func (b *Body) offer(out []byte) int {
	b.direct.out, b.direct.n, b.direct.err = out, 0, nil
	err := b.rc.Write(b.direct.offer)
	if err != nil && b.direct.err == nil {
		b.direct.err = err
	}
	b.direct.out = nil // the buffer goes back to the pool
	return int(b.direct.n)
}

// offerHeld is offerWhole when the connection holds the head (Hold): what
// the server has buffered joins it, and the head and out (which starts at
// buf[HeadRoom]) are offered in one write. held is false, and nothing is
// written, when there is no held head.
func (b *Body) offerHeld(bw bufferedWriter, buf, out []byte, rangeOut int) (n int64, done, held bool, err error) {
	c, from, err := b.held.claim(bw, buf)
	if err != nil || c == nil {
		return 0, false, err != nil, err // c nil: nothing held, offer out alone
	}
	k := HeadRoom - from
	m := b.offer(buf[from : HeadRoom+len(out)])
	err = b.direct.err
	if m < k && err == nil {
		// The head must leave whole before any other byte: wait for it.
		var w int
		w, err = c.Conn.Write(buf[from+m : HeadRoom])
		m += w
	}
	m = max(m-k, 0)
	b.advance(m, rangeOut)
	if err != nil {
		return int64(m), false, true, err
	}
	return int64(m), m == len(out), true, nil
}

// offerStep is offerWhole's rc.Write function: one write that does not
// wait, whatever it takes.
func (b *Body) offerStep(fd uintptr) bool {
	for {
		m, err := unix.Write(int(fd), b.direct.out)
		if err == unix.EINTR {
			continue
		}
		if m > 0 {
			b.direct.n = int64(m)
		}
		if err != nil && err != unix.EAGAIN {
			b.direct.err = err
		}
		return true // one attempt: what is not taken now is streamed
	}
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
