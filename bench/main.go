// Command bench is rowpipe's benchmark suite (`make bench`). In one run it
// measures, side by side with a ceiling measured the same way on the same
// machine, and reports as ratios (absolute figures drift 1.4–1.9× on a
// shared 2-core machine):
//
//   - ingest: bin/ingester → nats-server → bin/writer until bin/api shows
//     the generation, against a minimal CSV → PublishAsync → pull consumer
//     → NDJSON pipeline in this program;
//   - memory: peak RSS (VmHWM) of each process at every size, and of
//     bin/stack doing the same ingest alone;
//   - api: req/s and latency of the real api under 32 keep-alive
//     connections against a fiber server answering the same bytes;
//   - micro: `go test -bench` of every module that has benchmarks;
//   - beside ingest, PostgreSQL COPY of the same CSV (pgcopy.go);
//   - with -scale N only: N rows synced three times through bin/stack
//     (scale.go).
//
// The CSVs come from the bench's own generator (gencsv.go).
//
// It prints a markdown table and writes it to OUT/YYYY-MM-DD-HHMM.md and
// OUT/latest.md. Targets print PASS or MISS; a miss never fails the run, a
// broken harness does (exit 1).
//
//	cd bench && go run . -out results                 # the full suite
//	cd bench && go run . -quick                       # smoke run, about a minute
//	cd bench && go run . -only api -rows 1000000 -duration 5s
//
// Every process it starts listens on 127.0.0.1 only, has a timeout, and is
// ended when the run ends, Ctrl-C included.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	rows      []int
	only      map[string]bool
	duration  time.Duration
	slices    int
	repeat    int
	conns     int
	quick     bool
	out       string
	repo      string
	bin       string
	window    int
	msgID     bool
	timeout   time.Duration
	benchtime string
	keep      bool
	scale     int
	// scaleCompression, when set, is the stack's STREAM_COMPRESSION in the
	// scale section (for disks too small for uncompressed generations).
	scaleCompression string
	loadgen          string
	apiBefore        string
	// ingesterBefore is another ingester binary run in every ingest
	// round beside bin/ingester, with the same writer and server.
	ingesterBefore string
}

var sections = []string{"ingest", "memory", "api", "micro"}

func main() {
	os.Exit(run())
}

