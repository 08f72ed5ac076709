package main

import (
	"bufio"
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Targets of issue 8.
const (
	targetIngestRatio   = 0.80
	targetServiceRSS    = 24 << 20
	targetStackRSS      = 96 << 20
	targetFlat          = 4 << 20
	targetAPIRatio      = 0.70 // of the ceiling, every page case but NDJSON limit=100
	targetNDJSONRatio   = 0.90 // of the ceiling, NDJSON limit=100
	targetLastFirst     = 0.95
	targetLookupFirst   = 0.90 // a lookup by an indexed field vs the first page of 10
	targetIndexedIngest = 1.10 // ingest with --index vs without, elapsed
	targetP99Ratio      = 1.25
	ceilingFetchBatch   = ceilingBatch
	resultsLatestName   = "latest.md"
	resultsFileTimeForm = "2006-01-02-1504"
)

// sizeResult is everything measured at one dataset size.
type sizeResult struct {
	rows     int
	csvBytes int64
	ceilings []*ceilingResult // one per run, alternating with ours
	// msgIDCeilings are the same pipeline with a Nats-Msg-Id per message.
	msgIDCeilings []*ceilingResult
	ours          []*oursResult
	// indexed are our runs with `--index "Variant SKU"`, alternating
	// with ours: what building the lookup index adds.
	indexed []*oursResult
	// before are the runs of -ingester-before, alternating with ours.
	before []*oursResult
	stack  *stackResult
	copy   *copyResult // PostgreSQL COPY of the same CSV
}

// medianCeiling is the ceiling run of median elapsed time (nil if none).
func (s *sizeResult) medianCeiling() *ceilingResult { return medianOf(s.ceilings) }

func medianOf(runs []*ceilingResult) *ceilingResult {
	if len(runs) == 0 {
		return nil
	}
	c := slices.Clone(runs)
	slices.SortFunc(c, func(a, b *ceilingResult) int { return cmp.Compare(a.elapsed, b.elapsed) })
	return c[len(c)/2]
}

// medianOurs is our run of median elapsed time (nil if none).
func (s *sizeResult) medianOurs() *oursResult { return medianOursOf(s.ours) }

func medianOursOf(runs []*oursResult) *oursResult {
	if len(runs) == 0 {
		return nil
	}
	o := slices.Clone(runs)
	slices.SortFunc(o, func(a, b *oursResult) int { return cmp.Compare(a.run.elapsed, b.run.elapsed) })
	return o[len(o)/2]
}

// oursPeak is the highest peak RSS of process name over our runs, with
// and without --index.
func (s *sizeResult) oursPeak(name string) int64 {
	var peak int64
	for _, o := range append(slices.Clone(s.ours), s.indexed...) {
		peak = max(peak, o.peak[name])
	}
	return peak
}

// report is one run of the suite.
type report struct {
	started, finished time.Time
	opt               options
	machine           machine
	missing           []string
	sizes             []*sizeResult
	api               *apiResult
	micro             []microResult
	scale             []*scaleSync
	scaleCopy         *copyResult
	failures          []string

	targets []target // filled by markdown
}

// target is one PASS/MISS line.
type target struct {
	name   string
	figure string
	pass   bool
}

// machine describes where the run happened.
type machine struct {
	cpus      int
	cpuModel  string
	memory    string
	kernel    string
	goVersion string
	commit    string
	loadStart string // /proc/loadavg when the run started
	loadEnd   string
}

// loadAverage is the 1, 5 and 15 minute load averages, as in uptime.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func describeMachine(repo string) machine {
	m := machine{cpus: runtime.NumCPU(), goVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		m.goVersion = strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpuModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				var kb int64
				fmt.Sscan(rest, &kb)
				m.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				break
			}
		}
		f.Close()
	}
	m.loadStart = loadAverage()
	m.commit = "unknown"
	if out, err := exec.Command("git", "-C", repo, "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		m.commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
			m.commit += " (uncommitted changes to tracked files)"
		} else if st, err := exec.Command("git", "-C", repo, "status", "--porcelain").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
			m.commit += " (plus untracked files)"
		}
	}
	return m
}

func (r *report) check(name, figure string, pass bool) string {
	r.targets = append(r.targets, target{name: name, figure: figure, pass: pass})
	return passMiss(pass)
}

