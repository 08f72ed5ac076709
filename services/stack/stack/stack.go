// Package stack runs the whole rowpipe pipeline in one process for one small
// machine: an embedded nats-server with JetStream (store under
// DATA_DIR/.nats), the writer and the api, and optionally the ingester.
// main.go is its wiring; tests drive Run the same way.
package stack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/rowpipe/rowpipe/pkg/svc"
	"github.com/rowpipe/rowpipe/services/api/api"
	"github.com/rowpipe/rowpipe/services/ingester/ingester"
	"github.com/rowpipe/rowpipe/services/stack/internal/broker"
	"github.com/rowpipe/rowpipe/services/stack/internal/devkey"
	"github.com/rowpipe/rowpipe/services/stack/natsauth"
	"github.com/rowpipe/rowpipe/services/writer/writer"
)

// ShutdownTimeout bounds how long the embedded NATS server may take to stop
// once the writer and the api have.
const ShutdownTimeout = 10 * time.Second

// Stack is a running pipeline. Create it with Start; it stops when the
// context given to Start ends, and Wait returns then.
type Stack struct {
	cfg    Config
	log    *slog.Logger
	broker *broker.Server
	api    *api.Server
	writer *writer.Writer
	auth   natsAuth

	done chan struct{}
	err  error
}

// Start brings up NATS, the writer and the api, and returns once the api
// listens. stdout receives the dev banner and the ingester's summaries.
func Start(ctx context.Context, cfg Config, log *slog.Logger, stdout, stderr io.Writer) (*Stack, error) {
	if os.Getenv("GOMEMLIMIT") == "" && cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	dataDir := cfg.Writer.DataDir
	if dataDir == "" {
		dataDir = writer.DefaultConfig().DataDir
	}
	cfg.API.DataDir = dataDir
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("DATA_DIR %s: %w", dataDir, err)
	}

	devKey := ""
	if cfg.Dev && len(cfg.API.Keys) == 0 && cfg.API.KeysFile == "" && cfg.API.Auth != api.AuthOff {
		key, _, err := devkey.LoadOrCreate(dataDir)
		if err != nil {
			return nil, err
		}
		cfg.API.Keys, devKey = api.Keys{key}, key
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// The api is built first: it refuses to start without a key, and that
	// is worth saying before anything else starts.
	apiSrv, err := api.New(cfg.API, api.WithLogger(log), api.WithRegisterer(reg), api.WithGatherer(reg))
	if err != nil {
		return nil, err
	}

	auth, err := cfg.natsAuth()
	if err != nil {
		return nil, err
	}
	if auth.warning != "" {
		log.Warn(auth.warning)
	}
	storeDir, err := natsStoreDir(dataDir, log)
	if err != nil {
		return nil, err
	}
	b, err := broker.Start(broker.Config{
		StoreDir:        storeDir,
		Users:           natsauth.Users(auth.passwords, cfg.stream()),
		Listen:          cfg.NATSListen,
		MaxMemory:       cfg.NATSMaxMemory,
		MaxStore:        cfg.storeLimit(),
		MaxBufferedMsgs: cfg.NATSMaxBufferedMsgs,
		MaxBufferedSize: cfg.NATSMaxBufferedSize,
	}, log)
	if err != nil {
		return nil, err
	}
	s := &Stack{cfg: cfg, log: log, broker: b, api: apiSrv, auth: auth, done: make(chan struct{})}
	fail := func(err error) (*Stack, error) {
		s.broker.Shutdown(context.Background())
		return nil, err
	}

	wnc, err := s.connect("rowpipe-writer", natsauth.Writer)
	if err != nil {
		return fail(err)
	}
	s.writer, err = writer.New(cfg.Writer, wnc, writer.WithLogger(log), writer.WithRegisterer(reg))
	if err != nil {
		wnc.Close()
		return fail(err)
	}
	addr, err := apiSrv.Listen()
	if err != nil {
		wnc.Close()
		return fail(fmt.Errorf("API_ADDR %s: %w", cfg.API.Addr, err))
	}

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer wnc.Close()
		if err := s.writer.Run(runCtx); err != nil && runCtx.Err() == nil {
			errs <- fmt.Errorf("writer: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := apiSrv.Run(runCtx); err != nil && runCtx.Err() == nil {
			errs <- fmt.Errorf("api: %w", err)
		}
	}()

	log.Info("rowpipe stack ready", "api", "http://"+hostForURL(addr), "nats", orOff(b.ClientURL()), "data_dir", dataDir)
	if cfg.Dev {
		printBanner(stdout, addr, devKey, len(cfg.API.Keys) > 0 || cfg.API.KeysFile != "", cfg.API.Dataset, b.ClientURL(), auth.passwords != nil)
	}
	if cfg.Ingest != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.ingest(runCtx, stdout, stderr)
		}()
	}

	go func() {
		select {
		case <-runCtx.Done():
		case err := <-errs:
			s.err = err
		}
		cancel()
		wg.Wait()
		sctx, stop := context.WithTimeout(context.Background(), ShutdownTimeout)
		s.broker.Shutdown(sctx)
		stop()
		close(s.done)
	}()
	return s, nil
}

// ingest runs the ingester in-process over its own in-process connection.
// A failed ingest is logged, not fatal: the stack keeps serving what it has.
func (s *Stack) ingest(ctx context.Context, stdout, stderr io.Writer) {
	nc, err := s.connect("rowpipe-ingester", natsauth.Ingester)
	if err != nil {
		s.log.Error("ingest: no connection", "err", err)
		return
	}
	defer nc.Close()
	cfg := s.cfg.Ingester
	cfg.Source, cfg.Every, cfg.Wait = s.cfg.Ingest, s.cfg.Every, true
	if cfg.Stdin == nil {
		cfg.Stdin = os.Stdin
	}
	if _, err := ingester.Run(ctx, cfg, nc, s.log.With("component", "ingester"), stdout, stderr); err != nil && ctx.Err() == nil {
		s.log.Error("ingest failed; the api keeps serving the data it has", "source", cfg.Source, "err", err)
	}
}

// connect opens an in-process connection as role when authentication is
// on: the stack's own writer and ingester have no more rights than
// external ones.
func (s *Stack) connect(name string, role natsauth.Role) (*nats.Conn, error) {
	if s.auth.passwords == nil {
		return s.broker.Connect(name)
	}
	return s.broker.Connect(name, nats.UserInfo(string(role), s.auth.passwords[role]), nats.CustomInboxPrefix(svc.InboxPrefix(string(role))))
}

// APIAddr is where the api listens.
func (s *Stack) APIAddr() net.Addr { return s.api.Addr() }

// NATSURL is where external NATS clients connect ("" when NATS_LISTEN=off).
func (s *Stack) NATSURL() string { return s.broker.ClientURL() }

// Wait blocks until the stack has stopped and returns why, nil after a
// clean shutdown.
func (s *Stack) Wait() error {
	<-s.done
	return s.err
}

// hostForURL turns a listen address into something a person can paste:
// a wildcard host becomes 127.0.0.1.
func hostForURL(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func orOff(url string) string {
	if url == "" {
		return "off"
	}
	return url
}
