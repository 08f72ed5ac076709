package main

import (
	"slices"
	"testing"
	"time"
)

func TestParseRows(t *testing.T) {
	got, err := parseRows("1M, 10K,10000,1_000")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{1000, 10000, 1000000}; !slices.Equal(got, want) {
		t.Errorf("parseRows = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "abc", "10", "-5"} {
		if _, err := parseRows(bad); err == nil {
			t.Errorf("parseRows(%q) accepted", bad)
		}
	}
}

func TestParseOnly(t *testing.T) {
	if _, err := parseOnly("ingest,bogus"); err == nil {
		t.Error("parseOnly accepted an unknown section")
	}
	only, err := parseOnly("")
	if err != nil || len(only) != len(sections) {
		t.Errorf("parseOnly(\"\") = %v, %v; want every section", only, err)
	}
}

func TestQuantile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	if got := quantile(d, 0.5); got != 50 {
		t.Errorf("p50 = %d, want 50", got)
	}
	if got := quantile(d, 0.99); got != 99 {
		t.Errorf("p99 = %d, want 99", got)
	}
	if got := quantile(d[:1], 0.99); got != 1 {
		t.Errorf("p99 of one = %d, want 1", got)
	}
}

func TestCheckPageRefusesShortPages(t *testing.T) {
	c := &apiCase{limit: 2, format: "json"}
	if err := checkPage(c, []byte(`{"returned":2,"data":[{},{}]}`)); err != nil {
		t.Errorf("full page refused: %v", err)
	}
	if err := checkPage(c, []byte(`{"returned":1,"data":[{}]}`)); err == nil {
		t.Error("short page accepted")
	}
	nd := &apiCase{limit: 2, format: "ndjson"}
	if err := checkPage(nd, []byte("{}\n")); err == nil {
		t.Error("short NDJSON page accepted")
	}
	meta := &apiCase{format: "json"}
	if err := checkPage(meta, []byte(`{"error":{"code":"x"}}`)); err == nil {
		t.Error("error answer accepted as metadata")
	}
}

func TestNum(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4321: "-4,321"} {
		if got := num(in); got != want {
			t.Errorf("num(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 1s test @ http://127.0.0.1:5301/fetch-data?dataset=bench
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.48ms   12.37ms  73.42ms   89.77%
    Req/Sec     5.44k     5.11k   15.10k    80.00%
  Latency Distribution
     50%  143.00us
     75%    3.32ms
     90%   18.43ms
     99%   59.91ms
  11051 requests in 1.09s, 3.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 40
Requests/sec:  10157.48
Transfer/sec:      2.87MB
`
	st, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if st.n != 11051 || st.errs != 43 {
		t.Fatalf("%d requests, %d errors; want 11051, 43", st.n, st.errs)
	}
	res := summarize([]workerStats{st}, time.Second)
	if res.requests != 11051-43 || res.p50 != 143*time.Microsecond || res.p99 != 59910*time.Microsecond {
		t.Fatalf("%+v", res)
	}
	if _, err := parseWrk("wrk: connection refused"); err == nil {
		t.Fatal("output without a request count parsed")
	}
}
