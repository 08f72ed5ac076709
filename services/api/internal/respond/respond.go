// Package respond writes the api's answers: the JSON error body, the JSON
// page envelope around record bytes taken straight from a generation file,
// raw NDJSON, streamed CSV, and gzip around any of them.
//
// Records are never decoded and re-encoded for JSON or NDJSON: the file's
// lines already are the JSON objects, so a page is the envelope's head, the
// lines with each '\n' turned into ',' (the last one dropped), and "]}".
// Memory per answer is bounded whatever the page size: one pooled buffer of
// ChunkSize bytes (InlineMax for a page read whole; BigMax only for one
// non-blocking write attempt, never while waiting on a slow client), or
// none at all when NDJSON goes out by sendfile.
package respond

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// ChunkSize is the most a body holds in memory at once (one pooled buffer).
const ChunkSize = 32 << 10

var chunks = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// Error is an answer other than 2xx/304: the HTTP status, a stable code for
// programs and a message for people that says what to change.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when positive, is sent as the Retry-After header (whole
	// seconds, rounded up).
	RetryAfter time.Duration
	// Err is the cause, for logs; never shown to the client.
	Err error
}

// Errorf returns an *Error with a formatted message.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// RetryAfterSeconds is the Retry-After value: RetryAfter rounded up to
// whole seconds, at least 1; 0 when RetryAfter is not positive.
func (e *Error) RetryAfterSeconds() int {
	if e.RetryAfter <= 0 {
		return 0
	}
	return int((e.RetryAfter + time.Second - 1) / time.Second)
}

// AppendError appends the error body {"error":{"code":"...","message":"..."}}.
func AppendError(dst []byte, code, message string) []byte {
	dst = append(dst, `{"error":{"code":`...)
	dst = appendString(dst, code)
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, message)
	return append(dst, "}}"...)
}

// appendString appends s as a JSON string; invalid UTF-8 (which only a
// message quoting a client's bytes can hold) is replaced, never refused.
func appendString(dst []byte, s string) []byte {
	out, err := schema.AppendJSONString(dst, s)
	if err != nil {
		out, _ = schema.AppendJSONString(dst, toValidUTF8(s))
	}
	return out
}

func toValidUTF8(s string) string {
	b := make([]rune, 0, len(s))
	for _, r := range s { // ranging replaces each invalid byte with U+FFFD
		b = append(b, r)
	}
	return string(b)
}

// Envelope is the head of a page answer, every member but data.
type Envelope struct {
	Dataset    string
	Generation uint64
	Count      uint64
	Offset     uint64
	Limit      int
	Returned   uint64
	// NextOffset is the offset of the next page; HasNext false makes it null.
	NextOffset uint64
	HasNext    bool
}

