// Package metrics defines the api's Prometheus metrics: requests by route
// and status, their latency, the bytes served, and the state of the open
// generation files. Route labels are route patterns ("/datasets/:name"),
// never raw paths, so their number is fixed.
package metrics

import (
	"errors"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Namespace prefixes every metric of the api.
const Namespace = "rowpipe_api"

// Unmatched is the route label of requests no route matched.
const Unmatched = "unmatched"

// Metrics is the api's collectors. Its methods are safe for concurrent use.
type Metrics struct {
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	bytes        *prometheus.CounterVec
	RateLimited  prometheus.Counter
	AuthFailures prometheus.Counter
	// StreamErrors counts responses whose body stopped early (the client
	// went away, or a read failed).
	StreamErrors prometheus.Counter

	// routes holds a Route for each route label seen so far, copied on
	// write (under mu): Route reads it without a lock.
	mu     sync.Mutex
	routes atomic.Pointer[map[string]*Route]
}

// Route is the metrics of one route label. The label children of its
// usual statuses (200 and 304) are resolved once, on first use, and kept
// in fields of their own: observing one costs no label or map lookup.
// Other statuses are resolved on first use and kept in a map. A status
// gets its series when first observed, not before. Its methods are safe
// for concurrent use.
type Route struct {
	m               *Metrics
	label           string
	ok, notModified atomic.Pointer[observers]
	// others holds the children of other statuses, copied on write (under
	// m.mu).
	others atomic.Pointer[map[int]*observers]
}

type observers struct {
	requests prometheus.Counter
	duration prometheus.Observer
	bytes    prometheus.Counter
}

// Gauges are read when /metrics is scraped.
type Gauges struct {
	// OpenGenerations and Leases report pagereader.Store.Stats.
	OpenGenerations func() float64
	Leases          func() float64
	// TornHeaderRetries reports pagereader.Store.TornRetries.
	TornHeaderRetries func() float64
	// Keys is the number of API keys accepted now.
	Keys func() float64
}

// New registers the api's metrics with reg. A metric already registered by
// an identical collector (a second api in one process) is an error.
func New(reg prometheus.Registerer, g Gauges) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "requests_total",
			Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "request_duration_seconds",
			Help:    "Time from a request's arrival to its answer handed to the connection (a page of up to 32 KiB: read whole and ready to be written in one go; a streamed one: its last byte), by route pattern and status code.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "response_bytes_total",
			Help: "Response body bytes served (after compression), by route pattern.",
		}, []string{"route"}),
		RateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "rate_limited_total",
			Help: "Requests refused with 429 because their key's rate limit was reached.",
		}),
		AuthFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "auth_failures_total",
			Help: "Requests refused with 401: no key or a wrong one.",
		}),
		StreamErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "stream_errors_total",
			Help: "Responses whose body stopped before its end (client gone, read error).",
		}),
	}
	m.routes.Store(&map[string]*Route{})
	cs := []prometheus.Collector{m.requests, m.duration, m.bytes, m.RateLimited, m.AuthFailures, m.StreamErrors}
	gauge := func(name, help string, f func() float64) {
		if f != nil {
			cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, f))
		}
	}
	gauge("open_generations", "Generations whose data and index files are open.", g.OpenGenerations)
	gauge("leases", "Responses reading a generation now.", g.Leases)
	gauge("api_keys", "API keys accepted now.", g.Keys)
	if g.TornHeaderRetries != nil {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: Namespace, Name: "torn_header_retries_total",
			Help: "Metadata header reads caught mid-rewrite and read again.",
		}, g.TornHeaderRetries))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, errors.Join(errors.New("register api metrics"), err)
		}
	}
	return m, nil
}

// Route returns the metrics of route label route, made on first use. A
// caller that knows its route ahead holds on to it; the lookup is a map
// read without a lock.
func (m *Metrics) Route(route string) *Route {
	if r := (*m.routes.Load())[route]; r != nil {
		return r
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.routes.Load()
	if r := old[route]; r != nil {
		return r
	}
	r := &Route{m: m, label: route}
	r.others.Store(&map[int]*observers{})
	m.routes.Store(with(old, route, r))
	return r
}

// Observe records one answered request of route. It takes no lock and
// allocates nothing once its route and status have been seen.
func (m *Metrics) Observe(route string, status int, bytes int64, d time.Duration) {
	m.Route(route).Observe(status, bytes, d)
}

// Observe records one answered request: its status, the body bytes sent
// and how long it took.
func (r *Route) Observe(status int, bytes int64, d time.Duration) {
	var o *observers
	switch status {
	case 200:
		o = r.usual(&r.ok, status)
	case 304:
		o = r.usual(&r.notModified, status)
	default:
		o = r.other(status)
	}
	o.requests.Inc()
	o.duration.Observe(d.Seconds())
	if bytes > 0 {
		o.bytes.Add(float64(bytes))
	}
}

// usual returns the children kept in p, resolving them on first use.
func (r *Route) usual(p *atomic.Pointer[observers], status int) *observers {
	if o := p.Load(); o != nil {
		return o
	}
	o := r.m.resolve(r.label, status) // racing resolvers get the same children
	p.Store(o)
	return o
}

// other returns the children of a status other than 200 and 304.
func (r *Route) other(status int) *observers {
	if o, ok := (*r.others.Load())[status]; ok {
		return o
	}
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	old := *r.others.Load()
	if o, ok := old[status]; ok {
		return o
	}
	o := r.m.resolve(r.label, status)
	r.others.Store(with(old, status, o))
	return o
}

// with returns a copy of old with k set to v: the maps read without a
// lock are replaced, never written.
func with[K comparable, V any](old map[K]V, k K, v V) *map[K]V {
	next := make(map[K]V, len(old)+1)
	maps.Copy(next, old)
	next[k] = v
	return &next
}

// resolve looks up the label children of route and status.
func (m *Metrics) resolve(route string, status int) *observers {
	code := strconv.Itoa(status)
	return &observers{
		requests: m.requests.WithLabelValues(route, code),
		duration: m.duration.WithLabelValues(route, code),
		bytes:    m.bytes.WithLabelValues(route),
	}
}
