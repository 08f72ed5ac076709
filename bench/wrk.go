package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// wrkPhase loads e for d with Debian's wrk (-t2, one connection per
// loadGen connection, --latency) instead of the in-process client: wrk is
// the load generator the api's targets are stated for. Its counts and
// percentiles become a loadResult; answers other than 2xx and socket errors
// count as errors (wrk does not check body lengths).
func (g loadGen) wrkPhase(ctx context.Context, e endpoint, d time.Duration) ([]workerStats, time.Duration, error) {
	args := []string{"-t2", "-c" + strconv.Itoa(g.conns), "-d" + strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second))) + "s", "--latency"}
	for k, v := range e.headers {
		args = append(args, "-H", k+": "+v)
	}
	args = append(args, "http://"+e.addr+e.path)
	start := time.Now()
	out, err := exec.CommandContext(ctx, "wrk", args...).CombinedOutput()
	elapsed := time.Since(start)
	if err != nil {
		return nil, 0, fmt.Errorf("wrk %s: %w: %s", strings.Join(args, " "), err, out)
	}
	st, err := parseWrk(string(out))
	if err != nil {
		return nil, 0, fmt.Errorf("wrk %s: %w:\n%s", e.path, err, out)
	}
	return []workerStats{st}, elapsed, nil
}

// parseWrk reads wrk's summary: "N requests in Ts, B read", the latency
// distribution (50% and 99% become two recorded latencies weighted by
// count), "Non-2xx or 3xx responses: N" and "Socket errors: ...".
func parseWrk(out string) (workerStats, error) {
	var st workerStats
	var p50, p99 time.Duration
	found := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.Atoi(f[0])
			if err != nil {
				return st, err
			}
			st.n, found = n, true
		case len(f) == 2 && f[0] == "50%":
			p50 = wrkDuration(f[1])
		case len(f) == 2 && f[0] == "99%":
			p99 = wrkDuration(f[1])
		case len(f) == 5 && f[0] == "Non-2xx":
			n, _ := strconv.Atoi(f[4])
			st.errs += n
			st.firstErr = "non-2xx answers"
		case len(f) > 2 && f[0] == "Socket" && f[1] == "errors:":
			for i := 2; i+1 < len(f); i += 2 {
				n, _ := strconv.Atoi(strings.TrimSuffix(f[i+1], ","))
				st.errs += n
			}
			st.firstErr = strings.Join(f, " ")
		}
	}
	if !found {
		return st, fmt.Errorf("no request count in wrk's output")
	}
	// Stand-in latencies: 98 % at p50 and 2 % at p99 give the same
	// nearest-rank p50 and p99 as wrk measured.
	ok := max(st.n-st.errs, 0)
	st.lat = make([]time.Duration, 0, 100)
	for i := range 100 {
		if i < 98 {
			st.lat = append(st.lat, p50)
		} else {
			st.lat = append(st.lat, p99)
		}
	}
	st.n = ok + st.errs
	return st, nil
}

// wrkDuration parses wrk's "123.45us", "1.20ms", "2.00s".
func wrkDuration(s string) time.Duration {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"m", time.Minute}, {"s", time.Second}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0
			}
			return time.Duration(f * float64(u.unit))
		}
	}
	return 0
}