func run() int {
	var (
		opt      options
		rowsFlag string
		onlyFlag string
		serveDir string
		serveAt  string
		genKind  string
		genSeed  uint64
		scaleArg string
	)
	flag.StringVar(&rowsFlag, "rows", "10000,100000,1000000", "comma-separated dataset sizes; memory flatness compares the smallest and the largest (a size between shows where growth stops), the API load uses the largest")
	flag.StringVar(&onlyFlag, "only", "", "comma-separated sections to run: ingest, memory, api, micro (default all)")
	flag.DurationVar(&opt.duration, "duration", 10*time.Second, "measured time of each API load case (after a short warm-up)")
	flag.IntVar(&opt.slices, "slices", 5, "each API case alternates ours and the ceiling in this many slices of -duration/slices")
	flag.IntVar(&opt.repeat, "repeat", 1, "ingest runs (ceiling, ours) per size, alternating; the median is reported. Sizes under 100K always run at least 3 times")
	flag.IntVar(&opt.conns, "conns", 32, "keep-alive connections of the API load generator")
	flag.BoolVar(&opt.quick, "quick", false, "smoke run of about a minute: -rows 10000,100000 -duration 1s -slices 2 -benchtime 100ms, unless given")
	flag.StringVar(&opt.out, "out", "results", "folder for YYYY-MM-DD-HHMM.md and latest.md; empty: stdout only")
	flag.StringVar(&opt.repo, "repo", "..", "the rowpipe repository root")
	flag.StringVar(&opt.bin, "bin", "", "folder of ingester, writer, api and stack (default REPO/bin)")
	flag.IntVar(&opt.window, "ceiling-window", 256, "PublishAsync pending window of the ingest ceiling (the ingester's PUBLISH_WINDOW default)")
	flag.BoolVar(&opt.msgID, "msgid-ceiling", true, "also run the ingest ceiling with a Nats-Msg-Id on every message (for information: what broker-side dedupe costs)")
	flag.DurationVar(&opt.timeout, "timeout", 90*time.Minute, "limit for the whole run and for every process it starts")
	flag.StringVar(&opt.benchtime, "benchtime", "", "go test -benchtime for the micro-benchmarks (default go test's 1s)")
	flag.BoolVar(&opt.keep, "keep", false, "keep the temporary folder (CSVs, data, logs) for inspection")
	flag.StringVar(&genKind, "gen", "", "only write a generated CSV export to standard output: products or orders, of the first -rows size, deterministic by -seed")
	flag.Uint64Var(&genSeed, "seed", 1, "the seed of -gen")
	flag.StringVar(&opt.scaleCompression, "scale-compression", "", "with -scale: the stack's STREAM_COMPRESSION (none or s2; default: the stack's own, none)")
	flag.StringVar(&scaleArg, "scale", "", "run only the scale section: a products CSV of this many rows (10M, say) synced three times through bin/stack with defaults")
	flag.StringVar(&opt.loadgen, "loadgen", "auto", "API load generator: wrk (Debian's wrk -t2), client (in-process fasthttp client), or auto (wrk when it is on PATH)")
	flag.StringVar(&opt.ingesterBefore, "ingester-before", "", "another ingester binary (say, main's) to run in every ingest round beside bin/ingester, same writer, api and nats-server; or a folder of another build's ingester, writer and api, its whole pipeline: the before column")
	flag.StringVar(&opt.apiBefore, "api-before", "", "another api binary (say, main's) to measure in the same slices as bin/api, over the same data: the before column")
	flag.StringVar(&serveDir, "serve-ceiling", "", "internal: serve the API ceiling's constant bodies from this folder")
	flag.StringVar(&serveAt, "ceiling-addr", "127.0.0.1:0", "internal: address of -serve-ceiling")
	flag.Parse()

	if serveDir != "" {
		if err := serveCeiling(serveDir, serveAt); err != nil {
			fmt.Fprintln(os.Stderr, "bench: ceiling server:", err)
			return 1
		}
		return 0
	}

	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if opt.quick {
		if !set["rows"] {
			rowsFlag = "10000,100000"
		}
		if !set["duration"] {
			opt.duration = time.Second
		}
		if !set["slices"] {
			opt.slices = 2
		}
		if !set["benchtime"] {
			opt.benchtime = "100ms"
		}
	}
	var err error
	if opt.rows, err = parseRows(rowsFlag); err != nil {
		fmt.Fprintln(os.Stderr, "bench: -rows:", err)
		return 2
	}
	if scaleArg != "" {
		n, err := parseRows(scaleArg)
		if err != nil || len(n) != 1 {
			fmt.Fprintln(os.Stderr, "bench: -scale: want one row count, e.g. 10M")
			return 2
		}
		opt.scale = n[0]
	}
	if genKind != "" {
		if err := writeCSV(os.Stdout, genKind, opt.rows[0], genSeed); err != nil {
			fmt.Fprintln(os.Stderr, "bench: -gen:", err)
			return 1
		}
		return 0
	}
	if opt.only, err = parseOnly(onlyFlag); err != nil {
		fmt.Fprintln(os.Stderr, "bench: -only:", err)
		return 2
	}
	if opt.scale > 0 && !set["only"] {
		opt.only = map[string]bool{} // -scale alone runs only the scale section
	}
	switch opt.loadgen {
	case "auto":
		opt.loadgen = "client"
		if _, err := exec.LookPath("wrk"); err == nil {
			opt.loadgen = "wrk"
		}
	case "wrk", "client":
	default:
		fmt.Fprintln(os.Stderr, "bench: -loadgen must be wrk, client or auto")
		return 2
	}
	if opt.conns < 1 || opt.duration <= 0 || opt.window < 1 || opt.slices < 1 || opt.repeat < 1 {
		fmt.Fprintln(os.Stderr, "bench: -conns, -duration, -slices, -repeat and -ceiling-window must be positive")
		return 2
	}
	if opt.repo, err = filepath.Abs(opt.repo); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if opt.bin == "" {
		opt.bin = filepath.Join(opt.repo, "bin")
	}
	if opt.bin, err = filepath.Abs(opt.bin); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, opt.timeout)
	defer cancel()

	tmp, err := os.MkdirTemp("", "rowpipe-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	b := &bench{opt: opt, tmp: tmp, sup: &supervisor{logDir: tmp}}
	defer func() {
		b.sup.stopAll()
		if opt.keep {
			logf("kept %s", tmp)
		} else {
			os.RemoveAll(tmp)
		}
	}()
	key := make([]byte, 24)
	_, _ = rand.Read(key)
	b.apiKey = hex.EncodeToString(key)

	rep := b.run(ctx)
	if ctx.Err() != nil {
		rep.failures = append(rep.failures, "interrupted: "+context.Cause(ctx).Error())
	}
	text := rep.markdown()
	fmt.Print(text)
	if opt.out != "" {
		if err := writeResults(opt.out, rep.started, text, opt.scale); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	if len(rep.failures) > 0 {
		return 1
	}
	return 0
}

// bench is one run of the suite.
type bench struct {
	opt     options
	tmp     string
	sup     *supervisor
	natsBin string
	apiKey  string
}

// binary is the path of a rowpipe command.
func (b *bench) binary(name string) string { return filepath.Join(b.opt.bin, name) }

// run runs the selected sections and collects the report.
func (b *bench) run(ctx context.Context) *report {
	rep := &report{started: time.Now(), opt: b.opt, machine: describeMachine(b.opt.repo)}
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		logf("FAILED: %s", msg)
		rep.failures = append(rep.failures, msg)
	}
	only := b.opt.only
	needPipeline := only["ingest"] || only["memory"] || only["api"]
	if needPipeline {
		var missing []string
		for _, name := range []string{"ingester", "writer", "api", "stack"} {
			if _, err := os.Stat(b.binary(name)); err != nil {
				missing = append(missing, name)
			}
		}
		rep.missing = missing
		if len(missing) > 0 {
			fail("missing %s in %s: run `make build` in the repository", strings.Join(missing, ", "), b.opt.bin)
		}
		if err := b.buildNATS(ctx); err != nil {
			fail("building nats-server: %v", err)
			needPipeline = false
		}
	}
	if needPipeline {
		sizes := b.opt.rows
		if !only["ingest"] && !only["memory"] {
			sizes = sizes[len(sizes)-1:] // the API load needs only the largest
		}
		largest := b.opt.rows[len(b.opt.rows)-1]
		servicesOK := !slices.Contains(rep.missing, "ingester") && !slices.Contains(rep.missing, "writer") && !slices.Contains(rep.missing, "api")
		stackOK := !slices.Contains(rep.missing, "ingester") && !slices.Contains(rep.missing, "stack")
		for _, rows := range sizes {
			if ctx.Err() != nil {
				break
			}
			sr := &sizeResult{rows: rows}
			rep.sizes = append(rep.sizes, sr)
			csvPath := filepath.Join(b.tmp, fmt.Sprintf("products-%d.csv", rows))
			logf("generating %d product rows", rows)
			if err := b.genCSV(ctx, rows, csvPath); err != nil {
				fail("gencsv %d rows: %v", rows, err)
				continue
			}
			if fi, err := os.Stat(csvPath); err == nil {
				sr.csvBytes = fi.Size()
			}
			runs := 1
			if only["ingest"] {
				runs = b.opt.repeat
				if rows < 100_000 {
					runs = max(runs, 3)
				}
			}
			withLoad := only["api"] && rows == largest
			for i := range runs {
				if ctx.Err() != nil {
					break
				}
				if only["ingest"] {
					logf("ingest ceiling: %d rows (run %d of %d)", rows, i+1, runs)
					c, err := b.runCeilingIngest(ctx, csvPath, rows, false)
					if err != nil {
						fail("ingest ceiling at %d rows: %v", rows, err)
					} else {
						sr.ceilings = append(sr.ceilings, c)
						logf("ingest ceiling: %d rows in %s: %.0f rows/s", rows, c.elapsed.Round(time.Millisecond), rate(rows, c.elapsed))
					}
				}
				if only["ingest"] && b.opt.msgID && ctx.Err() == nil {
					logf("ingest ceiling with Nats-Msg-Id: %d rows (run %d of %d)", rows, i+1, runs)
					c, err := b.runCeilingIngest(ctx, csvPath, rows, true)
					if err != nil {
						fail("ingest ceiling with Msg-Id at %d rows: %v", rows, err)
					} else {
						sr.msgIDCeilings = append(sr.msgIDCeilings, c)
						logf("ingest ceiling with Nats-Msg-Id: %d rows in %s: %.0f rows/s", rows, c.elapsed.Round(time.Millisecond), rate(rows, c.elapsed))
					}
				}
				if servicesOK && ctx.Err() == nil && (only["ingest"] || only["memory"]) {
					logf("ours: ingester → nats-server → writer → api, %d rows (run %d of %d)", rows, i+1, runs)
					o, err := b.runOurs(ctx, csvPath, rows, false, nil)
					if err != nil {
						fail("ours at %d rows: %v", rows, err)
					}
					if o != nil {
						sr.ours = append(sr.ours, o)
						logf("ours: %d rows in %s: %.0f rows/s (%s)", rows, o.run.elapsed.Round(time.Millisecond), rate(rows, o.run.elapsed), o.run.summary)
					}
				}
				if servicesOK && ctx.Err() == nil && only["ingest"] && b.opt.ingesterBefore != "" {
					logf("before: %s → nats-server → writer → api, %d rows (run %d of %d)", b.opt.ingesterBefore, rows, i+1, runs)
					o, err := b.runOurs(ctx, csvPath, rows, false, nil, withBefore(b.opt.ingesterBefore))
					if err != nil {
						fail("before at %d rows: %v", rows, err)
					}
					if o != nil {
						sr.before = append(sr.before, o)
						logf("before: %d rows in %s: %.0f rows/s (%s)", rows, o.run.elapsed.Round(time.Millisecond), rate(rows, o.run.elapsed), o.run.summary)
					}
				}
				// The same with a lookup index of Variant SKU; the API load
				// runs on it, so that lookups are measured too.
				if servicesOK && ctx.Err() == nil && (only["ingest"] || only["memory"] || withLoad && i == 0) {
					logf("ours with --index %q: %d rows (run %d of %d)", benchIndexField, rows, i+1, runs)
					var load func(*services) error
					if withLoad && i == 0 {
						load = func(s *services) error {
							ar, err := b.runAPILoad(ctx, s, rows)
							rep.api = ar
							return err
						}
					}
					o, err := b.runOurs(ctx, csvPath, rows, true, load)
					if err != nil {
						fail("ours with --index at %d rows: %v", rows, err)
					}
					if o != nil {
						sr.indexed = append(sr.indexed, o)
						logf("ours with --index: %d rows in %s: %.0f rows/s (%s)", rows, o.run.elapsed.Round(time.Millisecond), rate(rows, o.run.elapsed), o.run.summary)
					}
				}
			}
			if only["ingest"] && ctx.Err() == nil {
				logf("PostgreSQL COPY: %d rows", rows)
				sr.copy = runCopy(ctx, csvPath)
				if sr.copy.skipped != "" {
					logf("PostgreSQL COPY skipped: %s", sr.copy.skipped)
				}
			}
			if only["memory"] && stackOK {
				logf("stack: %d rows", rows)
				st, err := b.runStack(ctx, csvPath, rows)
				if err != nil {
					fail("stack at %d rows: %v", rows, err)
				} else {
					sr.stack = st
					logf("stack: %d rows in %s, peak RSS %s", rows, st.run.elapsed.Round(time.Millisecond), mb(st.stackPeak))
				}
			}
			os.Remove(csvPath)
		}
	}
	if b.opt.scale > 0 {
		b.scale(ctx, rep, fail)
	}
	if only["micro"] && ctx.Err() == nil {
		rep.micro = b.runMicro(ctx)
		for _, m := range rep.micro {
			if m.err != "" {
				fail("micro-benchmarks of %s: %s", m.module, m.err)
			}
		}
	}
	rep.finished = time.Now()
	rep.machine.loadEnd = loadAverage()
	return rep
}