func passMiss(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// markdown renders the whole report.
func (r *report) markdown() string {
	r.targets = nil
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }

	p("# rowpipe benchmark, %s\n\n", r.started.Format("2006-01-02 15:04 MST"))
	p("- machine: %d CPUs (%s), %s, %s, %s\n", r.machine.cpus, r.machine.cpuModel, r.machine.memory, r.machine.kernel, r.machine.goVersion)
	p("- commit: %s\n", r.machine.commit)
	p("- command: `go run . %s` (in bench/), %s in all\n", strings.Join(os.Args[1:], " "), r.finished.Sub(r.started).Round(time.Second))
	p("- load average (1/5/15 min) at the start: %s, at the end: %s (%d cores: above %d, other work was competing for the CPU)\n", r.machine.loadStart, r.machine.loadEnd, r.machine.cpus, r.machine.cpus)
	p("- absolute figures drift 1.4–1.9× between runs on this shared machine: read the ratios, each measured in this run against a ceiling measured the same way\n")
	if len(r.missing) > 0 {
		p("- **not built**: %s (`make build`): their sections are missing\n", strings.Join(r.missing, ", "))
	}
	p("\n")

	r.ingestSection(p)
	r.memorySection(p)
	r.apiSection(p)
	r.microSection(p)
	r.scaleSection(p)

	if len(r.targets) > 0 {
		pass := 0
		for _, t := range r.targets {
			if t.pass {
				pass++
			}
		}
		p("## Targets: %d PASS, %d MISS\n\n", pass, len(r.targets)-pass)
		for _, t := range r.targets {
			p("- %s %s: %s\n", passMiss(t.pass), t.name, t.figure)
		}
		p("\n")
	}
	if len(r.failures) > 0 {
		p("## Harness errors\n\n")
		for _, f := range r.failures {
			p("- %s\n", strings.ReplaceAll(strings.TrimSpace(f), "\n", "\n  "))
		}
		p("\n")
	}
	return w.String()
}

