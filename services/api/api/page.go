package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/rowpipe/rowpipe/services/api/internal/pagereader"
	"github.com/rowpipe/rowpipe/services/api/internal/params"
	"github.com/rowpipe/rowpipe/services/api/internal/respond"
)

// page answers one page of records from one generation, from the bytes of
// the file: no record is decoded for JSON or NDJSON.
//
// A JSON or NDJSON page of up to respond.InlineMax bytes is read with one
// read into a pooled buffer before the handler returns (the generation is
// released at once) and leaves with its headers in one write system call
// (the connection holds the headers back: respond.Conn). A larger one
// streams (see stream): an NDJSON page by sendfile, a JSON page of up to
// respond.BigMax produced whole and offered to the socket with its headers
// in one write, the rest (and CSV, and gzip) through one ChunkSize buffer.
//
// The index entries of a page of up to pagereader.SpanMax records are read
// at once, and the JSON join turns exactly the line ends they give into
// commas: the record bytes are read once and never scanned.
func (s *Server) page(c *fiber.Ctx, name string, p params.Page, route string) error {
	lease, err := s.store.Acquire(name, p.Generation)
	if err != nil {
		return s.storeError(err, name, p.Generation)
	}
	h := &lease.Header
	var returned uint64
	if p.Offset < h.Count {
		returned = min(uint64(p.Limit), h.Count-p.Offset)
	}
	next := p.Offset + returned
	hasNext := next < h.Count
	gz := acceptsGzip(c.Get(fiber.HeaderAcceptEncoding))

	var tagBuf [etagLen]byte
	tag := appendETag(tagBuf[:0], name, h, p.Offset, p.Limit, string(p.Format))
	hdr := &c.Response().Header
	hdr.SetCanonical(headerVary, varyValue)
	hdr.SetCanonical(headerCacheControl, noCacheValue)
	var num [20]byte
	hdr.SetCanonical(headerTotalCount, strconv.AppendUint(num[:0], h.Count, 10))
	if gz {
		var gzBuf [etagLen + 3]byte
		hdr.SetCanonical(headerETag, appendGzipTag(gzBuf[:0], tag))
	} else {
		hdr.SetCanonical(headerETag, tag)
	}
	if hasNext {
		var link [linkMax]byte
		hdr.SetCanonical(headerLink, appendNextLink(link[:0], route, name, p, h.Generation, next))
	}
	if etagMatch(c.Get(fiber.HeaderIfNoneMatch), tag) {
		lease.Release()
		c.Status(http.StatusNotModified)
		return nil
	}
	var span pagereader.Span
	if returned > 0 {
		if err := lease.Span(p.Offset, returned, &span); err != nil {
			lease.Release()
			return s.storeError(fmt.Errorf("%w: %s: %w", pagereader.ErrUnavailable, name, err), name, p.Generation)
		}
	}
	hdr.SetContentType(p.Format.ContentType())
	if p.Format == params.CSV {
		hdr.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="%s-%d-%d.csv"`, name, h.Generation, p.Offset))
	}

	var head, tail []byte
	var headBuf [envelopeHeadMax]byte
	join := p.Format == params.JSON
	if join {
		head = respond.AppendEnvelopeHead(headBuf[:0], respond.Envelope{
			Dataset: name, Generation: h.Generation, Count: h.Count, Offset: p.Offset, Limit: p.Limit,
			Returned: returned, NextOffset: next, HasNext: hasNext,
		})
		tail = envelopeTail
	}

	if c.Method() == fiber.MethodHead {
		if p.Format != params.CSV && !gz {
			hdr.SetContentLength(int(respond.Size(head, span.Start, span.End, join, tail)))
		}
		lease.Release()
		return nil
	}

	if !gz && p.Format != params.CSV && respond.Fits(head, span.Start, span.End, tail) {
		body, err := respond.Buffer(head, lease.Data(), span.Start, span.End, span.Ends(), join, tail)
		gen := h.Generation
		lease.Release()
		if err != nil {
			s.log.Warn("answer not sent: the generation file could not be read", "dataset", name, "generation", gen, "err", err)
			return &respond.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", RetryAfter: time.Second,
				Message: fmt.Sprintf("dataset %q cannot be read right now; retry shortly", name), Err: err}
		}
		// fasthttp writes it right after the handler and closes it (which
		// gives the buffer back); observe records the metrics.
		body.OnClose(s.inlineDone)
		if hc, ok := c.Context().Conn().(*respond.Conn); ok {
			body.Hold(hc) // the headers leave with the body, in one write
		}
		c.Response().SetBodyStream(body, body.Len())
		return nil
	}

	s.stream(c, lease, route, p.Format, gz, head, &span, tail)
	return nil
}

// Response header names in the canonical form fasthttp stores them in (so
// Del and Peek by any spelling find them), and constant values: setting them
// with SetCanonical does no normalizing or copying of strings into bytes.
var (
	headerVary         = canonical(fiber.HeaderVary)
	headerCacheControl = canonical(fiber.HeaderCacheControl)
	headerTotalCount   = canonical("X-Total-Count")
	headerETag         = canonical(fiber.HeaderETag)
	headerLink         = canonical(fiber.HeaderLink)
	varyValue          = []byte("Accept, Accept-Encoding")
	noCacheValue       = []byte("private, no-cache")
	envelopeTail       = []byte(respond.EnvelopeTail)
)

func canonical(name string) []byte { return fasthttp.AppendNormalizedHeaderKey(nil, name) }

// envelopeHeadMax is room for a JSON envelope head without growing: its
// numbers and a dataset name of up to 64 characters take under 250 bytes.
const envelopeHeadMax = 256

// linkMax is room for a next-page Link without growing.
const linkMax = 256

// inlineDoneFunc returns the function handed to every buffered answer
// (made once, so handing it over allocates nothing): it runs when fasthttp
// has written the answer (err nil) or given up on it (the client went away
// or stalled).
func (s *Server) inlineDoneFunc() func(int64, error) {
	return func(_ int64, err error) {
		if err != nil {
			s.metrics.StreamErrors.Inc()
			s.log.Debug("answer stopped early: the client went away or stalled", "err", err)
		}
	}
}

// appendNextLink appends the Link header of the next page, pinned to the
// generation this page came from so that a client following the links
// reads one generation throughout (410 if it is pruned meanwhile).
func appendNextLink(b []byte, route, name string, p params.Page, gen, next uint64) []byte {
	b = append(b, '<')
	if route == routeRecords {
		b = append(b, "/datasets/"...)
		b = append(b, name...)
		b = append(b, "/records?"...)
	} else {
		b = append(b, "/fetch-data?dataset="...)
		b = append(b, name...)
		b = append(b, '&')
	}
	b = append(b, "limit="...)
	b = strconv.AppendInt(b, int64(p.Limit), 10)
	b = append(b, "&offset="...)
	b = strconv.AppendUint(b, next, 10)
	b = append(b, "&generation="...)
	b = strconv.AppendUint(b, gen, 10)
	if p.FormatParam {
		b = append(b, "&format="...)
		b = append(b, p.Format...)
	}
	return append(b, `>; rel="next"`...)
}
