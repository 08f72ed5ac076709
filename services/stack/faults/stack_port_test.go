package faults

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"testing"

	"github.com/rowpipe/rowpipe/services/api/api"
	"github.com/rowpipe/rowpipe/services/stack/stack"
	"github.com/rowpipe/rowpipe/services/writer/writer"
)

// TestStackNATSListenPortZeroPicksAFreePort: NATS_LISTEN=127.0.0.1:0 must
// listen on a free port, as API_ADDR=127.0.0.1:0 does, not on nats-server's
// default 4222 (where another stack may be listening).
func TestStackNATSListenPortZeroPicksAFreePort(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := stack.Start(ctx, stack.Config{
		NATSListen: "127.0.0.1:0", NATSMaxMemory: 16 << 20, NATSMaxBufferedMsgs: 4096, NATSMaxBufferedSize: 4 << 20,
		Writer: writer.Config{DataDir: dir, MetricsAddr: "unused"},
		API:    api.Config{DataDir: dir, Addr: "127.0.0.1:0", Keys: api.Keys{testKey}},
	}, slog.New(slog.DiscardHandler), io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("stack.Start with NATS_LISTEN=127.0.0.1:0: %v", err)
	}
	defer func() { cancel(); s.Wait() }()
	u, err := url.Parse(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	if u.Port() == "4222" || u.Port() == "0" {
		t.Fatalf("NATS_LISTEN=127.0.0.1:0 listens on %s, want a free port", s.NATSURL())
	}
}
