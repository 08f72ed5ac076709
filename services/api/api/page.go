package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/api/internal/params"
	"github.com/rowpipe/rowpipe/services/api/internal/respond"
	"github.com/rowpipe/rowpipe/services/api/internal/sendfile"
)

// How a page leaves: a body of up to oneWrite bytes is copied into the
// response, and fasthttp writes it and its headers in one write (its write
// buffer is writeBuffer). A larger one follows its headers: NDJSON without
// gzip from the file by sendfile, a page of up to wholeMax record bytes
// built whole and written from its pooled buffer, any other written as it
// is read, by a goroutine of its own.
const (
	writeBuffer = 16 << 10
	oneWrite    = writeBuffer - 2<<10 // room for the headers
	wholeMax    = 256 << 10
)

// page answers one page of records from one generation: the bytes of the
// file, with no record decoded for JSON or NDJSON.
func (s *Server) page(c *fiber.Ctx, name string, p params.Page, route string) error {
	lease, err := s.store.Acquire(name, p.Generation)
	if err != nil {
		return s.storeError(err, name, p.Generation)
	}
	// An answer gzipped while MaxGzip others are goes uncompressed instead.
	gz := acceptsGzip(c.Get(fiber.HeaderAcceptEncoding)) && s.gzip.take()
	// A body written after the handler returns gives the lease and the
	// gzip slot back itself, once it ends.
	handedOver := false
	defer func() {
		if !handedOver {
			lease.Release()
			if gz {
				s.gzip.give()
			}
		}
	}()

	h := &lease.Header
	var returned uint64
	if p.Offset < h.Count {
		returned = min(uint64(p.Limit), h.Count-p.Offset)
	}
	next := p.Offset + returned
	tag := appendETag(nil, name, h, p.Offset, p.Limit, string(p.Format))
	hdr := &c.Response().Header
	hdr.Set(fiber.HeaderVary, "Accept, Accept-Encoding")
	hdr.Set(fiber.HeaderCacheControl, "private, no-cache")
	hdr.Set("X-Total-Count", strconv.FormatUint(h.Count, 10))
	if gz {
		hdr.SetBytesV(fiber.HeaderETag, appendGzipTag(nil, tag))
	} else {
		hdr.SetBytesV(fiber.HeaderETag, tag)
	}
	if next < h.Count {
		hdr.Set(fiber.HeaderLink, nextLink(route, name, p, h.Generation, next))
	}
	if etagMatch(c.Get(fiber.HeaderIfNoneMatch), tag) {
		c.Status(http.StatusNotModified)
		return nil
	}

	body := respond.Page{Src: lease, Records: int(returned), Format: respondFormat(p.Format), Fields: h.Fields, Gzip: gz}
	switch {
	case returned > 0 && returned <= schema.EndsMax && body.Format == respond.JSON:
		ends := endsBufs.Get().(*[schema.EndsMax]int64)
		defer endsBufs.Put(ends)
		body.Ends = ends[:returned]
		if body.Start, err = lease.Ends(p.Offset, body.Ends); err != nil {
			return s.unreadable(name, h.Generation, err)
		}
		body.End = body.Ends[returned-1]
	case returned > 0:
		if body.Start, body.End, err = lease.Range(p.Offset, returned); err != nil {
			return s.unreadable(name, h.Generation, err)
		}
	}
	if body.Format == respond.JSON {
		body.Head = respond.AppendEnvelopeHead(nil, respond.Envelope{
			Dataset: name, Generation: h.Generation, Count: h.Count, Offset: p.Offset, Limit: p.Limit,
			Returned: returned, NextOffset: next, HasNext: next < h.Count,
		})
		body.Tail = envelopeTail
	}
	hdr.SetContentType(p.Format.ContentType())
	if p.Format == params.CSV {
		hdr.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="%s-%d-%d.csv"`, name, h.Generation, p.Offset))
	}
	if gz {
		hdr.Set(fiber.HeaderContentEncoding, "gzip")
	}
	size := body.Size()
	if c.Method() == fiber.MethodHead {
		if size >= 0 {
			hdr.SetContentLength(int(size))
		}
		return nil
	}

	byFile := body.Format == respond.NDJSON && !gz && size > oneWrite
	if !byFile && body.End-body.Start <= wholeMax {
		whole := wholeBodies.Get().(*wholeBody)
		if whole.buf, err = body.Append(whole.buf[:0]); err != nil {
			wholeBodies.Put(whole)
			return s.unreadable(name, h.Generation, err)
		}
		if len(whole.buf) <= oneWrite {
			c.Response().SetBody(whole.buf) // a copy, written with the headers
			wholeBodies.Put(whole)
			return nil
		}
		whole.Reset(whole.buf)
		c.Response().SetBodyStream(whole, len(whole.buf))
		return nil
	}

	// Written after the handler returns: the answer records its own
	// metrics when it ends.
	handedOver = true
	c.Locals(streamingKey, true)
	started := c.Context().Time()
	name = strings.Clone(name) // it may be a view of the request, reused before the answer ends
	done := func(n int64, err error) {
		s.streamDone(name, h.Generation, route, started, n, err)
		lease.Release()
		if gz {
			s.gzip.give()
		}
	}
	body.Ends = nil // in endsBufs again once the handler returns
	if byFile {
		c.Response().SetBodyStream(&fileBody{page: body, conn: c.Context().Conn(), file: lease.File(), done: done, err: errNotSent}, int(size))
		return nil
	}
	c.Response().SetBodyStream(stream(body, done), int(size))
	return nil
}

var envelopeTail = []byte(respond.EnvelopeTail)

// endsBufs hold the record ends of a JSON page (respond.Page.Ends).
var endsBufs = sync.Pool{New: func() any { return new([schema.EndsMax]int64) }}

// wholeBody is a body built whole in the handler. fasthttp writes it
// straight from its buffer (io.WriterTo) and closes it, which puts it back
// in wholeBodies.
type wholeBody struct {
	bytes.Reader
	buf []byte
}

func (b *wholeBody) Close() error {
	b.Reset(nil)
	wholeBodies.Put(b)
	return nil
}

var wholeBodies = sync.Pool{New: func() any { return new(wholeBody) }}

// stream returns page's body as the reading end of a pipe that a goroutine
// of its own writes it into. done runs once the body is written, or has
// failed, before the reader sees its end: the error that stopped the
// writer, or io.EOF after the whole body.
func stream(page respond.Page, done func(int64, error)) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		n, err := page.WriteTo(pw)
		done(n, err)
		pw.CloseWithError(err)
	}()
	return pr
}

// fileBody is the body of an NDJSON page without gzip. fasthttp hands its
// WriteTo the connection's buffered writer, holding the headers; WriteTo
// flushes them and sends the records from the file to the connection by
// sendfile (on a connection that is not a socket, it writes them). fasthttp
// closes it once the answer ends, which runs done.
type fileBody struct {
	page respond.Page
	conn net.Conn
	file *os.File
	done func(int64, error)
	sent int64
	err  error // errNotSent until WriteTo runs
}

func (b *fileBody) WriteTo(w io.Writer) (int64, error) {
	if f, ok := w.(interface{ Flush() error }); ok {
		if b.err = f.Flush(); b.err != nil {
			return 0, b.err
		}
	}
	b.sent, b.err = sendfile.Copy(b.conn, b.file, b.page.Start, b.page.End-b.page.Start)
	switch {
	case b.sent == 0 && errors.Is(b.err, errors.ErrUnsupported):
		b.sent, b.err = b.page.WriteTo(w)
	case errors.Is(b.err, io.ErrUnexpectedEOF):
		b.err = &respond.SourceError{Err: fmt.Errorf("send records at %d: %w", b.page.Start+b.sent, b.err)}
	}
	return b.sent, b.err
}

// Read is never called: fasthttp copies a body with its WriteTo.
func (b *fileBody) Read([]byte) (int, error) { return 0, errors.ErrUnsupported }

func (b *fileBody) Close() error {
	b.done(b.sent, b.err)
	return nil
}

var errNotSent = errors.New("the connection ended before the body was sent")

func respondFormat(f params.Format) respond.Format {
	switch f {
	case params.NDJSON:
		return respond.NDJSON
	case params.CSV:
		return respond.CSV
	default:
		return respond.JSON
	}
}

// unreadable is the answer to a page whose records could not be read.
func (s *Server) unreadable(name string, gen uint64, err error) error {
	s.log.Warn("answer not sent: the generation file could not be read", "dataset", name, "generation", gen, "err", err)
	return &respond.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", RetryAfter: time.Second,
		Message: fmt.Sprintf("dataset %q cannot be read right now; retry shortly", name), Err: err}
}

// streamDone ends a streamed answer: it logs why it stopped early, if it
// did, and records its metrics.
func (s *Server) streamDone(name string, gen uint64, route string, started time.Time, n int64, err error) {
	if err != nil {
		s.metrics.StreamErrors.Inc()
		if respond.IsSourceError(err) {
			s.log.Warn("answer stopped early: the generation file could not be read", "dataset", name, "generation", gen, "err", err)
		} else {
			s.log.Debug("answer stopped early: the client went away or stalled", "dataset", name, "err", err)
		}
	}
	s.routeMetrics(route).Observe(http.StatusOK, n, time.Since(started))
}

// nextLink is the Link header of the next page, pinned to the generation
// this page came from so that a client following the links reads one
// generation throughout (410 if it is pruned meanwhile).
func nextLink(route, name string, p params.Page, gen, next uint64) string {
	path := "/fetch-data?dataset=" + name + "&"
	if route == routeRecords {
		path = "/datasets/" + name + "/records?"
	}
	link := fmt.Sprintf("<%slimit=%d&offset=%d&generation=%d", path, p.Limit, next, gen)
	if p.FormatParam {
		link += "&format=" + string(p.Format)
	}
	return link + `>; rel="next"`
}

// slots bounds how many of something run at once; take never waits.
type slots chan struct{}

func (s slots) take() bool {
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s slots) give() { <-s }
