package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/api/internal/auth"
	"github.com/rowpipe/rowpipe/services/api/internal/metrics"
	"github.com/rowpipe/rowpipe/services/api/internal/pagereader"
	"github.com/rowpipe/rowpipe/services/api/internal/params"
	"github.com/rowpipe/rowpipe/services/api/internal/respond"
)

// stateKey marks, in a request's locals, an answer that is streamed: the
// stream records its metrics when it ends, not when the handler returns.
// Its value is streamingMark, so marking allocates nothing.
const stateKey = "rowpipe.streaming"

var streamingMark = true

// observe is the outermost middleware: it writes the JSON answer of any
// error and records each request's metrics (a streamed answer records its
// own when its last byte is handed over). The request's start is the time
// fasthttp read it (RequestCtx.Time).
func (s *Server) observe(c *fiber.Ctx) error {
	err := c.Next()
	if err != nil {
		s.writeError(c, err)
	}
	if c.Locals(stateKey) == nil {
		resp := c.Response()
		var n int
		if resp.IsBodyStream() {
			// A body produced in memory (respond.Buffered), handed over
			// in one write right after this: its length is set.
			n = resp.Header.ContentLength()
		} else {
			n = len(resp.Body())
		}
		s.metrics.Observe(routeLabel(c), resp.StatusCode(), int64(n), time.Since(c.Context().Time()))
	}
	return nil
}

func routeLabel(c *fiber.Ctx) string {
	if p := c.Route().Path; knownRoutes[p] {
		return p
	}
	return metrics.Unmatched
}

// writeError answers err as {"error":{"code","message"}}: an *respond.Error
// as it is, a fiber error by its status, anything else as a logged 500
// whose message reveals nothing.
func (s *Server) writeError(c *fiber.Ctx, err error) {
	var re *respond.Error
	var fe *fiber.Error
	switch {
	case errors.As(err, &re):
	case errors.As(err, &fe):
		re = fromFiber(c, fe)
	default:
		re = &respond.Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error; it has been logged", Err: err}
	}
	if re.Status >= 500 {
		s.log.Error("request failed", "method", c.Method(), "path", c.Path(), "status", re.Status, "code", re.Code, "err", re.Err)
	} else if re.Err != nil {
		s.log.Debug("request refused", "method", c.Method(), "path", c.Path(), "status", re.Status, "code", re.Code, "err", re.Err)
	}
	resp := c.Response()
	resp.ResetBody() // also closes a body stream set before the error
	for _, h := range []string{fiber.HeaderETag, fiber.HeaderLink, "X-Total-Count", fiber.HeaderContentEncoding, fiber.HeaderCacheControl} {
		resp.Header.Del(h)
	}
	if n := re.RetryAfterSeconds(); n > 0 {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(n))
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Status(re.Status)
	resp.SetBodyRaw(respond.AppendError(nil, re.Code, re.Message))
}

