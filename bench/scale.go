package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The scale section (-scale ROWS, not part of the default run): a
// generated products CSV of ROWS rows synced three times in a row through
// bin/stack with default settings, each time a file one row shorter than
// the last (so none is "unchanged"), as a daily re-sync would. Per sync:
// seconds and rows/s to the api showing it, the stack's and the
// ingester's peak RSS so far, the stream's bytes (as JetStream counts
// them, and on disk under S2), the dataset's files on disk, and first vs
// last page req/s of limit=10.

// scaleSync is one of the syncs.
type scaleSync struct {
	rows         int
	csvBytes     int64
	run          ingestRun
	stackPeak    int64
	stackCPU     time.Duration // the stack's CPU time during the sync
	stackFile    int64         // the stack's RssFile after the sync: its executable's pages
	streamBytes  uint64        // StreamInfo.State.Bytes: uncompressed, what MaxBytes counts
	streamDisk   int64         // the stack's JetStream store on disk
	filesDisk    int64         // DATA_DIR/<dataset> on disk
	first, last  loadResult
	loadDuration time.Duration
}

// scaleSyncs is how many syncs the scale section runs.
const scaleSyncs = 3

func (b *bench) runScale(ctx context.Context, rows int) ([]*scaleSync, error) {
	dir, err := os.MkdirTemp(b.tmp, "scale-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	s, err := b.startStack(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer s.p.stop(30 * time.Second)
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var out []*scaleSync
	for i := range scaleSyncs {
		n := rows - i
		csvPath := filepath.Join(dir, fmt.Sprintf("products-%d.csv", n))
		logf("scale: generating %d product rows", n)
		if err := writeCSVFile(csvPath, "products", n, 1); err != nil {
			return out, err
		}
		sy := &scaleSync{rows: n}
		if fi, err := os.Stat(csvPath); err == nil {
			sy.csvBytes = fi.Size()
		}
		logf("scale: sync %d of %d, %d rows through bin/stack", i+1, scaleSyncs, n)
		cpu0 := s.p.cpu()
		if sy.run, err = b.ingest(ctx, s.natsURL, s.apiAddr, csvPath, n, false); err != nil {
			return out, fmt.Errorf("sync %d: %w", i+1, err)
		}
		os.Remove(csvPath)
		logf("scale: sync %d: %d rows in %s (%s)", i+1, n, sy.run.elapsed.Round(time.Millisecond), sy.run.summary)
		sy.stackPeak = s.p.peakRSS()
		sy.stackCPU = s.p.cpu() - cpu0
		sy.stackFile, _ = procStatus(s.p.pid(), "RssFile")
		st, err := js.Stream(ctx, "ROWS")
		if err != nil {
			return out, err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return out, err
		}
		sy.streamBytes = info.State.Bytes
		sy.streamDisk = duBytes(filepath.Join(s.dataDir, ".nats")) + duBytes(filepath.Join(s.dataDir, "nats")) // where stack keeps it; before: nats
		sy.filesDisk = duBytes(filepath.Join(s.dataDir, benchDataset))
		sy.loadDuration = min(b.opt.duration, 5*time.Second)
		gen := loadGen{conns: b.opt.conns}
		hdr := map[string]string{"X-API-Key": b.apiKey}
		path := "/fetch-data?dataset=" + benchDataset + "&limit=10&offset="
		var eps []endpoint
		for _, p := range []string{path + "0", path + strconv.Itoa(n-10)} {
			body, _, err := fetchOnce(ctx, s.apiAddr, p, b.apiKey)
			if err != nil {
				return out, fmt.Errorf("sync %d: %w", i+1, err)
			}
			eps = append(eps, endpoint{addr: s.apiAddr, path: p, headers: hdr, wantLen: len(body), serverCPU: s.p.cpu})
		}
		res, err := gen.interleave(ctx, eps, time.Second, sy.loadDuration, 2)
		if err != nil {
			return out, fmt.Errorf("sync %d: api load: %w", i+1, err)
		}
		sy.first, sy.last = res[0], res[1]
		out = append(out, sy)
	}
	return out, nil
}

// stackProc is a running bin/stack.
type stackProc struct {
	p                         *proc
	dataDir, natsURL, apiAddr string
}

// startStack runs bin/stack with its defaults (only addresses, the key and
// DATA_DIR set) under dir.
func (b *bench) startStack(ctx context.Context, dir string) (*stackProc, error) {
	var ports [3]int
	for i := range ports {
		var err error
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	s := &stackProc{dataDir: filepath.Join(dir, "data"),
		natsURL: "nats://127.0.0.1:" + strconv.Itoa(ports[0]), apiAddr: "127.0.0.1:" + strconv.Itoa(ports[1])}
	p, err := b.sup.start(spec{
		name: "stack", timeout: b.opt.timeout, bin: b.binary("stack"),
		env: []string{
			"DATA_DIR=" + s.dataDir,
			"API_ADDR=" + s.apiAddr,
			"NATS_LISTEN=127.0.0.1:" + strconv.Itoa(ports[0]),
			"API_KEYS=" + b.apiKey,
			"METRICS_ADDR=127.0.0.1:" + strconv.Itoa(ports[2]),
			"API_RATE_LIMIT=0",
			"DATASET=" + benchDataset,
			"STREAM_COMPRESSION=" + b.opt.scaleCompression, // unset: the stack's default
		},
	})
	if err != nil {
		return nil, err
	}
	s.p = p
	if err := waitHTTP(ctx, p, "http://"+s.apiAddr+"/healthz", 60*time.Second); err != nil {
		p.stop(5 * time.Second)
		return nil, err
	}
	if err := waitJetStream(ctx, p, s.natsURL, 30*time.Second); err != nil {
		p.stop(5 * time.Second)
		return nil, err
	}
	return s, nil
}

// duBytes is the disk space the files under dir take (allocated blocks).
func duBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			n += allocated(fi)
		}
		return nil
	})
	return n
}