func (r *report) ingestSection(p func(string, ...any)) {
	if !r.opt.only["ingest"] || len(r.sizes) == 0 {
		return
	}
	p("## Ingest: CSV → visible in the api\n\n")
	p("| rows | CSV | runs | ours | ours rows/s | ours MB/s | ceiling | ceiling rows/s | ceiling MB/s | ours/ceiling | target ≥ %.2f | CPU/row ratio |\n", targetIngestRatio)
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|\n")
	for _, s := range r.sizes {
		o, c := s.medianOurs(), s.medianCeiling()
		ours, ceil := "–", "–"
		oursRate, oursMB, ceilRate, ceilMB, ratio, verdict, cpuRatio := "–", "–", "–", "–", "–", "–", "–"
		if o != nil {
			d := o.run.elapsed
			ours = secs(d)
			oursRate = num(rate(s.rows, d))
			oursMB = fmt.Sprintf("%.1f", float64(s.csvBytes)/1e6/d.Seconds())
		}
		if c != nil {
			d := c.elapsed
			ceil = secs(d)
			ceilRate = num(rate(s.rows, d))
			ceilMB = fmt.Sprintf("%.1f", float64(s.csvBytes)/1e6/d.Seconds())
		}
		if o != nil && c != nil {
			x := c.elapsed.Seconds() / o.run.elapsed.Seconds()
			ratio = fmt.Sprintf("%.2f", x)
			verdict = r.check(fmt.Sprintf("ingest %s rows, ours/ceiling ≥ %.2f", num(float64(s.rows)), targetIngestRatio),
				fmt.Sprintf("%.2f (%s vs %s rows/s)", x, oursRate, ceilRate), x >= targetIngestRatio)
			if ot := o.totalCPU(); ot > 0 {
				cpuRatio = fmt.Sprintf("%.2f", float64(c.cpu+c.natsCPU)/float64(ot))
			}
		}
		p("| %s | %.1f MB | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", num(float64(s.rows)), float64(s.csvBytes)/1e6,
			max(len(s.ours), len(s.ceilings)), ours, oursRate, oursMB, ceil, ceilRate, ceilMB, ratio, verdict, cpuRatio)
	}
	r.indexedIngest(p)
	p("\nCPU time per row during the ingest, median run (µs; the 2 cores give at most 2 s of CPU per second):\n\n")
	p("| rows | ingester | nats-server | writer | api | ours total | ceiling: bench process | ceiling: nats-server | ceiling total |\n")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.sizes {
		o, c := s.medianOurs(), s.medianCeiling()
		cells := make([]string, 8)
		for i := range cells {
			cells[i] = "–"
		}
		if o != nil {
			for i, name := range []string{"ingester", "nats-server", "writer", "api"} {
				cells[i] = usPerRow(o.cpu[name], s.rows)
			}
			cells[4] = usPerRow(o.totalCPU(), s.rows)
		}
		if c != nil {
			cells[5] = usPerRow(c.cpu, s.rows)
			cells[6] = usPerRow(c.natsCPU, s.rows)
			cells[7] = usPerRow(c.cpu+c.natsCPU, s.rows)
		}
		p("| %s | %s |\n", num(float64(s.rows)), strings.Join(cells, " | "))
	}
	p("\n- ours: from starting `bin/ingester --dataset %s --wait FILE` (NATS_URL of a fresh `nats-server -js`, `bin/writer` and `bin/api` with their defaults: FSYNC=batch) until the api's `metadata_only` count equals the rows; process start, stream setup and the commit wait included.\n", benchDataset)
	p("- ceiling: in the bench process, `encoding/csv` (ReuseRecord) → JSON object by appending bytes → `PublishAsync` (no Msg-Id, window %d) to a fresh stream on a fresh nats-server, while a pull consumer on its own connection fetches batches of %d, writes + flushes a plain NDJSON file and acks each batch (AckAll); no envelope, header, index or fsync. Timed from before it connects, so its setup (connections, stream, consumer) counts as ours does.\n", r.opt.window, ceilingFetchBatch)
	p("- runs alternate ceiling, ours, ceiling, ours ... each on fresh servers; the table shows the median run of each. CPU/row ratio = ceiling's CPU per row ÷ ours (both halves and nats-server): it predicts the wall-clock ratio on a saturated 2-core machine and is less disturbed by other load on the machine.\n")
	for _, s := range r.sizes {
		m, o := medianOf(s.msgIDCeilings), s.medianOurs()
		if m == nil {
			continue
		}
		line := fmt.Sprintf("- for information, the ceiling with a `Nats-Msg-Id` on every message (broker-side dedupe, as rowpipe publishes) at %s rows: %s rows/s, %s µs CPU/row (bench process %s + nats-server %s)",
			num(float64(s.rows)), num(rate(s.rows, m.elapsed)), usPerRow(m.cpu+m.natsCPU, s.rows), usPerRow(m.cpu, s.rows), usPerRow(m.natsCPU, s.rows))
		if c := s.medianCeiling(); c != nil {
			line += fmt.Sprintf("; %.2f of the plain ceiling", c.elapsed.Seconds()/m.elapsed.Seconds())
		}
		if o != nil {
			line += fmt.Sprintf("; ours/this = %.2f", m.elapsed.Seconds()/o.run.elapsed.Seconds())
		}
		p("%s\n", line)
	}
	for _, s := range r.sizes {
		n := min(len(s.ours), len(s.ceilings))
		if n > 1 {
			var rs []string
			for i := range n {
				rs = append(rs, fmt.Sprintf("%.2f", s.ceilings[i].elapsed.Seconds()/s.ours[i].run.elapsed.Seconds()))
			}
			p("- ours/ceiling of each pair at %s rows: %s\n", num(float64(s.rows)), strings.Join(rs, ", "))
		}
	}
	r.beforeIngest(p)
	for _, s := range r.sizes {
		switch o := s.medianOurs(); {
		case s.copy == nil:
		case s.copy.skipped != "":
			p("- PostgreSQL COPY baseline at %s rows: skipped: %s\n", num(float64(s.rows)), s.copy.skipped)
		case o != nil:
			p("- PostgreSQL 15 `COPY ... FROM STDIN (FORMAT csv, HEADER)` (psql `\\copy`, text columns, a throwaway cluster, fsync on) of the same CSV at %s rows: %s, %s rows/s, %s in the table; **ours/COPY = %.2f** (rows/s)\n",
				num(float64(s.rows)), secs(s.copy.elapsed), num(rate(s.rows, s.copy.elapsed)), mbOrDash(s.copy.diskBytes), s.copy.elapsed.Seconds()/o.run.elapsed.Seconds())
		}
	}
	for _, s := range r.sizes {
		if o := s.medianOurs(); o != nil && o.run.summary != "" {
			p("- ingester summary at %s rows: `%s`\n", num(float64(s.rows)), o.run.summary)
		}
	}
	p("\n")
}

