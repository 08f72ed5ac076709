package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// benchDataset is the dataset every ingest of the benchmark writes.
const benchDataset = "bench"

// benchIndexField is the field the indexed runs build a lookup index of.
const benchIndexField = "Variant SKU"

// httpClient is for the few control requests (readiness, visibility,
// fetching a page once); the load goes through loadGen.
var httpClient = &http.Client{Timeout: 10 * time.Second}

// services is one running ingester → NATS → writer → api deployment.
type services struct {
	nats, writer, api *proc
	natsURL           string
	apiAddr           string
	dataDir           string
	indexed           bool // the dataset has a lookup index of benchIndexField
}

func (s *services) stop() {
	for _, p := range []*proc{s.api, s.writer, s.nats} {
		if p != nil {
			p.stop(10 * time.Second)
		}
	}
}

// startNATS starts a nats-server with JetStream, its store under dir, on a
// free loopback port, and waits until JetStream answers.
func (b *bench) startNATS(ctx context.Context, name, dir string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	p, err := b.sup.start(spec{
		name: name, timeout: b.opt.timeout, bin: b.natsBin,
		args: []string{"-js", "-sd", filepath.Join(dir, "js"), "-a", "127.0.0.1", "-p", strconv.Itoa(port)},
	})
	if err != nil {
		return nil, "", err
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	if err := waitJetStream(ctx, p, url, 30*time.Second); err != nil {
		p.stop(5 * time.Second)
		return nil, "", err
	}
	return p, url, nil
}

// waitJetStream waits until the server at url answers a JetStream request.
func waitJetStream(ctx context.Context, p *proc, url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.logTail())
		}
		nc, err := nats.Connect(url, nats.Timeout(time.Second))
		if err == nil {
			js, jerr := jetstream.New(nc)
			if jerr == nil {
				actx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err = js.AccountInfo(actx)
				cancel()
			} else {
				err = jerr
			}
			nc.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("JetStream at %s not ready after %s: %v", url, limit, last)
}

// waitHTTP waits until GET url answers 200.
func waitHTTP(ctx context.Context, p *proc, url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.logTail())
		}
		resp, err := httpClient.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: %s not ready after %s: %s\n%s", p.name, url, limit, last, p.logTail())
}

