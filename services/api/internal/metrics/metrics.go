// Package metrics defines the api's Prometheus metrics: requests by route
// and status, their latency, the bytes served, and the state of the open
// generation files. Route labels are route patterns ("/datasets/:name"),
// never raw paths, so their number is fixed.
package metrics

import (
	"errors"
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

	mu     sync.Mutex
	routes map[string]*Route
}

// Route is the metrics of one route label. The series of a status are
// looked up once, when the status is first observed, and kept: observing
// costs no label lookup. Its methods are safe for concurrent use.
type Route struct {
	m     *Metrics
	label string
	bytes prometheus.Counter
	codes [500]atomic.Pointer[observers] // statuses 100..599
}

type observers struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// Gauges are read when /metrics is scraped.
type Gauges struct {
	// OpenGenerations and Leases report store.Store.Stats.
	OpenGenerations func() float64
	Leases          func() float64
	// TornHeaderRetries reports store.Store.TornRetries.
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
			Help:    "Time from a request's arrival to its answer handed to the connection (a page built whole: ready to be written; a streamed one: its last byte), by route pattern and status code.",
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
	m.routes = make(map[string]*Route)
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

// Route returns the metrics of route label route, made on first use; a
// caller that knows its routes ahead holds on to them.
func (m *Metrics) Route(route string) *Route {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.routes[route]
	if r == nil {
		r = &Route{m: m, label: route, bytes: m.bytes.WithLabelValues(route)}
		m.routes[route] = r
	}
	return r
}

// Observe records one answered request: its status, the body bytes sent
// and how long it took. It allocates nothing once the status was seen.
func (r *Route) Observe(status int, bytes int64, d time.Duration) {
	i := min(max(status, 100), 599) - 100
	o := r.codes[i].Load()
	if o == nil {
		code := strconv.Itoa(status)
		r.codes[i].CompareAndSwap(nil, &observers{ // racing callers resolve the same series
			requests: r.m.requests.WithLabelValues(r.label, code),
			duration: r.m.duration.WithLabelValues(r.label, code),
		})
		o = r.codes[i].Load()
	}
	o.requests.Inc()
	o.duration.Observe(d.Seconds())
	if bytes > 0 {
		r.bytes.Add(float64(bytes))
	}
}
