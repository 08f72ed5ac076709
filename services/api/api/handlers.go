package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
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
func (s *Server) observe(c *fiber.Ctx, next func(*fiber.Ctx) error) error {
	err := s.recovering(c, next)
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
		route := c.Route().Path
		if route == routeConsole && c.Path() != routeConsole {
			// No route answered: the chain ended in the middleware, whose
			// path "/" is also the console's route.
			route = metrics.Unmatched
		}
		s.routeMetrics(route).Observe(resp.StatusCode(), int64(n), time.Since(c.Context().Time()))
	}
	return nil
}

// observeRecover is observe around the rest of the chain.
func (s *Server) observeRecover(c *fiber.Ctx) error { return s.observe(c, (*fiber.Ctx).Next) }

// observeRecoverNoBody is observe around noBody and the rest of the chain.
func (s *Server) observeRecoverNoBody(c *fiber.Ctx) error { return s.observe(c, s.noBody) }

// recovering runs next(c) and turns a panic in it into an error, logged
// with its stack (as fiber's recover middleware does).
func (s *Server) recovering(c *fiber.Ctx, next func(*fiber.Ctx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in handler", "path", c.Path(), "panic", fmt.Sprint(r), "stack", stack())
			var ok bool
			if err, ok = r.(error); !ok {
				err = fmt.Errorf("%v", r)
			}
		}
	}()
	return next(c)
}

// routeMetrics is the metrics of a route pattern; a path no route matched
// (fiber then reports the path itself) counts as metrics.Unmatched, so the
// number of label values stays fixed.
func (s *Server) routeMetrics(pattern string) *metrics.Route {
	if r := s.routes[pattern]; r != nil {
		return r
	}
	return s.routes[metrics.Unmatched]
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
	// The request's arrival time (fasthttp read the clock for it already).
	if ok, wait := s.limiter.Allow(id, c.Context().Time()); !ok {
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
	list := make([]datasetItem, 0, len(entries))
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
		list = append(list, s.datasetItem(name, metadataOf(lease.Header)))
		lease.Release()
	}
	body, err := json.Marshal(struct {
		Datasets []datasetItem `json:"datasets"`
	}{list})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Set(fiber.HeaderCacheControl, "private, no-cache")
	return c.Send(body)
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