func (r *report) memorySection(p func(string, ...any)) {
	if !r.opt.only["memory"] || len(r.sizes) == 0 {
		return
	}
	small, large := r.sizes[0], r.sizes[len(r.sizes)-1]
	p("## Memory: peak RSS (VmHWM)\n\n")
	hdr := "| process |"
	sep := "|---|"
	for _, s := range r.sizes {
		hdr += fmt.Sprintf(" %s rows |", num(float64(s.rows)))
		sep += "---:|"
	}
	p("%s growth | limit | within limit | flat (≤ %s growth) |\n", hdr, mb(targetFlat))
	p("%s---:|---:|:---:|:---:|\n", sep)
	row := func(name string, limit int64, get func(*sizeResult) int64) {
		cells := []string{}
		for _, s := range r.sizes {
			v := get(s)
			cells = append(cells, mbOrDash(v))
		}
		growth, within, flat := "–", "–", "–"
		lim := "–"
		if limit > 0 {
			lim = "≤ " + mb(limit)
			worst := int64(0)
			have := false
			for _, s := range r.sizes {
				if v := get(s); v > 0 {
					have = true
					worst = max(worst, v)
				}
			}
			if have {
				within = r.check(fmt.Sprintf("memory %s peak ≤ %s", name, mb(limit)), "highest "+mb(worst), worst <= limit)
			}
		}
		a, b := get(small), get(large)
		if small != large && a > 0 && b > 0 {
			growth = fmt.Sprintf("%+.1f MiB", float64(b-a)/(1<<20))
			if limit > 0 {
				flat = r.check(fmt.Sprintf("memory %s flat %s → %s rows (≤ %s)", name, num(float64(small.rows)), num(float64(large.rows)), mb(targetFlat)),
					growth, b-a <= targetFlat)
			}
		}
		p("| %s | %s | %s | %s | %s | %s |\n", name, strings.Join(cells, " | "), growth, lim, within, flat)
	}
	oursPeak := func(name string) func(*sizeResult) int64 {
		return func(s *sizeResult) int64 { return s.oursPeak(name) }
	}
	row("ingester", targetServiceRSS, oursPeak("ingester"))
	row("writer", targetServiceRSS, oursPeak("writer"))
	row("api (after the ingest)", targetServiceRSS, oursPeak("api"))
	row("nats-server", targetServiceRSS, oursPeak("nats-server"))
	row("stack (NATS + writer + api)", targetStackRSS, func(s *sizeResult) int64 {
		if s.stack == nil {
			return 0
		}
		return s.stack.stackPeak
	})
	row("ingester into stack", 0, func(s *sizeResult) int64 {
		if s.stack == nil {
			return 0
		}
		return s.stack.run.ingesterPeak
	})
	row("ceiling's nats-server (for comparison)", 0, func(s *sizeResult) int64 {
		var peak int64
		for _, c := range s.ceilings {
			peak = max(peak, c.natsPeak)
		}
		return peak
	})
	p("\n- nats-server runs as `nats-server -js -sd DIR -a 127.0.0.1 -p PORT`, no memory tuning (no GOMEMLIMIT, default JetStream buffers).\n")
	p("- a process that exits (ingester) reports its VmHWM as last sampled (every 50 ms) while it ran, not the rusage maximum, which Linux inherits from the parent across a vfork+exec; the servers report VmHWM read just before they are stopped, right after the ingest; with several runs, the highest. MiB = 2^20 bytes, as ps and top count.\n")
	if r.api != nil {
		p("- api after the API load test at %s rows: %s (before it: %s); the fiber ceiling process: %s.\n",
			num(float64(r.api.rows)), mb(r.api.apiPeakAfter), mb(r.api.apiPeakBefore), mb(r.api.ceilingPeak))
	}
	for _, s := range r.sizes {
		if s.stack != nil {
			p("- stack at %s rows: ingest visible in %s (%s rows/s), stack CPU %s µs/row.\n", num(float64(s.rows)),
				secs(s.stack.run.elapsed), num(rate(s.rows, s.stack.run.elapsed)), usPerRow(s.stack.stackCPU, s.rows))
		}
	}
	p("\n")
}

