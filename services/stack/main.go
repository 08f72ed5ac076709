// Command stack runs rowpipe in one process: an embedded NATS server with
// JetStream, the writer and the api, and with --ingest the ingester too. It
// is the product for one small machine and what `make run` starts.
//
//	stack [--dev] [--ingest FILE|URL [--every DURATION] [--dataset NAME] [--mode replace|append] [--index COLS]]
//
// Configuration is the environment of the services it runs (DATA_DIR,
// API_ADDR, API_KEYS, STREAM, ...) plus NATS_LISTEN, the NATS passwords
// (NATS_INGESTER_PASSWORD, NATS_WRITER_PASSWORD, NATS_ADMIN_PASSWORD; a
// NATS_LISTEN beyond loopback needs them, or NATS_AUTH=off) and the embedded
// server's sizing (see stack.Config). Exit status: 0 after SIGINT/SIGTERM,
// 1 when a component fails, 2 on a usage or configuration error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // served only when PPROF_ADDR is set
	"os"
	"os/signal"
	"syscall"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/svc"
	"github.com/rowpipe/rowpipe/services/stack/stack"
)

var version = "dev"

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	cfg, err := stack.ConfigFromEnv()
	if err != nil {
		fmt.Fprintf(os.Stderr, "stack: %v\n", err)
		return 2
	}
	fl := flag.NewFlagSet("stack", flag.ContinueOnError)
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "usage: stack [--dev] [--ingest FILE|URL [--every D]]\n\nRuns NATS, the writer and the api in one process (version %s).\n\n", version)
		fl.PrintDefaults()
	}
	fl.BoolVar(&cfg.Dev, "dev", false, "development mode: make an API key if none is set, print the URL, the key and a curl line")
	fl.StringVar(&cfg.Ingest, "ingest", "", "ingest this CSV file or URL in-process once the stack is up")
	fl.DurationVar(&cfg.Every, "every", 0, "with --ingest: sync again at this interval (unchanged sources are skipped)")
	fl.StringVar(&cfg.Ingester.Dataset, "dataset", cfg.Ingester.Dataset, "with --ingest: the dataset to fill (DATASET)")
	fl.Var(&cfg.Ingester.Index, "index", `with --ingest: fields to index for lookups by value, e.g. "Handle,Variant SKU" (INDEX)`)
	mode := fl.String("mode", string(schema.ModeReplace), "with --ingest: replace or append")
	fl.StringVar(&cfg.NATSListen, "nats-listen", cfg.NATSListen, "host:port of the embedded NATS server, or off (NATS_LISTEN)")
	fl.StringVar(&cfg.API.Addr, "api-addr", cfg.API.Addr, "host:port of the api (API_ADDR)")
	fl.StringVar(&cfg.Writer.DataDir, "data-dir", cfg.Writer.DataDir, "folder of the datasets and the NATS store (DATA_DIR)")
	logLevel := fl.String("log-level", envOr("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	logFormat := fl.String("log-format", envOr("LOG_FORMAT", "text"), "text or json (LOG_FORMAT)")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "stack: unexpected argument %q (did you mean --ingest %s?)\n", fl.Arg(0), fl.Arg(0))
		return 2
	}
	m, err := schema.ParseMode(*mode)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stack: --mode: %v\n", err)
		return 2
	}
	cfg.Ingester.Mode = m
	if cfg.Every > 0 && cfg.Ingest == "" {
		fmt.Fprintln(os.Stderr, "stack: --every needs --ingest FILE|URL")
		return 2
	}
	svc.RestrictUmask()
	if err := cfg.CheckNATSAuth(); err != nil {
		fmt.Fprintf(os.Stderr, "stack: %v\n", err)
		return 2
	}
	log, err := svc.NewLogger(os.Stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stack: %v\n", err)
		return 2
	}
	slog.SetDefault(log)

	if addr := os.Getenv("PPROF_ADDR"); addr != "" {
		// Profiling is opt-in and meant for loopback: it exposes internals.
		go func() { log.Warn("pprof server stopped", "err", http.ListenAndServe(addr, nil)) }()
		log.Info("pprof enabled", "addr", addr)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := stack.Start(ctx, cfg, log, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stack: %v\n", err)
		return 1
	}
	if err := s.Wait(); err != nil {
		log.Error("stack stopped", "err", err)
		return 1
	}
	log.Info("stack stopped")
	return 0
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