func fromFiber(c *fiber.Ctx, fe *fiber.Error) *respond.Error {
	e := &respond.Error{Status: fe.Code, Err: fe}
	switch fe.Code {
	case http.StatusNotFound:
		e.Code, e.Message = "not_found", fmt.Sprintf("no endpoint %s %s; the endpoints are listed in /openapi.json", c.Method(), truncate(c.Path(), 100))
	case http.StatusMethodNotAllowed:
		e.Code, e.Message = "method_not_allowed", fmt.Sprintf("%s is not served; use GET or HEAD", truncate(c.Method(), 20))
	case http.StatusRequestEntityTooLarge:
		e.Code, e.Message = "body_not_accepted", "this api takes no request body; send parameters in the query string"
	case http.StatusRequestHeaderFieldsTooLarge:
		e.Code, e.Message = "headers_too_large", "the request headers are too large; send fewer or shorter headers"
	case http.StatusRequestTimeout:
		e.Code, e.Message = "timeout", "the request was not received in time; send it again"
	case http.StatusBadRequest:
		e.Code, e.Message = "bad_request", "the request is malformed: "+fe.Message
	default:
		e.Code = strings.ToLower(strings.ReplaceAll(http.StatusText(fe.Code), " ", "_"))
		if e.Code == "" {
			e.Code = "error"
		}
		e.Message = fe.Message
	}
	return e
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func stack() string { return string(debug.Stack()) }

// noBody refuses requests that carry a body: no endpoint takes one.
func (s *Server) noBody(c *fiber.Ctx) error {
	if len(c.Request().Body()) > 0 {
		return &respond.Error{Status: http.StatusRequestEntityTooLarge, Code: "body_not_accepted",
			Message: "this api takes no request body; send parameters in the query string"}
	}
	return c.Next()
}

// authenticate accepts X-API-Key: <key> or Authorization: Bearer <key>,
// then takes a token from the key's rate limit.
func (s *Server) authenticate(c *fiber.Ctx) error {
	if s.keys == nil {
		return c.Next()
	}
	key, err := auth.FromHeaders(c.Get("X-API-Key"), c.Get(fiber.HeaderAuthorization))
	if err != nil {
		s.metrics.AuthFailures.Inc()
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="rowpipe"`)
		msg := "an API key is required: send it in the X-API-Key header or as Authorization: Bearer <key>"
		if !errors.Is(err, auth.ErrNoKey) || c.Get(fiber.HeaderAuthorization) != "" {
			msg = "the Authorization header must be \"Bearer <key>\" (or send the key in X-API-Key)"
		}
		return &respond.Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: msg}
	}
	id, ok := s.keys.Check(key)
	if !ok {
		s.metrics.AuthFailures.Inc()
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="rowpipe", error="invalid_token"`)
		return &respond.Error{Status: http.StatusUnauthorized, Code: "unauthorized",
			Message: "the API key is not valid; check the key sent in X-API-Key or Authorization: Bearer"}
	}
	if ok, wait := s.limiter.Allow(id, time.Now()); !ok {
		s.metrics.RateLimited.Inc()
		return &respond.Error{Status: http.StatusTooManyRequests, Code: "rate_limited", RetryAfter: wait,
			Message: fmt.Sprintf("this key's rate limit (%g requests per second, bursts of %d) is reached; retry after the Retry-After seconds", s.cfg.RateLimit, s.cfg.RateBurst)}
	}
	return c.Next()
}

// queryArgs looks parameters up in fasthttp's parsed query string; its
// Lookup method is the params.Query of a request (a method value that does
// not escape, so no allocation). One Peek answers both questions: a present
// empty value is a non-nil empty slice. The strings point into the request
// buffer: they are used only while the handler runs.
type queryArgs struct{ args *fasthttp.Args }

func query(c *fiber.Ctx) queryArgs { return queryArgs{c.Context().QueryArgs()} }

// Lookup is a params.Query.
func (q queryArgs) Lookup(name string) (string, bool) {
	v := q.args.Peek(name)
	if v == nil {
		return "", false
	}
	return unsafeString(v), true
}

// unsafeString views b as a string without copying (fiber's default, as
// c.Query does): valid while the request is.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func badParam(e *params.Error) error {
	code := "invalid_parameter"
	if e.Param == "dataset" {
		code = "invalid_dataset"
	}
	return &respond.Error{Status: http.StatusBadRequest, Code: code, Message: e.Message}
}

// GET /fetch-data
func (s *Server) fetchData(c *fiber.Ctx) error {
	q := query(c)
	name := s.cfg.Dataset
	if v, ok := q.Lookup("dataset"); ok {
		name = v
	}
	if e := params.Dataset(name); e != nil {
		return badParam(e)
	}
	p, e := params.ParsePage(q.Lookup, c.Get(fiber.HeaderAccept), s.cfg.MaxLimit)
	if e != nil {
		return badParam(e)
	}
	if p.MetadataOnly {
		return s.metadata(c, name, p.Generation)
	}
	return s.page(c, name, p, routeFetch)
}

// GET /datasets/:name
func (s *Server) getDataset(c *fiber.Ctx) error {
	name := c.Params("name")
	if e := params.Dataset(name); e != nil {
		return badParam(e)
	}
	var pin uint64
	if v, ok := query(c).Lookup("generation"); ok {
		g, e := params.ParseGeneration(v)
		if e != nil {
			return badParam(e)
		}
		pin = g
	}
	return s.metadata(c, name, pin)
}

// GET /datasets/:name/records
func (s *Server) getRecords(c *fiber.Ctx) error {
	name := c.Params("name")
	if e := params.Dataset(name); e != nil {
		return badParam(e)
	}
	p, e := params.ParsePage(query(c).Lookup, c.Get(fiber.HeaderAccept), s.cfg.MaxLimit)
	if e != nil {
		return badParam(e)
	}
	if p.MetadataOnly {
		return s.metadata(c, name, p.Generation)
	}
	return s.page(c, name, p, routeRecords)
}