// AppendEnvelopeHead appends the page object up to and including
// `"data":[`; the records and EnvelopeTail follow. The members come in the
// contract's order: dataset, generation, count, offset, limit, returned,
// next_offset, data (last, so a client can stream it).
func AppendEnvelopeHead(dst []byte, e Envelope) []byte {
	dst = append(dst, `{"dataset":`...)
	dst = appendString(dst, e.Dataset)
	dst = append(dst, `,"generation":`...)
	dst = strconv.AppendUint(dst, e.Generation, 10)
	dst = append(dst, `,"count":`...)
	dst = strconv.AppendUint(dst, e.Count, 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendUint(dst, e.Offset, 10)
	dst = append(dst, `,"limit":`...)
	dst = strconv.AppendInt(dst, int64(e.Limit), 10)
	dst = append(dst, `,"returned":`...)
	dst = strconv.AppendUint(dst, e.Returned, 10)
	dst = append(dst, `,"next_offset":`...)
	if e.HasNext {
		dst = strconv.AppendUint(dst, e.NextOffset, 10)
	} else {
		dst = append(dst, "null"...)
	}
	return append(dst, `,"data":[`...)
}

// EnvelopeTail closes a page object after its records.
const EnvelopeTail = "]}"

// ErrCorrupt is returned by a Body whose record bytes do not end where the
// index says a record ends.
var ErrCorrupt = errors.New("record bytes do not end with a newline where the index says")

// SourceError is an error of the file side of a body (a failed or short
// read, corrupt bytes), as opposed to the client side (a write that failed
// because the client went away or stalled). Only the former needs an
// operator's attention.
type SourceError struct{ Err error }

func (e *SourceError) Error() string { return "reading the generation file: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *SourceError) Unwrap() error { return e.Err }

// IsSourceError reports whether err came from the file side of a body.
func IsSourceError(err error) bool {
	var se *SourceError
	return errors.As(err, &se)
}

// Body is a response body made of a head, a byte range of a generation
// file, and a tail. In join mode (the JSON envelope) the range's newlines
// become commas and its final newline is dropped; otherwise (NDJSON) the
// bytes pass unchanged. Its length is known in advance (Size), so the
// server can send Content-Length. It implements io.Reader, io.WriterTo (so
// copying it uses one pooled buffer and never another) and io.Closer, and
// calls the done function given to NewBody exactly once, on Close. With a
// direct connection (SetDirect) WriteTo first tries cheaper ways: sendfile,
// or the whole body offered in one write.
type Body struct {
	head, tail []byte
	src        io.ReaderAt
	pos, end   int64
	join       bool
	lines      lineEnds // SetEnds
	// state for Read
	headOff, tailOff int
	written          int64
	size             int64
	err              error
	done             func(written int64, err error)
	closed           bool
	// direct connection (SetDirect)
	rc     syscall.RawConn
	srcFd  int
	direct directOps
	// held: the response head, held back (see Hold).
	held heldHead
}

// NewBody returns a body of head, src's bytes [start, end), and tail. With
// join the range must hold whole lines (it ends with '\n'). done, if not nil,
// runs once when the body is closed, with the bytes produced and the first
// error met (nil when the whole body was produced); it is where the caller
// releases src.
func NewBody(head []byte, src io.ReaderAt, start, end int64, join bool, tail []byte, done func(int64, error)) *Body {
	b := new(Body)
	b.Reset(head, src, start, end, join, tail, done)
	return b
}

// Reset makes b the body NewBody would return, whatever it was before, so
// that a Body can live in a pooled value of the caller's.
func (b *Body) Reset(head []byte, src io.ReaderAt, start, end int64, join bool, tail []byte, done func(int64, error)) {
	ops := directOps{sendfile: b.direct.sendfile, offer: b.direct.offer} // bound to b: still b's
	*b = Body{head: head, tail: tail, src: src, pos: start, end: end, join: join, done: done, srcFd: -1, direct: ops}
	b.size = Size(head, start, end, join, tail)
}

// SetEnds gives a join body the line ends of its range: the offsets just
// past each line's '\n', in order, the last one being the range's end (as
// pagereader.Span.Ends has them). The join then checks and turns exactly
// those bytes into commas instead of scanning the range for newlines. Ends
// that do not fit the range are ignored (the range is scanned). Set them
// before the first read; ends must not change while the body is used.
func (b *Body) SetEnds(ends []int64) { b.lines = newLineEnds(ends, b.pos, b.end) }

// Size is the size of the body NewBody(head, src, start, end, join, tail)
// produces.
func Size(head []byte, start, end int64, join bool, tail []byte) int64 {
	n := int64(len(head)+len(tail)) + end - start
	if join && end > start {
		n-- // the last newline is dropped
	}
	return n
}

// OnClose sets the function Close calls (replacing the one given to
// NewBody); set it before the body is handed to the server.
func (b *Body) OnClose(done func(written int64, err error)) { b.done = done }

// Size is the exact number of bytes the body produces.
func (b *Body) Size() int64 { return b.size }

// fill reads the next part of the range into p and returns the bytes to
// send (a prefix of p); see readRange.
func (b *Body) fill(p []byte) ([]byte, error) {
	n := int(min(int64(len(p)), b.end-b.pos))
	out, err := readRange(b.src, p[:n], b.pos, b.pos+int64(n) == b.end, b.join, &b.lines)
	if err != nil {
		return nil, err
	}
	b.pos += int64(n)
	return out, nil
}

// Hold makes c hold back what the server writes before the body (its
// head), in room, so that a body offered whole (see SetDirect) sends it in
// the same write as its bytes (see Conn). Any other way of sending the body
// writes the head first. room's capacity is the most held; it must stay
// untouched until the body is closed. Call it just before handing the body
// to the server.
func (b *Body) Hold(c *Conn, room []byte) { b.held.start(c, room) }

// unhold stops holding, writing what is held.
func (b *Body) unhold() error { return b.held.stop() }

// Read implements io.Reader.
func (b *Body) Read(p []byte) (int, error) {
	if err := b.unhold(); err != nil {
		b.err = err
		return 0, err
	}
	if b.err != nil {
		return 0, b.err
	}
	n := 0
	for n < len(p) {
		switch {
		case b.headOff < len(b.head):
			c := copy(p[n:], b.head[b.headOff:])
			b.headOff += c
			n += c
		case b.pos < b.end:
			out, err := b.fill(p[n:])
			if err != nil {
				b.err = err
				b.written += int64(n)
				return n, err
			}
			n += len(out)
			if len(out) == 0 && b.pos < b.end {
				// only when p[n:] is too short to make progress
				b.written += int64(n)
				return n, nil
			}
		case b.tailOff < len(b.tail):
			c := copy(p[n:], b.tail[b.tailOff:])
			b.tailOff += c
			n += c
		default:
			b.written += int64(n)
			if n == 0 {
				b.err = io.EOF
				return 0, io.EOF
			}
			return n, nil
		}
	}
	b.written += int64(n)
	return n, nil
}

// WriteTo implements io.WriterTo: the head, the records and the tail are
// assembled in one pooled ChunkSize buffer, so a page that fits is handed
// to w in one Write (one system call on a connection). A write error (the
// client went away) stops it at once.
func (b *Body) WriteTo(w io.Writer) (int64, error) {
	if b.err != nil {
		return 0, b.err
	}
	start := b.written
	if b.rc != nil {
		// One direct attempt (see SetDirect); what remains streams below.
		_, done, err := b.writeDirect(w)
		b.rc = nil
		if err != nil {
			b.err = err
			return b.written - start, err
		}
		if done {
			b.err = io.EOF
			return b.written - start, nil
		}
	}
	if err := b.unhold(); err != nil {
		b.err = err
		return b.written - start, err
	}
	bp := chunks.Get().(*[]byte)
	defer chunks.Put(bp)
	buf := *bp
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		m, err := w.Write(buf[:n])
		b.written += int64(m)
		n = 0
		return err
	}
	fail := func(err error) (int64, error) {
		b.err = err
		return b.written - start, err
	}
	// put copies src through the buffer, flushing it whenever it fills.
	put := func(src []byte) error {
		for len(src) > 0 {
			c := copy(buf[n:], src)
			n += c
			src = src[c:]
			if n == len(buf) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := put(b.head[b.headOff:]); err != nil {
		return fail(err)
	}
	b.headOff = len(b.head)
	for b.pos < b.end {
		out, err := b.fill(buf[n:])
		if err != nil {
			return fail(err)
		}
		if n += len(out); n == len(buf) {
			if err := flush(); err != nil {
				return fail(err)
			}
		}
	}
	if err := put(b.tail[b.tailOff:]); err != nil {
		return fail(err)
	}
	b.tailOff = len(b.tail)
	if err := flush(); err != nil {
		return fail(err)
	}
	b.err = io.EOF
	return b.written - start, nil
}

// Close ends the body: it calls done once with the bytes produced and the
// error that stopped it, if any (a body closed before its end reports
// io.ErrUnexpectedEOF). Close is idempotent and always returns nil.
func (b *Body) Close() error {
	b.unhold()
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.err
	if errors.Is(err, io.EOF) {
		err = nil
	} else if err == nil && (b.headOff < len(b.head) || b.pos < b.end || b.tailOff < len(b.tail)) {
		err = io.ErrUnexpectedEOF
	}
	if b.done != nil {
		b.done(b.written, err)
	}
	return nil
}
