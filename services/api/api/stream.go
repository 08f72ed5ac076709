package api

import (
	"bufio"
	"io"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/rowpipe/rowpipe/services/api/internal/pagereader"
	"github.com/rowpipe/rowpipe/services/api/internal/params"
	"github.com/rowpipe/rowpipe/services/api/internal/respond"
)

// stream hands the page in span to fasthttp as a stream: the answer
// outlives the handler. Everything the stream needs is copied out of the
// request (head, span), and the stream releases the lease and records the
// metrics itself when it ends.
//
// A JSON or NDJSON page without gzip, the usual large answer, is a pooled
// pageStream and costs no allocation; CSV and gzip, which cost far more
// than an allocation, go through a body stream writer.
func (s *Server) stream(c *fiber.Ctx, lease pagereader.Lease, route string, format params.Format, gz bool, head []byte, span *pagereader.Span, tail []byte) {
	c.Locals(stateKey, streamingMark)
	started := c.Context().Time()
	if !gz && format != params.CSV {
		ps := pageStreams.Get().(*pageStream)
		ps.s, ps.lease, ps.route, ps.started = s, lease, route, started
		ps.span = *span
		ps.body.Reset(append(ps.head[:0], head...), lease.Data(), span.Start, span.End, format == params.JSON, tail, ps.done)
		ps.body.SetEnds(ps.span.Ends())
		if rc := rawConn(c); rc != nil {
			// The body may write to the socket itself (see
			// respond.Body.SetDirect). A JSON body offered whole of up to
			// heldOfferMax bytes has the connection hold its headers
			// (respond.Conn), to send them in its one write; a larger one,
			// NDJSON by sendfile and chunked bodies write them first.
			ps.body.SetDirect(rc, lease.DataFd())
			if hc, ok := c.Context().Conn().(*respond.Conn); ok && format == params.JSON && ps.body.Size() <= heldOfferMax {
				ps.body.Hold(hc, ps.room[:])
			}
		}
		c.Response().SetBodyStream(&ps.body, int(ps.body.Size()))
		return
	}
	s.streamWriter(c, lease, route, started, format, gz, head, span, tail)
}

// heldOfferMax is the largest JSON body offered whole with its headers in
// the same write. Measured on loopback (BBR, TCP small queues): a write
// of just over two 64 KiB segments leaves a small last segment that the
// kernel holds back until the first ones are freed, which costs more than
// the headers' own write saves; up to one segment, one write is cheaper.
// Holding every body offered whole was measured again: +10% req/s for the
// limit=100 first page (head and body just under two loopback segments of
// 65483 bytes) but 0.48 of the ceiling instead of 0.69 for the last page,
// whose held head pushed 500 bytes into a third segment. Which side of a
// segment boundary a page falls on is luck, so holding stays within one.
const heldOfferMax = 64<<10 - respond.HeadRoom

// streamWriter streams a CSV or gzip page through a body stream writer. It
// is a function of its own because its closure captures the lease: in
// stream it would move stream's lease to the heap on every request.
func (s *Server) streamWriter(c *fiber.Ctx, lease pagereader.Lease, route string, started time.Time, format params.Format, gz bool, head []byte, span *pagereader.Span, tail []byte) {
	var src io.WriterTo
	if format == params.CSV {
		src = respond.CSV{Fields: lease.Header.Fields, Src: lease.Data(), Start: span.Start, End: span.End}
	} else {
		src = respond.NewBody(append([]byte(nil), head...), lease.Data(), span.Start, span.End, format == params.JSON, tail, nil)
	}
	if gz {
		c.Response().Header.Set(fiber.HeaderContentEncoding, "gzip")
	}
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		var n int64
		var err error
		if gz {
			n, err = respond.Gzip(w, src)
		} else {
			n, err = src.WriteTo(w)
		}
		if err == nil {
			err = w.Flush()
		}
		s.streamDone(lease, route, started, n, err)
	})
}

// streamDone ends a streamed answer: it logs why it stopped early, if it
// did, records its metrics and releases its generation.
func (s *Server) streamDone(lease pagereader.Lease, route string, started time.Time, n int64, err error) {
	if err != nil {
		s.metrics.StreamErrors.Inc()
		if respond.IsSourceError(err) {
			s.log.Warn("answer stopped early: the generation file could not be read",
				"dataset", lease.Header.Dataset, "generation", lease.Header.Generation, "err", err)
		} else {
			s.log.Debug("answer stopped early: the client went away or stalled", "dataset", lease.Header.Dataset, "err", err)
		}
	}
	lease.Release()
	s.routeMetrics(route).Observe(http.StatusOK, n, time.Since(started))
}

// pageStream is one streamed JSON or NDJSON page: the body fasthttp reads
// after the handler has returned, and what its end needs. Values are
// pooled; done is bound to its value once, when the value is made, so that
// handing it to the body allocates nothing.
type pageStream struct {
	s       *Server
	lease   pagereader.Lease
	route   string
	started time.Time
	span    pagereader.Span // the body's line ends point into it
	head    [envelopeHeadMax]byte
	room    [respond.HeadRoom]byte // the held response head (respond.Body.Hold)
	body    respond.Body
	done    func(int64, error) // finish
}

var pageStreams sync.Pool // of *pageStream

func init() {
	// Set here, not in pageStreams' declaration: finish puts values back
	// into the pool, which would make the declaration refer to itself.
	pageStreams.New = func() any {
		ps := new(pageStream)
		ps.done = ps.finish
		return ps
	}
}

// finish is the body's done function: Close calls it last, after which the
// body is not touched again, so the value can go back to the pool. It lets
// go of everything the answer referred to; the body's Reset keeps the
// functions bound to it.
func (ps *pageStream) finish(n int64, err error) {
	ps.s.streamDone(ps.lease, ps.route, ps.started, n, err)
	ps.s, ps.lease = nil, pagereader.Lease{}
	ps.body.Reset(nil, nil, 0, 0, false, nil, nil)
	pageStreams.Put(ps)
}

// rawConn is the request's connection as a raw socket, or nil when it is
// not one (a test's in-memory connection).
func rawConn(c *fiber.Ctx) syscall.RawConn {
	if sc, ok := c.Context().Conn().(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return rc
		}
	}
	return nil
}