// buildNATS builds nats-server at the version bench/go.mod requires (a
// tool dependency), with this module's own go.mod whatever go.work says.
func (b *bench) buildNATS(ctx context.Context) error {
	b.natsBin = filepath.Join(b.tmp, "nats-server")
	logf("building nats-server (bench/go.mod tool dependency)")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", b.natsBin, "github.com/nats-io/nats-server/v2")
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	cmd.Dir = benchDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// genCSV writes rows Shopify-product rows to path (gencsv.go).
func (b *bench) genCSV(ctx context.Context, rows int, path string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return writeCSVFile(path, "products", rows, 1)
}

// benchDir is the folder of this module (the working directory under
// `make bench`).
func benchDir() string {
	if wd, err := os.Getwd(); err == nil {
		if _, err := os.Stat(filepath.Join(wd, "go.mod")); err == nil {
			return wd
		}
	}
	return "."
}

func parseRows(s string) ([]int, error) {
	var rows []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(strings.ReplaceAll(f, "_", ""))
		if f == "" {
			continue
		}
		mult := 1
		switch {
		case strings.HasSuffix(f, "K"), strings.HasSuffix(f, "k"):
			mult, f = 1000, f[:len(f)-1]
		case strings.HasSuffix(f, "M"), strings.HasSuffix(f, "m"):
			mult, f = 1000000, f[:len(f)-1]
		}
		n, err := strconv.Atoi(f)
		if err != nil || n*mult < 100 {
			return nil, fmt.Errorf("%q: want a row count of at least 100 (10000, 10K, 1M)", f)
		}
		rows = append(rows, n*mult)
	}
	if len(rows) == 0 {
		return nil, errors.New("no sizes")
	}
	slices.Sort(rows)
	return slices.Compact(rows), nil
}

func parseOnly(s string) (map[string]bool, error) {
	only := map[string]bool{}
	if strings.TrimSpace(s) == "" {
		for _, name := range sections {
			only[name] = true
		}
		return only, nil
	}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(sections, f) {
			return nil, fmt.Errorf("%q: want one or more of %s", f, strings.Join(sections, ", "))
		}
		only[f] = true
	}
	return only, nil
}

// logf prints a progress line to stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench %s: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func rate(rows int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(rows) / d.Seconds()
}