func (r *report) apiSection(p func(string, ...any)) {
	a := r.api
	if !r.opt.only["api"] || a == nil {
		return
	}
	p("## API under load: %s-row dataset\n\n", num(float64(a.rows)))
	p("%d keep-alive connections on loopback, closed loop, %s measured per case after a warm-up. The cases compared with each other (ours and the ceiling, first and last page of one limit and format) run interleaved in %d round-robin slices, so other work on the machine weighs on all of them alike. ", r.opt.conns, a.duration, r.opt.slices)
	gen := "a fasthttp client in the bench process"
	if a.loadgen == "wrk" {
		gen = fmt.Sprintf("`wrk -t2 -c%d`", r.opt.conns)
	}
	p("**The load generator (%s) shares the %d cores with the server under test**, so req/s here is below what a separate client machine would see; the ceiling pays the same tax. ", gen, r.machine.cpus)
	p("Ceiling: a fiber v2.52.15 handler in its own process answering a constant body of the same bytes (and Content-Type) as the real page.\n\n")
	p("| case | body | ours req/s | ours p50 | ours p99 | ceiling req/s | ceiling p50 | ceiling p99 | ours/ceiling (≥ %.2f; NDJSON limit=100 ≥ %.2f) | p99 ratio (≤ %.2f) | last/first (≥ %.2f), lookup/first (≥ %.2f) |\n", targetAPIRatio, targetNDJSONRatio, targetP99Ratio, targetLastFirst, targetLookupFirst)
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	first := map[string]*apiCase{}
	for _, c := range a.cases {
		key := fmt.Sprintf("%d %s", c.limit, c.format)
		if c.limit > 0 && !c.last && c.vs == nil {
			first[key] = c
		}
		ratio := c.ours.rps() / c.ceiling.rps()
		p99 := float64(c.ours.p99) / float64(c.ceiling.p99)
		ratioCell := fmt.Sprintf("%.2f", ratio)
		p99Cell := fmt.Sprintf("%.2f", p99)
		lastCell := "–"
		if c.limit > 0 && c.vs == nil { // a lookup is gated by its ratio to the page it is compared with
			target := targetAPIRatio
			if c.format == "ndjson" && c.limit == 100 {
				target = targetNDJSONRatio
			}
			ratioCell += " " + r.check(fmt.Sprintf("api %s: req/s ≥ %.2f × ceiling", c.name, target),
				fmt.Sprintf("%.2f (%s vs %s req/s)", ratio, num(c.ours.rps()), num(c.ceiling.rps())), ratio >= target)
			p99Cell += " " + r.check(fmt.Sprintf("api %s: p99 ≤ %.2f × ceiling's", c.name, targetP99Ratio),
				fmt.Sprintf("%.2f (%s vs %s)", p99, dur(c.ours.p99), dur(c.ceiling.p99)), p99 <= targetP99Ratio)
		}
		if c.vs != nil {
			x := c.ours.rps() / c.vs.ours.rps()
			lastCell = fmt.Sprintf("%.2f ", x) + r.check(fmt.Sprintf("api %s: ≥ %.2f × %s", c.name, targetLookupFirst, c.vs.name),
				fmt.Sprintf("%.2f (%s vs %s req/s)", x, num(c.ours.rps()), num(c.vs.ours.rps())), x >= targetLookupFirst)
		}
		if c.last {
			if f := first[key]; f != nil {
				x := c.ours.rps() / f.ours.rps()
				lastCell = fmt.Sprintf("%.2f ", x) + r.check(fmt.Sprintf("api limit=%d %s: last page ≥ %.2f × first page", c.limit, c.format, targetLastFirst),
					fmt.Sprintf("%.2f (%s vs %s req/s)", x, num(c.ours.rps()), num(f.ours.rps())), x >= targetLastFirst)
			}
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c.name, bytesCell(c.body),
			num(c.ours.rps()), dur(c.ours.p50), dur(c.ours.p99),
			num(c.ceiling.rps()), dur(c.ceiling.p50), dur(c.ceiling.p99), ratioCell, p99Cell, lastCell)
	}
	var errs []string
	for _, c := range a.cases {
		if c.ours.errors > 0 || c.ceiling.errors > 0 {
			errs = append(errs, fmt.Sprintf("%s: ours %d errors (%s), ceiling %d (%s)", c.name, c.ours.errors, c.ours.firstErr, c.ceiling.errors, c.ceiling.firstErr))
		}
	}
	p("\n")
	if len(errs) > 0 {
		p("Failed requests (not counted in req/s or latency):\n\n")
		for _, e := range errs {
			p("- %s\n", e)
		}
		p("\n")
	} else {
		p("Every answer was 200 with the expected number of bytes.\n\n")
	}
	p("CPU per request (µs; /proc stat, 10 ms ticks), server process and load generator, ours vs ceiling — the server figure says where the req/s gap comes from:\n\n")
	p("| case | api µs/req | fiber ceiling µs/req | server ratio | load generator µs/req, ours / ceiling |\n")
	p("|---|---:|---:|---:|---:|\n")
	for _, c := range a.cases {
		so, sc := cpuPerRequest(c.ours.serverCPU, c.ours.requests), cpuPerRequest(c.ceiling.serverCPU, c.ceiling.requests)
		ratio := "–"
		if sc > 0 {
			ratio = fmt.Sprintf("%.2f", float64(so)/float64(sc))
		}
		p("| %s | %s | %s | %s | %s / %s |\n", c.name, usCell(so), usCell(sc), ratio,
			usCell(cpuPerRequest(c.ours.clientCPU, c.ours.requests)), usCell(cpuPerRequest(c.ceiling.clientCPU, c.ceiling.requests)))
	}
	p("\n")
	r.beforeTable(p)
	p("p99.9 / max, ours vs ceiling: ")
	var parts []string
	for _, c := range a.cases {
		parts = append(parts, fmt.Sprintf("%s %s/%s vs %s/%s", c.name, dur(c.ours.p999), dur(c.ours.max), dur(c.ceiling.p999), dur(c.ceiling.max)))
	}
	p("%s.\n\n", strings.Join(parts, "; "))
}

