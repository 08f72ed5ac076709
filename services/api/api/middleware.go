package api

import (
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/rowpipe/rowpipe/services/api/internal/auth"
	"github.com/rowpipe/rowpipe/services/api/internal/metrics"
	"github.com/rowpipe/rowpipe/services/api/internal/respond"
)

// streamingKey marks, in a request's locals, an answer that is streamed:
// the stream records its metrics when it ends, not when the handler returns.
const streamingKey = "rowpipe.streaming"

// observe is the outermost middleware: it writes the JSON answer of any
// error and records each request's metrics (a streamed answer records its
// own when its last byte is handed over). The request's start is the time
// fasthttp read it (RequestCtx.Time).
func (s *Server) observe(c *fiber.Ctx, next func(*fiber.Ctx) error) error {
	err := s.recovering(c, next)
	if err != nil {
		s.writeError(c, err)
	}
	if c.Locals(streamingKey) == nil {
		resp := c.Response()
		n := resp.Header.ContentLength() // a body built whole, handed over as a stream (wholeBody)
		if !resp.IsBodyStream() {
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
	for _, h := range []string{fiber.HeaderETag, fiber.HeaderLink, "X-Total-Count", fiber.HeaderContentEncoding, fiber.HeaderContentDisposition, fiber.HeaderCacheControl} {
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
