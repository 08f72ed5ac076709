// Command api serves rowpipe datasets over HTTP from the writer's DATA_DIR.
//
// Configuration comes from the environment (see api.Config; the contract's
// names: DATA_DIR, DATASET, API_ADDR, API_KEYS, API_KEYS_FILE, MAX_LIMIT),
// and the flags below override it. PPROF_ADDR (unset by default) serves
// net/http/pprof on that address, for profiling under load. SIGINT or SIGTERM starts a graceful
// shutdown: running answers get API_SHUTDOWN_TIMEOUT to finish.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	_ "net/http/pprof" // served only when PPROF_ADDR is set
	"os"
	"os/signal"
	"syscall"

	"github.com/rowpipe/rowpipe/pkg/svc"
	"github.com/rowpipe/rowpipe/services/api/api"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	cfg, err := api.ConfigFromEnv()
	if err != nil {
		fmt.Fprintln(stderr, "api:", err)
		return 2
	}
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "the writer's data directory (DATA_DIR)")
	fs.StringVar(&cfg.Dataset, "dataset", cfg.Dataset, "dataset served by /fetch-data without dataset= (DATASET)")
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address (API_ADDR)")
	fs.StringVar(&cfg.KeysFile, "keys-file", cfg.KeysFile, "file of API keys, one a line, re-read on change (API_KEYS_FILE)")
	fs.IntVar(&cfg.MaxLimit, "max-limit", cfg.MaxLimit, "largest page size (MAX_LIMIT)")
	fs.StringVar(&cfg.Auth, "auth", cfg.Auth, "on, or off to serve without keys (API_AUTH)")
	probe := fs.String("probe", "", "GET this path (/healthz, /readyz) on API_ADDR over loopback and exit 0 if it answers 200: the container health check")
	logLevel := fs.String("log-level", envOr("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	logFormat := fs.String("log-format", envOr("LOG_FORMAT", "text"), "text or json (LOG_FORMAT)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "api: unexpected arguments %q; configuration is by flags and environment\n", fs.Args())
		return 2
	}
	if *probe != "" {
		return svc.Probe(stderr, cfg.Addr, *probe)
	}
	log, err := svc.NewLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "api:", err)
		return 2
	}
	if addr := os.Getenv("PPROF_ADDR"); addr != "" {
		// Profiling is opt-in and meant for loopback: it exposes internals.
		// It listens on its own address, never on API_ADDR.
		go func() { log.Warn("pprof server stopped", "err", http.ListenAndServe(addr, nil)) }()
		log.Info("pprof enabled", "addr", addr)
	}
	srv, err := api.New(cfg, api.WithLogger(log))
	if err != nil {
		log.Error("api cannot start", "err", err)
		if errors.Is(err, api.ErrNoKeys) {
			return 2
		}
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := srv.Run(ctx); err != nil {
		log.Error("api stopped", "err", err)
		return 1
	}
	return 0
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