// beforeTable shows the -api-before binary, measured in the same slices.
func (r *report) beforeTable(p func(string, ...any)) {
	a := r.api
	if a.beforePeak == 0 {
		return
	}
	p("Before and after, measured in the same interleaved slices (`-api-before %s`; after: bin/api):\n\n", r.opt.apiBefore)
	p("| case | before req/s | after req/s | before/ceiling | after/ceiling | before µs/req | after µs/req |\n")
	p("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range a.cases {
		p("| %s | %s | %s | %.2f | %.2f | %s | %s |\n", c.name, num(c.before.rps()), num(c.ours.rps()),
			c.before.rps()/c.ceiling.rps(), c.ours.rps()/c.ceiling.rps(),
			usCell(cpuPerRequest(c.before.serverCPU, c.before.requests)), usCell(cpuPerRequest(c.ours.serverCPU, c.ours.requests)))
	}
	p("\nPeak RSS after the load: before %s, after %s.\n\n", mb(a.beforePeak), mb(a.apiPeakAfter))
}

func (r *report) microSection(p func(string, ...any)) {
	if !r.opt.only["micro"] {
		return
	}
	p("## Go micro-benchmarks (`go test -run=NONE -bench=. -benchmem`")
	if r.opt.benchtime != "" {
		p(" `-benchtime=%s`", r.opt.benchtime)
	}
	p(")\n\n")
	if len(r.micro) == 0 {
		p("No module has benchmarks yet.\n\n")
		return
	}
	p("```text\n")
	for _, m := range r.micro {
		p("== %s\n", m.module)
		for _, l := range m.lines {
			p("%s\n", l)
		}
		if m.err != "" {
			p("ERROR: %s\n", m.err)
		}
	}
	p("```\n\n")
}

