// Package broker runs the embedded nats-server with JetStream that the stack
// process carries: sized for one small machine, its store under DATA_DIR.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Off as the listen address keeps the server in-process only.
const Off = "off"

// Config sizes the embedded server. The defaults (see stack.Config) are for a
// 512 MB box; every one can be overridden.
type Config struct {
	// StoreDir holds the JetStream file store.
	StoreDir string
	// Listen is host:port for NATS clients (bin/ingester, the nats CLI), or Off.
	Listen string
	// MaxMemory bounds JetStream's memory storage (streams with memory storage).
	MaxMemory int64
	// MaxStore bounds JetStream's file storage.
	MaxStore int64
	// MaxBufferedMsgs and MaxBufferedSize bound the messages a stream buffers
	// in memory while it writes them out: the default (no bound) is what
	// makes a stock nats-server peak near 300 MB moving 1M rows.
	MaxBufferedMsgs int
	MaxBufferedSize int64
	// Users, when any, turn authentication on: every client, in-process
	// ones too, must log in as one of them. None: anyone who reaches
	// Listen may do anything.
	Users []*server.User
}

// Server is a running embedded nats-server.
type Server struct {
	srv *server.Server
}

// Start runs the server and waits until it accepts connections.
func Start(cfg Config, log *slog.Logger) (*Server, error) {
	opts := &server.Options{
		ServerName:            "rowpipe-stack",
		JetStream:             true,
		StoreDir:              cfg.StoreDir,
		JetStreamMaxMemory:    cfg.MaxMemory,
		JetStreamMaxStore:     cfg.MaxStore,
		StreamMaxBufferedMsgs: cfg.MaxBufferedMsgs,
		StreamMaxBufferedSize: cfg.MaxBufferedSize,
		NoSigs:                true, // the stack owns signal handling
		Users:                 cfg.Users,
	}
	if cfg.Listen == Off {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("NATS_LISTEN %q: want host:port or %q: %w", cfg.Listen, Off, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("NATS_LISTEN %q: port must be 0..65535", cfg.Listen)
		}
		if p == 0 {
			p = server.RANDOM_PORT // nats-server reads 0 as its default port, 4222
		}
		opts.Host, opts.Port = host, p
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	srv.SetLoggerV2(&slogAdapter{log: log.With("component", "nats")}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded NATS: not ready within 30 s (is the store folder writable, the port free?)")
	}
	return &Server{srv: srv}, nil
}

// ClientURL is where external clients connect, empty when listening is off.
func (s *Server) ClientURL() string {
	if s.srv.Addr() == nil {
		return ""
	}
	return s.srv.ClientURL()
}

// Connect opens an in-process client connection (no socket, no port) with
// the given options, such as the user it logs in as.
func (s *Server) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.srv), nats.Name(name), nats.MaxReconnects(-1)}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("in-process NATS connection: %w", err)
	}
	return nc, nil
}

// Shutdown stops the server, flushing the JetStream store, within ctx.
func (s *Server) Shutdown(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// slogAdapter routes nats-server's log lines into the process's slog logger.
// The server's notices (its start-up banner, one line per subsystem) go to
// debug: the stack logs what a person needs in its own "ready" line.
type slogAdapter struct{ log *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.log.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Errorf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }
