package stack

import (
	"fmt"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/api/api"
	"github.com/rowpipe/rowpipe/services/ingester/ingester"
	"github.com/rowpipe/rowpipe/services/writer/writer"
)

// Config is the stack's own settings, read from the environment, plus the
// configurations of the services it runs. Each service reads its variables
// itself (DATA_DIR, STREAM, API_KEYS ...): one default in one place.
type Config struct {
	// NATSListen is where the embedded NATS serves clients such as
	// bin/ingester and the nats CLI; "off" keeps it in-process only.
	NATSListen string `envconfig:"NATS_LISTEN" default:"127.0.0.1:4222"`
	// NATSAuth is "" (authentication when a password is set, and required
	// when NATS_LISTEN is not loopback), "on" (always) or "off" (never,
	// with a warning: the only way to serve NATS beyond loopback without
	// credentials).
	NATSAuth string `envconfig:"NATS_AUTH"`
	// The passwords of the NATS users external clients log in as (package
	// natsauth: what each may do). A role without one gets a random
	// password that only the stack's in-process clients know.
	NATSIngesterPassword string `envconfig:"NATS_INGESTER_PASSWORD"`
	NATSWriterPassword   string `envconfig:"NATS_WRITER_PASSWORD"`
	NATSAdminPassword    string `envconfig:"NATS_ADMIN_PASSWORD"`
	// NATSMaxStore bounds JetStream's file store; 0 sizes it from
	// STREAM_MAX_BYTES plus room for the state bucket.
	NATSMaxStore int64 `envconfig:"NATS_MAX_STORE"`
	// NATSMaxMemory bounds JetStream's memory store (rowpipe uses none).
	NATSMaxMemory int64 `envconfig:"NATS_MAX_MEMORY" default:"16777216"`
	// NATSMaxBufferedMsgs and NATSMaxBufferedSize bound what a stream holds
	// in memory while it writes to disk: the difference between ~300 MB and
	// ~70 MB of RSS for the broker during a 1M-row ingest.
	NATSMaxBufferedMsgs int   `envconfig:"NATS_MAX_BUFFERED_MSGS" default:"4096"`
	NATSMaxBufferedSize int64 `envconfig:"NATS_MAX_BUFFERED_SIZE" default:"4194304"`
	// MemoryLimit is the Go runtime's soft memory limit when GOMEMLIMIT is
	// not set: the garbage collector works harder near it instead of
	// letting the heap grow, which keeps one process inside a small box.
	MemoryLimit int64 `envconfig:"STACK_MEMORY_LIMIT" default:"67108864"`

	// Dev (--dev) generates an API key when none is configured, keeps it
	// in DATA_DIR and prints it with the URL and a curl line.
	Dev bool `ignored:"true"`
	// Ingest (--ingest FILE|URL) runs the ingester in-process once the
	// writer is up; Every (--every) repeats it.
	Ingest string        `ignored:"true"`
	Every  time.Duration `ignored:"true"`

	Writer   writer.Config   `ignored:"true"`
	API      api.Config      `ignored:"true"`
	Ingester ingester.Config `ignored:"true"`
}

// ConfigFromEnv reads the stack's and every service's configuration from
// the environment.
func ConfigFromEnv() (Config, error) {
	var c Config
	if err := envconfig.Process("", &c); err != nil {
		return c, fmt.Errorf("stack config: %w", err)
	}
	c.Writer = writer.DefaultConfig()
	if err := envconfig.Process("", &c.Writer); err != nil {
		return c, fmt.Errorf("writer config: %w", err)
	}
	var err error
	if c.API, err = api.ConfigFromEnv(); err != nil {
		return c, err
	}
	if err := envconfig.Process("", &c.Ingester); err != nil {
		return c, fmt.Errorf("ingester config: %w", err)
	}
	return c, nil
}

// storeLimit is the JetStream file store bound: the stream's own limit plus
// room for the state bucket and the store's bookkeeping.
func (c Config) storeLimit() int64 {
	if c.NATSMaxStore > 0 {
		return c.NATSMaxStore
	}
	streamMax := c.Writer.StreamMaxBytes
	if streamMax <= 0 {
		streamMax = schema.DefaultStreamMaxBytes
	}
	return streamMax + 256<<20
}

// stream is the rows stream's name (STREAM).
func (c Config) stream() string {
	if c.Writer.Stream != "" {
		return c.Writer.Stream
	}
	return schema.DefaultStream
}