// storeError turns a pagereader error into the answer that says what to do.
func (s *Server) storeError(err error, name string, pin uint64) error {
	e := &respond.Error{Err: err}
	switch {
	case errors.Is(err, pagereader.ErrDatasetNotFound):
		e.Status, e.Code = http.StatusNotFound, "dataset_not_found"
		e.Message = fmt.Sprintf("dataset %q not found; check the dataset name (GET /datasets lists them)", name)
	case errors.Is(err, pagereader.ErrNoGeneration):
		e.Status, e.Code, e.RetryAfter = http.StatusServiceUnavailable, "no_generation", 5*time.Second
		e.Message = fmt.Sprintf("dataset %q has no complete generation yet; retry once its first sync has finished", name)
	case errors.Is(err, pagereader.ErrGenerationGone):
		e.Status, e.Code = http.StatusGone, "generation_gone"
		e.Message = fmt.Sprintf("generation %d of dataset %q is no longer kept; drop the generation parameter to read the current generation, and page again", pin, name)
	case errors.Is(err, pagereader.ErrGenerationNotFound):
		e.Status, e.Code = http.StatusNotFound, "generation_not_found"
		e.Message = fmt.Sprintf("dataset %q has no complete generation %d; use a generation that metadata_only=true reports, or drop the generation parameter", name, pin)
	case errors.Is(err, pagereader.ErrUnavailable):
		e.Status, e.Code, e.RetryAfter = http.StatusServiceUnavailable, "unavailable", time.Second
		e.Message = fmt.Sprintf("dataset %q cannot be read right now; retry shortly", name)
		s.log.Warn("dataset unreadable", "dataset", name, "err", err)
	default:
		return err
	}
	return e
}

// metadataBody is the answer of metadata_only=true and /datasets/{name}.
type metadataBody struct {
	Dataset    string        `json:"dataset"`
	Generation uint64        `json:"generation"`
	State      string        `json:"state"`
	Mode       schema.Mode   `json:"mode"`
	Sync       string        `json:"sync"`
	Count      uint64        `json:"count"`
	Rejected   uint64        `json:"rejected"`
	Fields     []string      `json:"fields"`
	Source     schema.Source `json:"source"`
	CreatedAt  time.Time     `json:"created_at"`
	UpdatedAt  time.Time     `json:"updated_at"`
}

func metadataOf(h schema.Header) metadataBody {
	return metadataBody{
		Dataset: h.Dataset, Generation: h.Generation, State: h.State, Mode: h.Mode, Sync: h.Sync,
		Count: h.Count, Rejected: h.Rejected, Fields: h.Fields, Source: h.Source,
		CreatedAt: h.CreatedAt, UpdatedAt: h.UpdatedAt,
	}
}

// metadata answers from one small read of the generation's header.
func (s *Server) metadata(c *fiber.Ctx, name string, pin uint64) error {
	lease, err := s.store.Acquire(name, pin)
	if err != nil {
		return s.storeError(err, name, pin)
	}
	defer lease.Release()
	var tagBuf [etagLen]byte
	tag := appendETag(tagBuf[:0], name, &lease.Header, 0, 0, "metadata")
	hdr := &c.Response().Header
	hdr.SetBytesV(fiber.HeaderETag, tag)
	hdr.Set(fiber.HeaderCacheControl, "private, no-cache")
	if etagMatch(c.Get(fiber.HeaderIfNoneMatch), tag) {
		c.Status(http.StatusNotModified)
		return nil
	}
	// The body depends on the header alone: encoded once per header state.
	body := lease.Memo()
	if body == nil {
		b, err := json.Marshal(metadataOf(lease.Header))
		if err != nil {
			return err
		}
		lease.SetMemo(b)
		body = b
	}
	hdr.SetContentType(fiber.MIMEApplicationJSON)
	c.Response().SetBodyRaw(body) // immutable once memoized
	return nil
}

