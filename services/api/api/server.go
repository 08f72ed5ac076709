// Package api is rowpipe's HTTP front door, built on fiber: it serves the
// generation files the writer keeps under DATA_DIR as pages of JSON, NDJSON
// or CSV, as the contract's "HTTP API" section says.
//
// main.go and services/stack wire it the same way:
//
//	srv, err := api.New(cfg, api.WithLogger(log), api.WithRegisterer(reg), api.WithGatherer(reg))
//	...
//	err = srv.Run(ctx) // serves until ctx ends, then shuts down gracefully
//
// The api only reads DATA_DIR. It picks up a new generation, or records
// appended to the current one, within a millisecond (store.Fresh), and needs
// no restart.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/gofiber/fiber/v2/middleware/cors"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rowpipe/rowpipe/services/api/internal/auth"
	"github.com/rowpipe/rowpipe/services/api/internal/console"
	"github.com/rowpipe/rowpipe/services/api/internal/metrics"
	"github.com/rowpipe/rowpipe/services/api/internal/openapi"
	"github.com/rowpipe/rowpipe/services/api/internal/params"
	"github.com/rowpipe/rowpipe/services/api/internal/ratelimit"
	"github.com/rowpipe/rowpipe/services/api/internal/store"
)

// ErrNoKeys is returned by New when auth is on and no key is configured.
var ErrNoKeys = errors.New("no API key configured: set API_KEYS (comma-separated) or API_KEYS_FILE (one key a line), or API_AUTH=off to serve without keys")

// Option configures New.
type Option func(*options)

type options struct {
	log      *slog.Logger
	reg      prometheus.Registerer
	gatherer prometheus.Gatherer
}

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithRegisterer registers the api's metrics with reg instead of a registry
// of its own. The api then adds no Go or process collectors: the owner of
// reg decides those.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *options) { o.reg = reg }
}

// WithGatherer makes /metrics serve g, so one endpoint shows the metrics of
// every component registered there (services/stack passes its registry).
// Without it /metrics serves the registerer when it is also a Gatherer
// (a *prometheus.Registry), else the api's own registry.
func WithGatherer(g prometheus.Gatherer) Option { return func(o *options) { o.gatherer = g } }

// Server is the api. Create it with New, serve with Run.
type Server struct {
	cfg     Config
	log     *slog.Logger
	app     *fiber.App
	store   *store.Store
	keys    *auth.Keys // nil when auth is off
	limiter *ratelimit.Limiter
	metrics *metrics.Metrics
	conns   *addrConns
	gzip    slots // answers being gzipped (MaxGzip)
	// routes are the metrics of each route pattern and of metrics.Unmatched,
	// resolved once (see routeMetrics).
	routes   map[string]*metrics.Route
	gatherer prometheus.Gatherer
	openapi  []byte
	console  *console.Console

	lnMu      sync.Mutex
	ln        net.Listener
	metricsLn net.Listener // on MetricsAddr, when set
	stopping  atomic.Bool
}

