// Command ingester streams a CSV export into the rowpipe JetStream stream.
//
//	ingester [flags] FILE | URL | - | FOLDER
//
// A FOLDER's *.csv files each sync to the dataset named after the file.
// Configuration comes from the environment (NATS_URL, NATS_CREDS, STREAM,
// DATASET, STREAM_REPLICAS, STREAM_MAX_BYTES, PUBLISH_WINDOW,
// PUBLISH_GIVE_UP, PUBLISH_ACK_TIMEOUT, WAIT_TIMEOUT, PROGRESS, LOG_LEVEL,
// LOG_FORMAT) and flags, which win. GOMAXPROCS defaults to 1
// (svc.PipelineProcs says why). Exit status: 0 done, 1 runtime failure,
// 2 usage, 3 input refused. This file is wiring only: the behaviour is in
// package ingester.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/svc"
	"github.com/rowpipe/rowpipe/services/ingester/ingester"
)

// version is the build's version, set by the Makefile and the image build
// with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	svc.PipelineProcs() // one P unless GOMAXPROCS is set: see its doc
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usageText = `usage: ingester [flags] FILE | URL | - | FOLDER

Streams a CSV export (a file, an http(s) URL, or - for standard input) into
the rowpipe stream as one sync of a dataset. Given a FOLDER, syncs each
*.csv file directly in it to the dataset named after the file
(inbox/orders.csv -> orders; --dataset cannot be used), one sync per file;
with --every, the folder is listed again at each interval.

Exit status: 0 done, 1 runtime failure (NATS unreachable, the writer refused
the sync, ...), 2 usage error, 3 input refused (missing, empty or header-less
source; with --strict, any rejected row; a file of a FOLDER skipped for its
name). For a FOLDER, the worst of its files: 3, then 1, then 0.

Flags:
`

