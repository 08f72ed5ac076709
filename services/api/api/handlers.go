package api

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/api/internal/auth"
	"github.com/rowpipe/rowpipe/services/api/internal/metrics"
	"github.com/rowpipe/rowpipe/services/api/internal/pagereader"
	"github.com/rowpipe/rowpipe/services/api/internal/params"
	"github.com/rowpipe/rowpipe/services/api/internal/respond"
)

// reqState travels in the request's locals from observe to a handler that
// streams: the stream records its metrics when it ends, not when the
// handler returns.
type reqState struct {
	start     time.Time
	streaming bool
}

const stateKey = "rowpipe.req"

// observe is the outermost middleware: it writes the JSON answer of any
// error and records each request's metrics (a streamed answer records its
// own when its last byte is handed over).
func (s *Server) observe(c *fiber.Ctx) error {
	st := &reqState{start: time.Now()}
	c.Locals(stateKey, st)
	err := c.Next()
	if err != nil {
		s.writeError(c, err)
	}
	if !st.streaming {
		s.metrics.Observe(routeLabel(c), c.Response().StatusCode(), int64(len(c.Response().Body())), time.Since(st.start))
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

// query adapts fiber's query string to params.Query. The strings point
// into the request buffer: they are used only while the handler runs.
func query(c *fiber.Ctx) params.Query {
	args := c.Context().QueryArgs()
	return func(name string) (string, bool) {
		if !args.Has(name) {
			return "", false
		}
		return c.Query(name), true
	}
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
	if v, ok := q("dataset"); ok {
		name = v
	}
	if e := params.Dataset(name); e != nil {
		return badParam(e)
	}
	p, e := params.ParsePage(q, c.Get(fiber.HeaderAccept), s.cfg.MaxLimit)
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
	if v, ok := query(c)("generation"); ok {
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
	p, e := params.ParsePage(query(c), c.Get(fiber.HeaderAccept), s.cfg.MaxLimit)
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
	h := lease.Header
	lease.Release()
	tag := etag(name, h, 0, 0, "metadata")
	c.Set(fiber.HeaderETag, tag)
	c.Set(fiber.HeaderCacheControl, "private, no-cache")
	if etagMatch(c.Get(fiber.HeaderIfNoneMatch), tag) {
		c.Status(http.StatusNotModified)
		return nil
	}
	body, err := json.Marshal(metadataOf(h))
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(body)
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

// page answers one page of records from one generation, streaming the
// bytes of the file: no record is decoded for JSON or NDJSON.
func (s *Server) page(c *fiber.Ctx, name string, p params.Page, route string) error {
	lease, err := s.store.Acquire(name, p.Generation)
	if err != nil {
		return s.storeError(err, name, p.Generation)
	}
	h := lease.Header
	var returned uint64
	if p.Offset < h.Count {
		returned = min(uint64(p.Limit), h.Count-p.Offset)
	}
	next := p.Offset + returned
	hasNext := next < h.Count
	gz := acceptsGzip(c.Get(fiber.HeaderAcceptEncoding))

	tag := etag(name, h, p.Offset, p.Limit, string(p.Format))
	hdr := &c.Response().Header
	hdr.Set(fiber.HeaderVary, "Accept, Accept-Encoding")
	hdr.Set(fiber.HeaderCacheControl, "private, no-cache")
	hdr.Set("X-Total-Count", strconv.FormatUint(h.Count, 10))
	if gz {
		hdr.Set(fiber.HeaderETag, gzipTag(tag))
	} else {
		hdr.Set(fiber.HeaderETag, tag)
	}
	if hasNext {
		hdr.Set(fiber.HeaderLink, nextLink(route, name, p, h.Generation, next))
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
	hdr.Set(fiber.HeaderContentType, p.Format.ContentType())
	if p.Format == params.CSV {
		hdr.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="%s-%d-%d.csv"`, name, h.Generation, p.Offset))
	}

	var src io.WriterTo
	var body *respond.Body
	switch p.Format {
	case params.JSON:
		head := respond.AppendEnvelopeHead(make([]byte, 0, 192), respond.Envelope{
			Dataset: name, Generation: h.Generation, Count: h.Count, Offset: p.Offset, Limit: p.Limit,
			Returned: returned, NextOffset: next, HasNext: hasNext,
		})
		body = respond.NewBody(head, lease, start, end, true, []byte(respond.EnvelopeTail), nil)
		src = body
	case params.NDJSON:
		body = respond.NewBody(nil, lease, start, end, false, nil, nil)
		src = body
	case params.CSV:
		src = respond.CSV{Fields: h.Fields, Src: lease, Start: start, End: end}
	}

	if c.Method() == fiber.MethodHead {
		if body != nil && !gz {
			hdr.SetContentLength(int(body.Size()))
		}
		lease.Release()
		return nil
	}

	// From here on the answer outlives the handler: everything the stream
	// needs is copied out of c above (name went into head; the Link and
	// other headers were copied by fasthttp), and the stream releases the
	// lease and records the metrics itself when it ends.
	st, _ := c.Locals(stateKey).(*reqState)
	started := time.Now()
	if st != nil {
		st.streaming = true
		started = st.start
	}
	finish := func(n int64, err error) {
		lease.Release()
		s.metrics.Observe(route, http.StatusOK, n, time.Since(started))
		if err != nil {
			s.metrics.StreamErrors.Inc()
			if respond.IsSourceError(err) {
				s.log.Warn("answer stopped early: the generation file could not be read", "dataset", name, "generation", h.Generation, "err", err)
			} else {
				s.log.Debug("answer stopped early: the client went away or stalled", "dataset", name, "err", err)
			}
		}
	}
	name = strings.Clone(name) // for the log line in finish, which runs after the handler

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
	case p.Format == params.CSV:
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
	return nil
}

// nextLink is the Link header of the next page, pinned to the generation
// this page came from so that a client following the links reads one
// generation throughout (410 if it is pruned meanwhile).
func nextLink(route, name string, p params.Page, gen, next uint64) string {
	b := make([]byte, 0, 128)
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
	b = append(b, `>; rel="next"`...)
	return string(b)
}

// etag is a strong validator of one answer: the dataset, the generation
// and its state (count, and the last stream sequence applied, which moves
// whenever the generation's bytes do), the page and the format.
func etag(name string, h schema.Header, offset uint64, limit int, format string) string {
	f := fnv.New64a()
	var b [8 * 5]byte
	put := func(i int, v uint64) {
		for j := range 8 {
			b[8*i+j] = byte(v >> (8 * j))
		}
	}
	put(0, h.Generation)
	put(1, h.Count)
	put(2, h.LastSeq)
	put(3, offset)
	put(4, uint64(limit))
	f.Write([]byte(name))
	f.Write([]byte{0})
	f.Write(b[:])
	f.Write([]byte(format))
	var out [2 + 16]byte
	out[0] = '"'
	const hex = "0123456789abcdef"
	sum := f.Sum64()
	for i := range 16 {
		out[1+i] = hex[(sum>>(60-4*i))&0xf]
	}
	out[17] = '"'
	return string(out[:])
}

// gzipTag is the ETag of the gzip-encoded answer: another representation,
// so another validator.
func gzipTag(tag string) string { return tag[:len(tag)-1] + `-gz"` }

// etagMatch reports whether an If-None-Match header matches tag (the
// identity validator) or its gzip variant; weak comparison, as RFC 9110
// asks for If-None-Match.
func etagMatch(header, tag string) bool {
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
		if v == core || v == core+"-gz" {
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