// GET /datasets: every folder of DATA_DIR that is a dataset with a
// complete generation, with its metadata, sorted by name.
func (s *Server) listDatasets(c *fiber.Ctx) error {
	entries, err := os.ReadDir(s.cfg.DataDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return &respond.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", RetryAfter: 5 * time.Second,
			Message: "the data directory cannot be read; see /readyz", Err: err}
	}
	list := make([]metadataBody, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || strings.HasPrefix(name, ".") || schema.ValidateDataset(name) != nil {
			continue
		}
		lease, err := s.store.Acquire(name, 0)
		if err != nil {
			if !errors.Is(err, pagereader.ErrDatasetNotFound) && !errors.Is(err, pagereader.ErrNoGeneration) {
				s.log.Warn("dataset left out of /datasets", "dataset", name, "err", err)
			}
			continue
		}
		list = append(list, metadataOf(lease.Header))
		lease.Release()
	}
	body, err := json.Marshal(struct {
		Datasets []metadataBody `json:"datasets"`
	}{list})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Set(fiber.HeaderCacheControl, "private, no-cache")
	return c.Send(body)
}

// page answers one page of records from one generation, from the bytes of
// the file: no record is decoded for JSON or NDJSON.
//
// A JSON or NDJSON page of up to respond.InlineMax bytes is read with one
// read into a pooled buffer before the handler returns (the generation is
// released at once) and leaves with its headers in one TCP segment. A
// larger one streams: an NDJSON page by sendfile, a JSON page of up to
// respond.BigMax produced whole and offered to the socket in one write, the
// rest (and CSV, and gzip) through one ChunkSize buffer.
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
	var start, end int64
	if returned > 0 {
		if start, end, err = lease.Range(p.Offset, returned); err != nil {
			lease.Release()
			return s.storeError(fmt.Errorf("%w: %s: %v", pagereader.ErrUnavailable, name, err), name, p.Generation)
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
	inline := !gz && p.Format != params.CSV && respond.Fits(head, start, end, tail)

	if c.Method() == fiber.MethodHead {
		if p.Format != params.CSV && !gz {
			hdr.SetContentLength(int(respond.Size(head, start, end, join, tail)))
		}
		lease.Release()
		return nil
	}

	if inline {
		body, err := respond.Buffer(head, lease.Data(), start, end, join, tail)
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
		if rc := rawConn(c); rc != nil {
			body.Cork(rc)
		}
		c.Response().SetBodyStream(body, body.Len())
		return nil
	}

	s.stream(c, lease, name, route, p.Format, gz, bytes.Clone(head), start, end, join, tail)
	return nil
}

// stream hands the page to fasthttp as a stream: the answer outlives the
// handler. Everything the stream needs is copied out of c (head, name), and
// the stream releases the lease and records the metrics itself when it
// ends. It is a function of its own because its closures capture the
// lease: in page they would move page's lease to the heap on every request.
func (s *Server) stream(c *fiber.Ctx, lease pagereader.Lease, name, route string, format params.Format, gz bool, head []byte, start, end int64, join bool, tail []byte) {
	hdr := &c.Response().Header
	var src io.WriterTo
	var body *respond.Body
	switch format {
	case params.JSON, params.NDJSON:
		body = respond.NewBody(head, lease.Data(), start, end, join, tail, nil)
		src = body
		if rc := rawConn(c); rc != nil && !gz {
			// The body may write to the socket itself once the headers
			// are out. (Not corked: holding the headers back to leave with
			// a large body costs more than the packet it saves.)
			body.SetDirect(rc, lease.DataFd())
		}
	case params.CSV:
		src = respond.CSV{Fields: lease.Header.Fields, Src: lease.Data(), Start: start, End: end}
	}
	c.Locals(stateKey, streamingMark)
	started := c.Context().Time()
	gen := lease.Header.Generation
	name = strings.Clone(name) // for the log line in finish, which runs after the handler
	finish := func(n int64, err error) {
		lease.Release()
		s.metrics.Observe(route, http.StatusOK, n, time.Since(started))
		if err != nil {
			s.metrics.StreamErrors.Inc()
			if respond.IsSourceError(err) {
				s.log.Warn("answer stopped early: the generation file could not be read", "dataset", name, "generation", gen, "err", err)
			} else {
				s.log.Debug("answer stopped early: the client went away or stalled", "dataset", name, "err", err)
			}
		}
	}

	switch {
	case gz:
		hdr.Set(fiber.HeaderContentEncoding, "gzip")
		c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
			n, err := respond.Gzip(w, src)
			if err == nil {
				err = w.Flush()
			}
			finish(n, err)
		})
	case format == params.CSV:
		c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
			n, err := src.WriteTo(w)
			if err == nil {
				err = w.Flush()
			}
			finish(n, err)
		})
	default:
		body.OnClose(finish)
		c.Response().SetBodyStream(body, int(body.Size()))
	}
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