// New checks cfg, loads the keys and builds the server; it does not listen
// yet. With auth on (the default) it refuses to build without a key
// (ErrNoKeys); API_KEYS_FILE must be readable.
func New(cfg Config, opts ...Option) (*Server, error) {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("api config: %w", err)
	}
	if err := params.Dataset(cfg.Dataset); err != nil {
		return nil, fmt.Errorf("api config: DATASET: %s", err.Message)
	}
	s := &Server{cfg: cfg, log: o.log.With("component", "api"), conns: &addrConns{max: cfg.MaxConnsPerAddr, open: make(map[netip.Addr]int)},
		gzip: make(slots, cfg.MaxGzip)}
	s.store = store.New(cfg.DataDir, s.log)

	if cfg.Auth == AuthOn {
		keys, err := auth.New(cfg.Keys, cfg.KeysFile, s.log)
		if err != nil {
			return nil, fmt.Errorf("api: %w", err)
		}
		if keys.Len() == 0 {
			return nil, fmt.Errorf("api: %w", ErrNoKeys)
		}
		s.keys = keys
		s.limiter = ratelimit.New(cfg.RateLimit, cfg.RateBurst, 4096)
	} else {
		s.log.Warn("API_AUTH=off: every data endpoint is open to anyone who can reach " + cfg.Addr)
	}

	reg := o.reg
	if reg == nil {
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg = r
	}
	s.gatherer = o.gatherer
	if s.gatherer == nil {
		if g, ok := reg.(prometheus.Gatherer); ok {
			s.gatherer = g
		} else {
			s.gatherer = prometheus.DefaultGatherer
		}
	}
	gauges := metrics.Gauges{
		OpenGenerations:   func() float64 { n, _ := s.store.Stats(); return float64(n) },
		Leases:            func() float64 { _, n := s.store.Stats(); return float64(n) },
		TornHeaderRetries: func() float64 { return float64(s.store.TornRetries()) },
	}
	if s.keys != nil {
		gauges.Keys = func() float64 { return float64(s.keys.Len()) }
	}
	m, err := metrics.New(reg, gauges)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s.metrics = m
	s.routes = make(map[string]*metrics.Route, len(knownRoutes)+1)
	for _, r := range knownRoutes {
		s.routes[r] = m.Route(r)
	}
	s.routes[metrics.Unmatched] = m.Route(metrics.Unmatched)

	if s.openapi, err = openapi.Document(openapi.Options{
		MaxLimit: cfg.MaxLimit, DefaultLimit: min(params.DefaultLimit, cfg.MaxLimit),
		DefaultDataset: cfg.Dataset, AuthOff: s.keys == nil, ScanLimit: cfg.ScanLimit,
	}); err != nil {
		return nil, fmt.Errorf("api: openapi document: %w", err)
	}
	if s.console, err = console.New(); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s.app = s.newApp()
	return s, nil
}

// Route patterns; also the metrics' route labels.
const (
	routeFetch    = "/fetch-data"
	routeDatasets = "/datasets"
	routeDataset  = "/datasets/:name"
	routeRecords  = "/datasets/:name/records"
	routeRejects  = "/datasets/:name/rejects"
	routeHealthz  = "/healthz"
	routeReadyz   = "/readyz"
	routeMetrics  = "/metrics"
	routeOpenAPI  = "/openapi.json"
	routeConsole  = console.PageRoute
	routeFile     = console.FileRoute
)

var knownRoutes = []string{
	routeFetch, routeDatasets, routeDataset, routeRecords, routeRejects,
	routeHealthz, routeReadyz, routeMetrics, routeOpenAPI, routeConsole, routeFile,
}

// requestBodyLimit is the largest request body fasthttp reads before
// refusing with 413; noBody refuses any non-empty one.
const requestBodyLimit = 1

func (s *Server) newApp() *fiber.App {
	app := fiber.New(fiber.Config{
		AppName:               "rowpipe-api",
		DisableStartupMessage: true,
		ErrorHandler: func(c *fiber.Ctx, err error) error {
			s.writeError(c, err)
			return nil
		},
		BodyLimit:       requestBodyLimit,
		Concurrency:     s.cfg.MaxConns,
		ReadTimeout:     s.cfg.ReadTimeout,
		WriteTimeout:    s.cfg.WriteTimeout,
		IdleTimeout:     s.cfg.IdleTimeout,
		ReadBufferSize:  8192,
		WriteBufferSize: writeBuffer, // see oneWrite
		CaseSensitive:   true,
		Network:         "tcp",
	})
	// Outermost, in one middleware (each one more costs a route match and
	// a call on every request): metrics and error answers, panics turned
	// into errors (logged with their stack; the client only sees a JSON
	// 500), and the refusal of request bodies (after CORS when it is on).
	if len(s.cfg.CORSOrigins) > 0 {
		app.Use(s.observeRecover)
		app.Use(cors.New(cors.Config{
			AllowOrigins:  strings.Join(s.cfg.CORSOrigins, ","),
			AllowMethods:  "GET,HEAD,OPTIONS",
			AllowHeaders:  "X-API-Key, Authorization, If-None-Match, Accept, Accept-Encoding",
			ExposeHeaders: "ETag, Link, X-Total-Count, Retry-After",
			MaxAge:        600,
		}))
		app.Use(s.noBody)
	} else {
		app.Use(s.observeRecoverNoBody)
	}

	app.Server().ConnState = s.conns.state
	app.Get(routeFetch, s.authenticate, s.fetchData)
	app.Get(routeDatasets, s.authenticate, s.listDatasets)
	app.Get(routeDataset, s.authenticate, s.getDataset)
	app.Get(routeRecords, s.authenticate, s.getRecords)
	app.Get(routeRejects, s.authenticate, s.getRejects)
	app.Get(routeHealthz, s.healthz)
	app.Get(routeReadyz, s.readyz)
	if s.cfg.MetricsAddr == "" {
		app.Get(routeMetrics, adaptor.HTTPHandler(s.metricsHandler()))
	}
	app.Get(routeOpenAPI, s.openapiDoc)
	s.console.Register(app)
	return app
}

