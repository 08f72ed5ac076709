package respond

import (
	"fmt"
	"io"
	"sync"
)

// InlineMax is the largest body Buffer produces in memory: a page up to this
// size is read from the file in one read before the server writes anything,
// so that its headers and body leave together (see Hold) with no file read
// in between; a larger one streams (see Body). It is ChunkSize, so a
// buffered answer never holds more memory than a streamed one does.
const InlineMax = ChunkSize

// Fits reports whether a body of head, the byte range [start, end) and tail
// can be buffered (Buffer): whether the range, read whole, fits InlineMax.
func Fits(head []byte, start, end int64, tail []byte) bool {
	return int64(len(head)+len(tail))+end-start <= InlineMax
}

// Buffered is a whole response body in a pooled buffer of InlineMax bytes.
// It implements io.Reader, io.WriterTo (one Write of the whole body) and
// io.Closer; Close returns the buffer to the pool, after which the body must
// not be used. Hand it to the server as a body stream of Len bytes: the
// server closes it once it has written it.
type Buffered struct {
	buf  *[]byte // HeadRoom bytes, then the body
	b    []byte  // the body: (*buf)[HeadRoom:HeadRoom+n]
	off  int
	done func(written int64, err error)
	// held: the response head, held in the start of *buf (see Hold).
	held heldHead
}

var bufferedPool = sync.Pool{New: func() any { return new(Buffered) }}

// inlines are the buffers of Buffered: HeadRoom, then InlineMax.
var inlines = sync.Pool{New: func() any { b := make([]byte, HeadRoom+InlineMax); return &b }}

// Buffer produces the body NewBody(head, src, start, end, join, tail)
// would, whole, in a pooled buffer: head, one read of the range (the JSON
// join done in place, at ends when they are given: see Body.SetEnds) and
// tail. It must Fit. A short or failed read is a *SourceError, and then
// nothing is held. head and tail are copied.
func Buffer(head []byte, src io.ReaderAt, start, end int64, ends []int64, join bool, tail []byte) (*Buffered, error) {
	if !Fits(head, start, end, tail) {
		return nil, fmt.Errorf("respond: a body of %d bytes is over InlineMax", int64(len(head)+len(tail))+end-start)
	}
	bp := inlines.Get().(*[]byte)
	dst := append((*bp)[HeadRoom:HeadRoom], head...)
	if end > start {
		lines := newLineEnds(ends, start, end)
		out, err := readRange(src, dst[len(dst):len(dst)+int(end-start)], start, true, join, &lines)
		if err != nil {
			inlines.Put(bp)
			return nil, err
		}
		dst = dst[:len(dst)+len(out)]
	}
	out := append(dst, tail...)
	r := bufferedPool.Get().(*Buffered)
	r.buf, r.b, r.off, r.done = bp, out, 0, nil
	return r, nil
}

// Bytes is the whole body. It is valid until Close.
func (r *Buffered) Bytes() []byte { return r.b }

// Len is the body's size in bytes.
func (r *Buffered) Len() int { return len(r.b) }

// OnClose sets a function Close calls once with the bytes handed over and
// the error that stopped them (io.ErrUnexpectedEOF if the body was closed
// before its end).
func (r *Buffered) OnClose(done func(written int64, err error)) { r.done = done }

// Hold makes c hold back what the server writes before the body (its
// head) so that the head leaves with the body in one write (see Conn). Call
// it just before handing the body to the server.
func (r *Buffered) Hold(c *Conn) { r.held.start(c, (*r.buf)[:0:HeadRoom]) }

// unhold stops holding, writing what is held.
func (r *Buffered) unhold() error { return r.held.stop() }

// writeHeld sends the held head and the whole body in one write, if the
// head is held; ok is false when it is not (nothing was written then).
func (r *Buffered) writeHeld(w io.Writer) (n int64, ok bool, err error) {
	if r.off != 0 {
		return 0, false, r.unhold()
	}
	bw, _ := w.(bufferedWriter)
	c, from, err := r.held.claim(bw, *r.buf)
	if err != nil || c == nil {
		return 0, err != nil, err
	}
	m, err := c.Conn.Write((*r.buf)[from : HeadRoom+len(r.b)])
	body := max(m-(HeadRoom-from), 0)
	r.off += body
	return int64(body), true, err
}

// Read implements io.Reader.
func (r *Buffered) Read(p []byte) (int, error) {
	if err := r.unhold(); err != nil {
		return 0, err
	}
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

// WriteTo implements io.WriterTo: the rest of the body in one Write.
func (r *Buffered) WriteTo(w io.Writer) (int64, error) {
	if r.off >= len(r.b) {
		return 0, r.unhold()
	}
	if r.held.conn != nil {
		if n, ok, err := r.writeHeld(w); ok {
			return n, err
		}
	}
	n, err := w.Write(r.b[r.off:])
	r.off += n
	return int64(n), err
}

// Close calls the OnClose function, if any, and gives the buffer back. It
// must be called exactly once.
func (r *Buffered) Close() error {
	r.unhold()
	if r.done != nil {
		var err error
		if r.off < len(r.b) {
			err = io.ErrUnexpectedEOF
		}
		r.done(int64(r.off), err)
	}
	inlines.Put(r.buf)
	*r = Buffered{}
	bufferedPool.Put(r)
	return nil
}