// etagLen is the length of an identity ETag: 16 hex digits in quotes.
const etagLen = 18

// appendETag appends a strong validator of one answer: the dataset, the
// generation and its state (count, and the last stream sequence applied,
// which moves whenever the generation's bytes do), the page and the format.
// It is FNV-1a (64 bits) over the same bytes as before this function stopped
// allocating, so ETags clients hold stay valid.
func appendETag(dst []byte, name string, h *schema.Header, offset uint64, limit int, format string) []byte {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	sum := uint64(offset64)
	for i := 0; i < len(name); i++ {
		sum = (sum ^ uint64(name[i])) * prime64
	}
	sum *= prime64 // the 0 separator
	for _, v := range [5]uint64{h.Generation, h.Count, h.LastSeq, offset, uint64(limit)} {
		for j := range 8 {
			sum = (sum ^ (v >> (8 * j) & 0xff)) * prime64
		}
	}
	for i := 0; i < len(format); i++ {
		sum = (sum ^ uint64(format[i])) * prime64
	}
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := range 16 {
		dst = append(dst, hex[(sum>>(60-4*i))&0xf])
	}
	return append(dst, '"')
}

// appendGzipTag appends the ETag of the gzip-encoded answer whose identity
// ETag is tag: another representation, so another validator.
func appendGzipTag(dst, tag []byte) []byte {
	dst = append(dst, tag[:len(tag)-1]...)
	return append(dst, `-gz"`...)
}

// etagMatch reports whether an If-None-Match header matches tag (the
// identity validator) or its gzip variant; weak comparison, as RFC 9110
// asks for If-None-Match.
func etagMatch(header string, tag []byte) bool {
	if header == "" {
		return false
	}
	core := tag[1 : len(tag)-1]
	for part := range strings.SplitSeq(header, ",") {
		part = strings.TrimSpace(part)
		if part == "*" {
			return true
		}
		part = strings.TrimPrefix(part, "W/")
		if len(part) < 2 || part[0] != '"' || part[len(part)-1] != '"' {
			continue
		}
		v := part[1 : len(part)-1]
		if v == string(core) || (len(v) == len(core)+3 && v[:len(core)] == string(core) && v[len(core):] == "-gz") {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether Accept-Encoding lists gzip (or x-gzip) with
// a non-zero quality.
func acceptsGzip(header string) bool {
	if header == "" {
		return false
	}
	for part := range strings.SplitSeq(header, ",") {
		coding, prm, _ := strings.Cut(part, ";")
		coding = strings.TrimSpace(coding)
		if !strings.EqualFold(coding, "gzip") && !strings.EqualFold(coding, "x-gzip") {
			continue
		}
		prm = strings.TrimSpace(prm)
		if k, v, ok := strings.Cut(prm, "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
			if q, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && q == 0 {
				return false
			}
		}
		return true
	}
	return false
}

// GET /healthz: the process answers.
func (s *Server) healthz(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.SendString(`{"status":"ok"}`)
}

// GET /readyz: DATA_DIR is a readable directory (datasets or not), and the
// server is not shutting down. Otherwise 503 saying why.
func (s *Server) readyz(c *fiber.Ctx) error {
	notReady := func(msg string, err error) error {
		return &respond.Error{Status: http.StatusServiceUnavailable, Code: "not_ready", Message: msg, Err: err}
	}
	if s.stopping.Load() {
		return notReady("shutting down", nil)
	}
	dir := s.cfg.DataDir
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return notReady(fmt.Sprintf("DATA_DIR %q does not exist; create it or point DATA_DIR at the writer's data directory", dir), err)
	case err != nil:
		return notReady(fmt.Sprintf("DATA_DIR %q cannot be read: %v", dir, err), err)
	case !fi.IsDir():
		return notReady(fmt.Sprintf("DATA_DIR %q is not a directory", dir), nil)
	}
	f, err := os.Open(dir)
	if err == nil {
		_, err = f.Readdirnames(1)
		f.Close()
		if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	if err != nil {
		return notReady(fmt.Sprintf("DATA_DIR %q cannot be listed: %v", dir, err), err)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.SendString(`{"status":"ready"}`)
}

// GET /openapi.json
func (s *Server) openapiDoc(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(s.openapi)
}
