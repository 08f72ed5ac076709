// Command writer materialises rowpipe's rows stream into per-dataset
// NDJSON generation files (with their metadata header and offset index)
// under DATA_DIR, and serves /healthz and /metrics on METRICS_ADDR.
//
// Configuration comes from the environment (NATS_URL, NATS_CREDS, STREAM,
// DATA_DIR, KEEP_GENERATIONS, MAX_DATASETS, STREAM_REPLICAS, STREAM_MAX_BYTES, FSYNC,
// METRICS_ADDR, LOG_LEVEL, LOG_FORMAT, WRITER_MEMORY_LIMIT, ...), and flags
// override it. GOMAXPROCS defaults to 1 (svc.PipelineProcs says why). With --rebuild the writer removes the files it made and
// rebuilds them from the stream.
//
// Exit status: 0 after SIGINT/SIGTERM, 1 on a runtime failure (another
// writer holds DATA_DIR, damaged files, a replaced stream), 2 on a usage
// or configuration error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rowpipe/rowpipe/pkg/svc"
	"github.com/rowpipe/rowpipe/services/writer/writer"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	cfg := writer.DefaultConfig()
	if err := envconfig.Process("", &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "writer: %v\n", err)
		return 2
	}
	// The process's own settings, beside writer.Config (which the stack
	// embeds, with its own).
	proc := struct {
		MemoryLimit int64 `envconfig:"WRITER_MEMORY_LIMIT"`
	}{MemoryLimit: defaultMemoryLimit}
	if err := envconfig.Process("", &proc); err != nil {
		fmt.Fprintf(os.Stderr, "writer: %v\n", err)
		return 2
	}
	fl := flag.NewFlagSet("writer", flag.ContinueOnError)
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "usage: writer [flags]\n\nApplies the rows stream to DATA_DIR. Every flag has an environment variable.\n\n")
		fl.PrintDefaults()
	}
	fl.StringVar(&cfg.NATSURL, "nats-url", cfg.NATSURL, "NATS server URL (NATS_URL)")
	fl.StringVar(&cfg.NATSCreds, "nats-creds", cfg.NATSCreds, "NATS credentials file (NATS_CREDS)")
	fl.StringVar(&cfg.Stream, "stream", cfg.Stream, "JetStream stream of the rows (STREAM)")
	fl.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "folder of the datasets (DATA_DIR)")
	fl.IntVar(&cfg.KeepGenerations, "keep-generations", cfg.KeepGenerations, "complete generations kept per dataset (KEEP_GENERATIONS)")
	fl.IntVar(&cfg.MaxDatasets, "max-datasets", cfg.MaxDatasets, "the most datasets kept; a begin for one more is refused (MAX_DATASETS)")
	fl.StringVar(&cfg.Fsync, "fsync", cfg.Fsync, "batch, always or off (FSYNC)")
	fl.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "address of /healthz and /metrics (METRICS_ADDR)")
	fl.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error (LOG_LEVEL)")
	fl.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "text or json (LOG_FORMAT)")
	fl.Int64Var(&proc.MemoryLimit, "memory-limit", proc.MemoryLimit, "Go soft memory limit in bytes when GOMEMLIMIT is not set; 0: none (WRITER_MEMORY_LIMIT)")
	probe := fl.String("probe", "", "GET this path (/healthz) on METRICS_ADDR over loopback and exit 0 if it answers 200: the container health check")
	fl.BoolVar(&cfg.Rebuild, "rebuild", false, "remove the generation files this writer made and rebuild them from the stream")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "writer: unexpected argument %q\n", fl.Arg(0))
		return 2
	}
	if *probe != "" {
		return svc.Probe(os.Stderr, cfg.MetricsAddr, *probe)
	}
	svc.RestrictUmask()
	log, err := svc.NewLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "writer: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "writer: configuration: %v\n", err)
		return 2
	}
	if _, err := (svc.NATSAuth{Creds: cfg.NATSCreds, User: cfg.NATSUser, Password: cfg.NATSPassword}).Options(); err != nil {
		fmt.Fprintf(os.Stderr, "writer: configuration: %v\n", err)
		return 2
	}
	if proc.MemoryLimit < 0 {
		fmt.Fprintf(os.Stderr, "writer: configuration: WRITER_MEMORY_LIMIT=%d: want a number of bytes, or 0 for no limit\n", proc.MemoryLimit)
		return 2
	}
	limit, from := setMemoryLimit(proc.MemoryLimit)
	procs, procsFrom := svc.PipelineProcs() // one P unless GOMAXPROCS is set: see its doc
	log.Info("Go runtime", "memory_limit", limit, "memory_limit_from", from, "gomaxprocs", procs, "gomaxprocs_from", procsFrom)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var running atomic.Pointer[writer.Writer] // set once the writer holds DATA_DIR
	ln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		log.Error("cannot serve health and metrics", "metrics_addr", cfg.MetricsAddr, "err", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		// Liveness: 200 while the writer runs and so can make progress,
		// with what holds it back (NATS away, a failing disk) as detail.
		// It is served from the start: waiting for NATS is no reason to be
		// restarted.
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w := running.Load()
		if w == nil {
			fmt.Fprintln(rw, "ok connecting to NATS")
			return
		}
		if err := w.Alive(); err != nil {
			rw.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(rw, "not alive: %v\n", err)
			return
		}
		detail := "consuming"
		if err := w.Healthy(); err != nil {
			detail = "degraded: " + err.Error()
		}
		fmt.Fprintf(rw, "ok applied_seq=%d caught_up=%v %s\n", w.Applied(), w.CaughtUp(), detail)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health and metrics server", "err", err)
		}
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("health and metrics", "addr", ln.Addr().String())

	nc, err := connect(ctx, cfg, log)
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		log.Error("cannot connect to NATS", "err", err)
		return 1
	}
	defer nc.Close()
	w, err := writer.New(cfg, nc, writer.WithLogger(log), writer.WithRegisterer(reg))
	if err != nil {
		fmt.Fprintf(os.Stderr, "writer: %v\n", err)
		return 2
	}

	if err := w.Lock(); err != nil {
		log.Error("writer not started", "err", err)
		return 1
	}
	running.Store(w)

	if err := w.Run(ctx); err != nil {
		log.Error("writer stopped", "err", err)
		return 1
	}
	log.Info("writer stopped", "applied_seq", w.Applied())
	return 0
}

// connect dials NATS until it answers or ctx is cancelled; once connected
// the client reconnects on its own, forever.
func connect(ctx context.Context, cfg writer.Config, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("rowpipe-writer"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("reconnected to NATS", "url", svc.RedactURLs(nc.ConnectedUrl())) }),
	}
	auth, err := svc.NATSAuth{Creds: cfg.NATSCreds, User: cfg.NATSUser, Password: cfg.NATSPassword}.Options()
	if err != nil {
		return nil, err
	}
	opts = append(opts, auth...)
	wait := 250 * time.Millisecond
	for {
		nc, err := nats.Connect(cfg.NATSURL, opts...)
		if err == nil {
			log.Info("connected to NATS", "url", svc.RedactURLs(nc.ConnectedUrl()))
			return nc, nil
		}
		log.Warn("NATS is not reachable; retrying", "url", svc.RedactURLs(cfg.NATSURL), "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}