// scale runs the scale section into rep, with a PostgreSQL COPY of the
// first file for scale.
func (b *bench) scale(ctx context.Context, rep *report, fail func(string, ...any)) {
	if _, err := os.Stat(b.binary("stack")); err != nil {
		fail("missing stack in %s: run `make build` in the repository", b.opt.bin)
		return
	}
	if _, err := os.Stat(b.binary("ingester")); err != nil {
		fail("missing ingester in %s: run `make build` in the repository", b.opt.bin)
		return
	}
	var err error
	rep.scale, err = b.runScale(ctx, b.opt.scale)
	if err != nil {
		fail("scale at %d rows: %v", b.opt.scale, err)
	}
	if ctx.Err() != nil {
		return
	}
	csvPath := filepath.Join(b.tmp, "copy.csv")
	if err := writeCSVFile(csvPath, "products", b.opt.scale, 1); err != nil {
		fail("scale: %v", err)
		return
	}
	defer os.Remove(csvPath)
	logf("scale: PostgreSQL COPY of %d rows", b.opt.scale)
	rep.scaleCopy = runCopy(ctx, csvPath)
}

func (r *report) scaleSection(p func(string, ...any)) {
	if len(r.scale) == 0 {
		return
	}
	settings := "defaults"
	if r.opt.scaleCompression != "" {
		settings = "defaults and STREAM_COMPRESSION=" + r.opt.scaleCompression
	}
	p("## Scale: %s rows synced %d times through `bin/stack` with %s\n\n", num(float64(r.opt.scale)), scaleSyncs, settings)
	p("| sync | rows | CSV | seconds | rows/s | stack peak RSS | stack CPU µs/row | ingester peak RSS | stream (JetStream bytes) | stream on disk | dataset files on disk | limit=10 first page req/s | last page req/s | last/first |\n")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, s := range r.scale {
		first, last := s.first.rps(), s.last.rps()
		ratio := "–"
		if first > 0 {
			ratio = fmt.Sprintf("%.2f", last/first)
		}
		p("| %d | %s | %s | %.1f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", i+1, num(float64(s.rows)), gb(s.csvBytes),
			s.run.elapsed.Seconds(), num(rate(s.rows, s.run.elapsed)), mb(s.stackPeak), usPerRow(s.stackCPU, s.rows), mb(s.run.ingesterPeak),
			gb(int64(s.streamBytes)), gb(s.streamDisk), gb(s.filesDisk), num(first), num(last), ratio)
	}
	top := r.scale[0]
	for _, s := range r.scale {
		top.stackPeak = max(top.stackPeak, s.stackPeak)
		top.run.ingesterPeak = max(top.run.ingesterPeak, s.run.ingesterPeak)
	}
	r.check("scale: stack peak RSS ≤ 96 MiB", mb(top.stackPeak), top.stackPeak <= 96<<20)
	r.check("scale: ingester peak RSS ≤ 24 MiB", mb(top.run.ingesterPeak), top.run.ingesterPeak <= 24<<20)
	last := r.scale[len(r.scale)-1]
	p("\n- bytes a row, after sync %d: stream %.0f B as JetStream counts it (what `STREAM_MAX_BYTES` bounds), %.0f B on disk (%s); dataset files %.0f B (`KEEP_GENERATIONS=2`: two generations)\n",
		len(r.scale), float64(last.streamBytes)/float64(last.rows), float64(last.streamDisk)/float64(last.rows), compressionName(r.opt.scaleCompression), float64(last.filesDisk)/float64(last.rows))
	p("- the stack's RSS counts its executable's pages: %s (RssFile after sync %d); the rest is Go memory under `STACK_MEMORY_LIMIT` (64 MiB)\n", mb(last.stackFile), len(r.scale))
	p("- peak RSS is the process's VmHWM so far; req/s: %d connections, %s a page shape, interleaved\n", r.opt.conns, last.loadDuration)
	if c := r.scaleCopy; c != nil {
		if c.skipped != "" {
			p("- PostgreSQL COPY baseline: skipped: %s\n", c.skipped)
		} else {
			p("- PostgreSQL 15 `COPY` of the same %s-row CSV: %s, %s rows/s, %s in the table; sync 1/COPY = %.2f (rows/s)\n", num(float64(r.opt.scale)),
				secs(c.elapsed), num(rate(r.opt.scale, c.elapsed)), gb(c.diskBytes), c.elapsed.Seconds()/r.scale[0].run.elapsed.Seconds())
		}
	}
	for i, s := range r.scale {
		p("- sync %d summary: `%s`\n", i+1, s.run.summary)
	}
	p("\n")
}

func gb(n int64) string {
	if n < 1<<30 {
		return mb(n)
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}

// compressionName is how the scale report names the stream's compression.
func compressionName(v string) string {
	if v == "" {
		return "the stack's default, uncompressed"
	}
	return "STREAM_COMPRESSION=" + v
}
