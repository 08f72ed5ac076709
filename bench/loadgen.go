package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// loadGen drives one HTTP server over a fixed number of keep-alive
// connections on loopback: every connection has one worker sending the
// same GET back to back (closed loop), each request timed. It runs in the
// benchmark process, so it shares the machine's cores with the server
// under test; the ceiling is measured the same way, so the ratio is fair.
type loadGen struct {
	conns int
	wrk   bool // load with wrk (wrkPhase) instead of the in-process client
}

// loadResult is one measured case.
type loadResult struct {
	requests int
	errors   int
	elapsed  time.Duration
	bytes    int64
	p50, p99 time.Duration
	p999     time.Duration
	max      time.Duration
	firstErr string

	serverCPU time.Duration // of the server process, while it was loaded
	clientCPU time.Duration // of this process (the load generator)
}

// cpuPerRequest is CPU time per successful request.
func cpuPerRequest(d time.Duration, requests int) time.Duration {
	if requests == 0 {
		return 0
	}
	return d / time.Duration(requests)
}

func (r loadResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// endpoint is one thing to load: a GET of path on addr with headers,
// answering 200 with wantLen bytes (wantLen < 0: any length).
type endpoint struct {
	addr    string
	path    string
	headers map[string]string
	wantLen int
	// serverCPU, when set, reads the CPU time of the process serving
	// addr, so that the CPU per request of the server can be reported.
	serverCPU func() time.Duration
}

func (g loadGen) client(addr string) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:                     addr,
		MaxConns:                 g.conns,
		MaxIdleConnDuration:      time.Minute,
		ReadTimeout:              10 * time.Second,
		WriteTimeout:             10 * time.Second,
		MaxResponseBodySize:      256 << 20,
		DisablePathNormalizing:   true,
		NoDefaultUserAgentHeader: true,
		MaxConnWaitTimeout:       10 * time.Second,
	}
}

// interleave loads each endpoint for d in all, in slices taken round
// robin (e0, e1, ..., e0, e1, ...) after an unrecorded warm-up of each, so
// that whatever else the machine does during a case weighs on all of them
// alike. Endpoints on the same address share one pool of connections.
func (g loadGen) interleave(ctx context.Context, eps []endpoint, warmup, d time.Duration, nslices int) ([]loadResult, error) {
	clients := map[string]*fasthttp.HostClient{}
	for _, e := range eps {
		if clients[e.addr] == nil {
			clients[e.addr] = g.client(e.addr)
			defer clients[e.addr].CloseIdleConnections()
		}
	}
	if warmup > 0 {
		for _, e := range eps {
			if _, _, err := g.load(ctx, clients[e.addr], e, warmup, false); err != nil {
				return nil, err
			}
		}
	}
	nslices = max(nslices, 1)
	slice := d / time.Duration(nslices)
	stats := make([][]workerStats, len(eps))
	elapsed := make([]time.Duration, len(eps))
	serverCPU := make([]time.Duration, len(eps))
	clientCPU := make([]time.Duration, len(eps))
	for range nslices {
		for i, e := range eps {
			var s0 time.Duration
			if e.serverCPU != nil {
				s0 = e.serverCPU()
			}
			c0 := selfCPU()
			st, el, err := g.load(ctx, clients[e.addr], e, slice, true)
			if err != nil {
				return nil, err
			}
			clientCPU[i] += selfCPU() - c0
			if e.serverCPU != nil {
				serverCPU[i] += e.serverCPU() - s0
			}
			stats[i], elapsed[i] = append(stats[i], st...), elapsed[i]+el
		}
	}
	res := make([]loadResult, len(eps))
	for i := range eps {
		res[i] = summarize(stats[i], elapsed[i])
		res[i].serverCPU, res[i].clientCPU = serverCPU[i], clientCPU[i]
	}
	return res, nil
}

// load is one burst of d against e, by wrk or by the in-process client.
func (g loadGen) load(ctx context.Context, hc *fasthttp.HostClient, e endpoint, d time.Duration, record bool) ([]workerStats, time.Duration, error) {
	if g.wrk {
		return g.wrkPhase(ctx, e, d)
	}
	return g.phase(ctx, hc, e, d, record)
}

type workerStats struct {
	lat      []time.Duration
	n, errs  int
	bytes    int64
	firstErr string
}

// phase runs one closed-loop burst of d against e over the connections
// of hc.
func (g loadGen) phase(ctx context.Context, hc *fasthttp.HostClient, e endpoint, d time.Duration, record bool) ([]workerStats, time.Duration, error) {
	stats := make([]workerStats, g.conns)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for i := range stats {
		wg.Add(1)
		go func(st *workerStats) {
			defer wg.Done()
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + e.addr + e.path)
			req.Header.SetMethod(fasthttp.MethodGet)
			for k, v := range e.headers {
				req.Header.Set(k, v)
			}
			if record {
				st.lat = make([]time.Duration, 0, 4096)
			}
			for {
				t0 := time.Now()
				if !t0.Before(deadline) || ctx.Err() != nil {
					return
				}
				err := hc.Do(req, resp)
				lat := time.Since(t0)
				st.n++
				switch {
				case err != nil:
					st.errs++
					if st.firstErr == "" {
						st.firstErr = err.Error()
					}
					continue
				case resp.StatusCode() != fasthttp.StatusOK:
					st.errs++
					if st.firstErr == "" {
						st.firstErr = fmt.Sprintf("status %d: %.200s", resp.StatusCode(), resp.Body())
					}
					continue
				case e.wantLen >= 0 && len(resp.Body()) != e.wantLen:
					st.errs++
					if st.firstErr == "" {
						st.firstErr = fmt.Sprintf("body of %d bytes, want %d", len(resp.Body()), e.wantLen)
					}
					continue
				}
				st.bytes += int64(len(resp.Body()))
				if record {
					st.lat = append(st.lat, lat)
				}
			}
		}(&stats[i])
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	return stats, elapsed, nil
}

// summarize merges the workers' figures of one or more phases.
func summarize(stats []workerStats, elapsed time.Duration) loadResult {
	res := loadResult{elapsed: elapsed}
	var all []time.Duration
	for _, st := range stats {
		res.requests += st.n - st.errs
		res.errors += st.errs
		res.bytes += st.bytes
		if res.firstErr == "" {
			res.firstErr = st.firstErr
		}
		all = append(all, st.lat...)
	}
	if len(all) > 0 {
		slices.Sort(all)
		res.p50 = quantile(all, 0.50)
		res.p99 = quantile(all, 0.99)
		res.p999 = quantile(all, 0.999)
		res.max = all[len(all)-1]
	}
	return res
}

// quantile is the nearest-rank q-quantile of sorted.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