const usageLine = "usage: ingester [flags] FILE | URL | - | FOLDER   (ingester -h for the flags)"

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var cfg ingester.Config
	if err := envconfig.Process("", &cfg); err != nil {
		fmt.Fprintf(stderr, "ingester: environment: %v\n", err)
		return ingester.ExitUsage
	}
	cfg.Stdin = stdin
	envDataset := cfg.Dataset
	cfg.Defaults() // so that -h shows them

	fs := flag.NewFlagSet("ingester", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "ingester %s\n\n%s", version, usageText)
		fs.PrintDefaults()
	}
	showVersion := fs.Bool("version", false, "print the version and exit")
	mode := string(schema.ModeReplace)
	fs.StringVar(&cfg.Dataset, "dataset", cfg.Dataset, "dataset to sync into (env DATASET); "+schema.DatasetPattern+"; not with a FOLDER, whose files name their datasets")
	fs.StringVar(&mode, "mode", mode, "replace: a new generation replaces the current one once complete; append: add the rows to the current generation")
	fs.BoolVar(&cfg.Wait, "wait", false, "return only once the writer has committed (exit 0) or refused the sync, and print the summary")
	fs.DurationVar(&cfg.WaitTimeout, "wait-timeout", cfg.WaitTimeout, "with --wait, how long to wait for the writer once the sync is published; 0 waits forever (env WAIT_TIMEOUT)")
	fs.BoolVar(&cfg.Strict, "strict", false, "abort the whole sync (exit 3) if any row is rejected; the current generation stays")
	fs.Var(&cfg.Index, "index", `fields to index for lookups by value (env INDEX): comma-separated as one CSV record, e.g. "Handle,Variant SKU" (quote a name holding a comma); each must be a header name`)
	fs.DurationVar(&cfg.Every, "every", 0, "sync again every DURATION (e.g. 15m) until SIGTERM, skipping unchanged sources; a FOLDER is listed again each time")
	fs.StringVar(&cfg.Encoding, "encoding", "utf-8", "text encoding of the source: utf-8, windows-1252, latin-1, or another WHATWG name")
	fs.StringVar(&cfg.Delimiter, "delimiter", "auto", "field delimiter: auto (detects , ; tab | from the header line), or the character, or tab")
	fs.DurationVar(&cfg.PublishGiveUp, "give-up", cfg.PublishGiveUp, "how long to retry connecting and publishing before failing with exit 1 (env PUBLISH_GIVE_UP)")
	fs.StringVar(&cfg.Stream, "stream", cfg.Stream, "JetStream stream (env STREAM)")
	fs.StringVar(&cfg.NATSURL, "nats-url", cfg.NATSURL, "NATS server URL(s), comma-separated (env NATS_URL)")
	fs.StringVar(&cfg.NATSCreds, "nats-creds", cfg.NATSCreds, "NATS credentials file (env NATS_CREDS)")
	fs.StringVar(&cfg.Progress, "progress", cfg.Progress, "auto (a bar on a terminal, log lines otherwise), bar, log or off (env PROGRESS)")

	sources, code := parseInterspersed(fs, args)
	if code >= 0 {
		return code
	}
	if *showVersion {
		fmt.Fprintf(stdout, "ingester %s\n", version)
		return ingester.ExitOK
	}
	if len(sources) != 1 {
		if len(sources) == 0 {
			fmt.Fprintln(stderr, "ingester: no source: give a file, an http(s) URL, - for standard input, or a folder")
		} else {
			fmt.Fprintf(stderr, "ingester: one source at a time, got %d: %s\n", len(sources), strings.Join(sources, " "))
		}
		fmt.Fprintln(stderr, usageLine)
		return ingester.ExitUsage
	}
	cfg.Source = sources[0]
	cfg.Mode = schema.Mode(mode)
	if ingester.IsFolder(cfg.Source) {
		datasetFlag := false
		fs.Visit(func(f *flag.Flag) { datasetFlag = datasetFlag || f.Name == "dataset" })
		if datasetFlag {
			fmt.Fprintf(stderr, "ingester: --dataset cannot be used with the folder %s: each file's name gives its dataset (orders.csv -> orders)\n", cfg.Source)
			fmt.Fprintln(stderr, usageLine)
			return ingester.ExitUsage
		}
		cfg.Dataset = envDataset // "" unless DATASET is set, which Run warns is not used
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "ingester: %v\n", err)
		return ingester.ExitCode(err)
	}
	if _, err := (svc.NATSAuth{Creds: cfg.NATSCreds, User: cfg.NATSUser, Password: cfg.NATSPassword}).Options(); err != nil {
		fmt.Fprintf(stderr, "ingester: %v\n", err)
		return ingester.ExitUsage
	}
	// A missing or empty file is refused at once, before waiting for NATS.
	if err := ingester.CheckSource(cfg); err != nil {
		fmt.Fprintf(stderr, "ingester: %v\n", err)
		return ingester.ExitCode(err)
	}

	log, err := svc.NewLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		fmt.Fprintf(stderr, "ingester: %v\n", err)
		return ingester.ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
	}()

	nc, err := connect(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "ingester: %v\n", err)
		return ingester.ExitFailure
	}
	defer nc.Close()

	_, err = ingester.Run(ctx, cfg, nc, log, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "ingester: %v\n", err)
	}
	return ingester.ExitCode(err)
}

// parseInterspersed parses flags wherever they are among the sources
// ("ingester file.csv --wait" works too); after "--" everything is a
// source. code is -1 to go on, or the exit status.
func parseInterspersed(fs *flag.FlagSet, args []string) (sources []string, code int) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, ingester.ExitOK
			}
			return nil, ingester.ExitUsage // the flag package has said what is wrong
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return sources, -1
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(sources, rest...), -1
		}
		sources = append(sources, rest[0])
		args = rest[1:]
	}
}

// connect connects to NATS, retrying for cfg.PublishGiveUp. The connection
// reconnects forever afterwards, and never buffers publishes while it
// reconnects: package publish retries them itself, in order.
func connect(ctx context.Context, cfg ingester.Config, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("rowpipe-ingester"),
		nats.Timeout(5 * time.Second),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS connection lost; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted())
		}),
	}
	auth, err := svc.NATSAuth{Creds: cfg.NATSCreds, User: cfg.NATSUser, Password: cfg.NATSPassword}.Options()
	if err != nil {
		return nil, err
	}
	opts = append(opts, auth...)
	where := svc.RedactURLs(cfg.NATSURL)
	deadline := time.Now().Add(cfg.PublishGiveUp)
	backoff := 250 * time.Millisecond
	for {
		nc, err := nats.Connect(cfg.NATSURL, opts...)
		if err == nil {
			return nc, nil
		}
		if time.Now().Add(backoff).After(deadline) {
			return nil, fmt.Errorf("NATS at %s unreachable after %s (--give-up): %w", where, cfg.PublishGiveUp, err)
		}
		log.Warn("NATS not reachable yet; retrying", "url", where, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting to NATS at %s: %w", where, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