// startServices starts nats-server, bin/writer and bin/api on free loopback
// ports, all data under dir.
func (b *bench) startServices(ctx context.Context, dir string, opts ...ingestOpt) (*services, error) {
	x := b.bins(opts)
	s := &services{dataDir: filepath.Join(dir, "data")}
	if err := os.MkdirAll(s.dataDir, 0o755); err != nil {
		return nil, err
	}
	var err error
	s.nats, s.natsURL, err = b.startNATS(ctx, "nats-server", dir)
	if err != nil {
		return nil, err
	}
	mport, err := freePort()
	if err != nil {
		s.stop()
		return nil, err
	}
	s.writer, err = b.sup.start(spec{
		name: "writer", timeout: b.opt.timeout, bin: x.writer,
		env: []string{
			"DATA_DIR=" + s.dataDir,
			"NATS_URL=" + s.natsURL,
			"METRICS_ADDR=127.0.0.1:" + strconv.Itoa(mport),
		},
	})
	if err != nil {
		s.stop()
		return nil, err
	}
	if err := waitHTTP(ctx, s.writer, fmt.Sprintf("http://127.0.0.1:%d/healthz", mport), 30*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	if s.api, s.apiAddr, err = b.startAPI(ctx, "api", x.api, s.dataDir); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// startAPI starts an api binary over dataDir on a free loopback port and
// waits for its /healthz.
func (b *bench) startAPI(ctx context.Context, name, bin, dataDir string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := b.sup.start(spec{
		name: name, timeout: b.opt.timeout, bin: bin,
		env: []string{
			"DATA_DIR=" + dataDir,
			"API_ADDR=" + addr,
			"API_KEYS=" + b.apiKey,
			"API_RATE_LIMIT=0", // the load test is one key at full speed
			"DATASET=" + benchDataset,
		},
	})
	if err != nil {
		return nil, "", err
	}
	if err := waitHTTP(ctx, p, "http://"+addr+"/healthz", 30*time.Second); err != nil {
		p.stop(5 * time.Second)
		return nil, "", err
	}
	return p, addr, nil
}

// ingestRun is one timed `ingester --wait` until the api shows the rows.
type ingestRun struct {
	elapsed      time.Duration
	summary      string
	ingesterPeak int64
	ingesterCPU  time.Duration
}

// ingestArgs are bin/ingester's arguments: --dataset bench --wait, and
// --index benchIndexField when index is set.
func ingestArgs(csvPath string, index bool) []string {
	args := []string{"--dataset", benchDataset, "--wait"}
	if index {
		args = append(args, "--index", benchIndexField)
	}
	return append(args, csvPath)
}

// bins are the executables of one run: bin/ by default.
type bins struct{ ingester, writer, api string }

// ingestOpt changes which executables a run uses.
type ingestOpt func(*bins)

// withBefore runs the -ingester-before executables: path itself as the
// ingester, or path/ingester, path/writer and path/api when path is a
// folder (another build's whole pipeline).
func withBefore(path string) ingestOpt {
	return func(b *bins) {
		if fi, err := os.Stat(path); err == nil && fi.IsDir() {
			*b = bins{filepath.Join(path, "ingester"), filepath.Join(path, "writer"), filepath.Join(path, "api")}
			return
		}
		b.ingester = path
	}
}

func (b *bench) bins(opts []ingestOpt) bins {
	x := bins{b.binary("ingester"), b.binary("writer"), b.binary("api")}
	for _, o := range opts {
		o(&x)
	}
	return x
}

// ingest runs bin/ingester --dataset bench --wait csvPath against natsURL
// (with --index when index is set) and returns once the api at apiAddr
// reports count == rows.
func (b *bench) ingest(ctx context.Context, natsURL, apiAddr, csvPath string, rows int, index bool, opts ...ingestOpt) (ingestRun, error) {
	bin := b.bins(opts).ingester
	timeout := 10*time.Minute + time.Duration(rows/2000)*time.Second
	start := time.Now()
	p, err := b.sup.start(spec{
		name: "ingester", timeout: timeout, captureStdout: true, bin: bin,
		env:  []string{"NATS_URL=" + natsURL, "PROGRESS=log"},
		args: ingestArgs(csvPath, index),
	})
	if err != nil {
		return ingestRun{}, err
	}
	if err := p.wait(ctx); err != nil {
		p.stop(5 * time.Second)
		return ingestRun{}, fmt.Errorf("ingester: %v\nstdout: %s\n%s", err, p.stdout, p.logTail())
	}
	if err := waitVisible(ctx, apiAddr, b.apiKey, rows, 60*time.Second); err != nil {
		return ingestRun{}, err
	}
	run := ingestRun{
		elapsed:      time.Since(start),
		summary:      strings.TrimSpace(p.stdout.String()),
		ingesterPeak: p.peakRSS(),
		ingesterCPU:  p.cpu(),
	}
	return run, nil
}

// waitVisible polls the api's metadata until the bench dataset's count is
// rows.
func waitVisible(ctx context.Context, apiAddr, key string, rows int, limit time.Duration) error {
	url := "http://" + apiAddr + "/fetch-data?dataset=" + benchDataset + "&metadata_only=true"
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("X-API-Key", key)
		resp, err := httpClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var meta struct {
				Count int64 `json:"count"`
			}
			if resp.StatusCode == http.StatusOK && json.Unmarshal(body, &meta) == nil && meta.Count == int64(rows) {
				return nil
			}
			last = fmt.Sprintf("%s %.300s", resp.Status, body)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("the api never showed %d rows of %q (last answer: %s)", rows, benchDataset, last)
}

// oursResult is the real pipeline at one size.
type oursResult struct {
	run  ingestRun
	peak map[string]int64         // VmHWM after the ingest, by process
	cpu  map[string]time.Duration // CPU used during the ingest, by process
}

// totalCPU is the CPU of every process during the ingest.
func (o *oursResult) totalCPU() time.Duration {
	var t time.Duration
	for _, d := range o.cpu {
		t += d
	}
	return t
}

// runOurs ingests the CSV through the real services, then (when load is
// non-nil) runs the API load test against the same api.
func (b *bench) runOurs(ctx context.Context, csvPath string, rows int, index bool, load func(*services) error, opts ...ingestOpt) (*oursResult, error) {
	dir, err := os.MkdirTemp(b.tmp, "ours-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	s, err := b.startServices(ctx, dir, opts...)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	s.indexed = index
	cpu0 := map[string]time.Duration{"nats-server": s.nats.cpu(), "writer": s.writer.cpu(), "api": s.api.cpu()}
	run, err := b.ingest(ctx, s.natsURL, s.apiAddr, csvPath, rows, index, opts...)
	if err != nil {
		return nil, err
	}
	res := &oursResult{
		run: run,
		peak: map[string]int64{
			"ingester":    run.ingesterPeak,
			"writer":      s.writer.peakRSS(),
			"api":         s.api.peakRSS(),
			"nats-server": s.nats.peakRSS(),
		},
		cpu: map[string]time.Duration{
			"ingester":    run.ingesterCPU,
			"writer":      s.writer.cpu() - cpu0["writer"],
			"api":         s.api.cpu() - cpu0["api"],
			"nats-server": s.nats.cpu() - cpu0["nats-server"],
		},
	}
	if load != nil {
		if err := load(s); err != nil {
			return res, fmt.Errorf("api load: %w", err)
		}
	}
	return res, nil
}

// stackResult is the same ingest through bin/stack alone.
type stackResult struct {
	run       ingestRun
	stackPeak int64
	stackCPU  time.Duration
}

// runStack starts bin/stack (embedded NATS + writer + api) and ingests the
// CSV into it with bin/ingester.
func (b *bench) runStack(ctx context.Context, csvPath string, rows int) (*stackResult, error) {
	dir, err := os.MkdirTemp(b.tmp, "stack-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	nport, err := freePort()
	if err != nil {
		return nil, err
	}
	aport, err := freePort()
	if err != nil {
		return nil, err
	}
	mport, err := freePort()
	if err != nil {
		return nil, err
	}
	natsAddr := "127.0.0.1:" + strconv.Itoa(nport)
	apiAddr := "127.0.0.1:" + strconv.Itoa(aport)
	p, err := b.sup.start(spec{
		name: "stack", timeout: b.opt.timeout, bin: b.binary("stack"),
		env: []string{
			"DATA_DIR=" + filepath.Join(dir, "data"),
			"API_ADDR=" + apiAddr,
			"NATS_LISTEN=" + natsAddr,
			"API_KEYS=" + b.apiKey,
			"METRICS_ADDR=127.0.0.1:" + strconv.Itoa(mport),
			"API_RATE_LIMIT=0",
			"DATASET=" + benchDataset,
		},
	})
	if err != nil {
		return nil, err
	}
	defer p.stop(10 * time.Second)
	if err := waitHTTP(ctx, p, "http://"+apiAddr+"/healthz", 60*time.Second); err != nil {
		return nil, err
	}
	natsURL := "nats://" + natsAddr
	if err := waitJetStream(ctx, p, natsURL, 30*time.Second); err != nil {
		return nil, err
	}
	cpu0 := p.cpu()
	run, err := b.ingest(ctx, natsURL, apiAddr, csvPath, rows, false)
	if err != nil {
		return nil, err
	}
	return &stackResult{run: run, stackPeak: p.peakRSS(), stackCPU: p.cpu() - cpu0}, nil
}

// runCeilingIngest runs the minimal pipeline against a fresh nats-server.
func (b *bench) runCeilingIngest(ctx context.Context, csvPath string, rows int, msgID bool) (*ceilingResult, error) {
	dir, err := os.MkdirTemp(b.tmp, "ceiling-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	p, url, err := b.startNATS(ctx, "nats-server-ceiling", dir)
	if err != nil {
		return nil, err
	}
	defer p.stop(10 * time.Second)
	natsCPU0 := p.cpu()
	res, err := ceilingPipeline{
		natsURL: url, csvPath: csvPath, outPath: filepath.Join(dir, "out.ndjson"),
		rows: rows, window: b.opt.window, msgID: msgID,
	}.run(ctx)
	if err != nil {
		return nil, err
	}
	res.natsPeak = p.peakRSS()
	res.natsCPU = p.cpu() - natsCPU0
	return &res, nil
}