// App is the fiber app, for app.Test and for walking app.GetRoutes().
func (s *Server) App() *fiber.App { return s.app }

// Listen binds Config.Addr (and MetricsAddr) now and returns the address;
// Run serves on it. Calling it is optional: Run listens if nothing did. It
// lets a caller learn the port of ":0".
func (s *Server) Listen() (net.Addr, error) {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.ln == nil {
		ln, err := net.Listen("tcp", s.cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("api: listen on API_ADDR %s: %w", s.cfg.Addr, err)
		}
		s.ln = ln
	}
	if s.cfg.MetricsAddr != "" && s.metricsLn == nil {
		ln, err := net.Listen("tcp", s.cfg.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("api: listen on METRICS_ADDR %s: %w", s.cfg.MetricsAddr, err)
		}
		s.metricsLn = ln
	}
	return s.ln.Addr(), nil
}

// MetricsAddr is where /metrics is served when Config.MetricsAddr is set,
// nil before Listen or Run (and without it).
func (s *Server) MetricsAddr() net.Addr {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.metricsLn == nil {
		return nil
	}
	return s.metricsLn.Addr()
}

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{})
}

// serveMetrics serves GET /metrics on ln until it is closed.
func (s *Server) serveMetrics(ln net.Listener) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET "+routeMetrics, s.metricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return srv
}

// Addr is the address the server listens on, nil before Listen or Run.
func (s *Server) Addr() net.Addr {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Run serves until ctx ends, then stops accepting connections, marks
// /readyz not ready, and lets running answers finish for up to
// ShutdownTimeout. It returns nil after a clean shutdown, an error if it
// could not listen or serve, or if answers were still running at the
// deadline. It re-reads API_KEYS_FILE every KeysReload while it runs.
func (s *Server) Run(ctx context.Context) error {
	addr, err := s.Listen()
	if err != nil {
		return err
	}
	s.lnMu.Lock()
	ln, metricsLn := s.ln, s.metricsLn
	s.lnMu.Unlock()
	if metricsLn != nil {
		defer s.serveMetrics(metricsLn).Close()
	}
	bg, cancel := context.WithCancel(context.Background())
	defer cancel()
	if s.keys != nil && s.cfg.KeysFile != "" {
		go every(bg, s.cfg.KeysReload, s.keys.Refresh)
	}
	go every(bg, store.SweepEvery, s.store.Sweep)
	s.log.Info("api listening", "addr", addr.String(), "data_dir", s.cfg.DataDir, "dataset", s.cfg.Dataset,
		"auth", s.cfg.Auth, "keys", s.keyCount(), "max_limit", s.cfg.MaxLimit)

	served := make(chan error, 1)
	go func() { served <- s.app.Listener(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	s.stopping.Store(true)
	s.log.Info("api shutting down", "grace", s.cfg.ShutdownTimeout.String())
	sctx, stop := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer stop()
	err = s.app.ShutdownWithContext(sctx)
	// fasthttp closes only the listeners its Serve has registered: when ctx
	// ends before the serving goroutine got that far, Serve would go on
	// accepting forever. Closing ln ourselves makes it return either way.
	_ = ln.Close()
	<-served
	s.store.Close()
	if err != nil {
		_, leases := s.store.Stats()
		return fmt.Errorf("api: shutdown: %d answers still running after %s: %w", leases, s.cfg.ShutdownTimeout, err)
	}
	s.log.Info("api stopped")
	return nil
}

// every runs f every interval until ctx ends.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

func (s *Server) keyCount() int {
	if s.keys == nil {
		return 0
	}
	return s.keys.Len()
}
