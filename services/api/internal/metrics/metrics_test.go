package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Each status of a route counts in its own series, which appears when the
// status is first observed.
func TestRouteObservesEachStatusInItsSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, Gauges{})
	if err != nil {
		t.Fatal(err)
	}
	r := m.Route("/fetch-data")
	if m.Route("/fetch-data") != r {
		t.Fatal("a second Route of one label is another value")
	}
	r.Observe(200, 100, time.Millisecond)
	r.Observe(200, 50, time.Millisecond)
	r.Observe(304, 0, time.Millisecond)
	m.Route("/fetch-data").Observe(404, 10, time.Millisecond)
	want := `
# HELP rowpipe_api_requests_total HTTP requests answered, by route pattern and status code.
# TYPE rowpipe_api_requests_total counter
rowpipe_api_requests_total{code="200",route="/fetch-data"} 2
rowpipe_api_requests_total{code="304",route="/fetch-data"} 1
rowpipe_api_requests_total{code="404",route="/fetch-data"} 1
# HELP rowpipe_api_response_bytes_total Response body bytes served (after compression), by route pattern.
# TYPE rowpipe_api_response_bytes_total counter
rowpipe_api_response_bytes_total{route="/fetch-data"} 160
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "rowpipe_api_requests_total", "rowpipe_api_response_bytes_total"); err != nil {
		t.Fatal(err)
	}
}

// Observing a status already seen allocates nothing.
func TestObserveDoesNotAllocate(t *testing.T) {
	m, err := New(prometheus.NewRegistry(), Gauges{})
	if err != nil {
		t.Fatal(err)
	}
	r := m.Route("/fetch-data")
	r.Observe(200, 1, time.Millisecond)
	r.Observe(503, 1, time.Millisecond)
	if n := testing.AllocsPerRun(100, func() {
		r.Observe(200, 1, time.Millisecond)
		r.Observe(503, 1, time.Millisecond)
	}); n != 0 {
		t.Fatalf("%v allocations per Observe", n)
	}
}