// writeResults writes text to dir/YYYY-MM-DD-HHMM.md and dir/latest.md.
func writeResults(dir string, started time.Time, text string, scale int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := filepath.Join(dir, started.Format(resultsFileTimeForm)+".md")
	paths := []string{name, filepath.Join(dir, resultsLatestName)}
	if scale > 0 { // a section of its own: latest.md stays the full suite's
		name = filepath.Join(dir, started.Format(resultsFileTimeForm)+"-scale-"+strconv.Itoa(scale)+".md")
		paths = []string{name}
	}
	for _, path := range paths {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	logf("wrote %s", strings.Join(paths, " and "))
	return nil
}

// Formatting helpers.

func num(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func mb(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func mbOrDash(b int64) string {
	if b <= 0 {
		return "–"
	}
	return mb(b)
}

func bytesCell(n int) string {
	if n >= 10<<10 {
		return fmt.Sprintf("%.1f KB", float64(n)/1024)
	}
	return fmt.Sprintf("%d B", n)
}

func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
}

func usCell(d time.Duration) string {
	if d <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", float64(d.Nanoseconds())/1e3)
}

func usPerRow(d time.Duration, rows int) string {
	if d < 0 || rows == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", float64(d.Microseconds())/float64(rows))
}

// indexedIngest compares our ingest with and without a lookup index of
// Variant SKU, runs alternating.
func (r *report) indexedIngest(p func(string, ...any)) {
	if !slices.ContainsFunc(r.sizes, func(s *sizeResult) bool { return len(s.indexed) > 0 }) {
		return
	}
	p("\nWith `--index \"%s\"` (the writer builds the lookup index at the end, before the generation becomes visible), runs alternating with the ones above:\n\n", benchIndexField)
	p("| rows | runs | ours | with --index | with/without (≤ %.2f) | writer CPU µs/row, without / with |\n", targetIndexedIngest)
	p("|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.sizes {
		o, x := s.medianOurs(), medianOursOf(s.indexed)
		if o == nil || x == nil {
			continue
		}
		ratio := x.run.elapsed.Seconds() / o.run.elapsed.Seconds()
		verdict := r.check(fmt.Sprintf("ingest %s rows with --index ≤ %.2f × without", num(float64(s.rows)), targetIndexedIngest),
			fmt.Sprintf("%.2f (%s vs %s)", ratio, secs(x.run.elapsed), secs(o.run.elapsed)), ratio <= targetIndexedIngest)
		p("| %s | %d | %s | %s | %.2f %s | %s / %s |\n", num(float64(s.rows)), len(s.indexed), secs(o.run.elapsed), secs(x.run.elapsed),
			ratio, verdict, usPerRow(o.cpu["writer"], s.rows), usPerRow(x.cpu["writer"], s.rows))
	}
}

// beforeIngest compares bin/ingester with -ingester-before, run in the
// same rounds on the same services.
func (r *report) beforeIngest(p func(string, ...any)) {
	for _, s := range r.sizes {
		b, o := medianOursOf(s.before), s.medianOurs()
		if b == nil || o == nil {
			continue
		}
		p("- `-ingester-before %s` at %s rows, in the same rounds: %s rows/s, CPU/row ingester %s + nats-server %s + writer %s µs; ours %s rows/s, CPU/row ingester %s + nats-server %s + writer %s µs; **ours/before = %.2f** (rows/s, medians)",
			r.opt.ingesterBefore, num(float64(s.rows)), num(rate(s.rows, b.run.elapsed)),
			usPerRow(b.cpu["ingester"], s.rows), usPerRow(b.cpu["nats-server"], s.rows), usPerRow(b.cpu["writer"], s.rows),
			num(rate(s.rows, o.run.elapsed)),
			usPerRow(o.cpu["ingester"], s.rows), usPerRow(o.cpu["nats-server"], s.rows), usPerRow(o.cpu["writer"], s.rows),
			b.run.elapsed.Seconds()/o.run.elapsed.Seconds())
		if n := min(len(s.ours), len(s.before)); n > 1 {
			var rs []string
			for i := range n {
				rs = append(rs, fmt.Sprintf("%.2f", s.before[i].run.elapsed.Seconds()/s.ours[i].run.elapsed.Seconds()))
			}
			p("; each round: %s", strings.Join(rs, ", "))
		}
		if s.copy != nil && s.copy.skipped == "" {
			p("; before/COPY = %.2f", s.copy.elapsed.Seconds()/b.run.elapsed.Seconds())
		}
		p("\n")
	}
}
