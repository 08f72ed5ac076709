package writer

import (
	"errors"
	"fmt"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/generation"
)

// Config is the writer's configuration, filled by envconfig from the
// variables named in the tags. DefaultConfig holds every default; New
// fills the fields left at their zero value from it, so an embedder sets
// only what it needs (Config{DataDir: dir}).
type Config struct {
	// NATSURL and the credentials (a NATS_CREDS file, or NATS_USER and
	// NATS_PASSWORD) are used by the writer's main only: New takes a
	// connection.
	NATSURL      string `envconfig:"NATS_URL"`
	NATSCreds    string `envconfig:"NATS_CREDS"`
	NATSUser     string `envconfig:"NATS_USER"`
	NATSPassword string `envconfig:"NATS_PASSWORD"`

	// Stream is the rows stream (default ROWS); the dataset states go to
	// the key-value bucket <Stream>_STATE.
	Stream string `envconfig:"STREAM"`
	// DataDir holds one folder per dataset, the checkpoint and the lock
	// (default ./data).
	DataDir string `envconfig:"DATA_DIR"`
	// KeepGenerations is how many complete generations of a dataset stay
	// on disk, the current one included (default 2). Stream messages that
	// only older generations needed are purged.
	KeepGenerations int `envconfig:"KEEP_GENERATIONS"`
	// MaxDatasets is the most datasets the writer keeps (default 256): a
	// begin for one more is refused (too_many_datasets). Each costs a
	// folder, a state file and open descriptors for as long as it exists.
	MaxDatasets int `envconfig:"MAX_DATASETS"`
	// StreamReplicas and StreamMaxBytes configure the stream and the
	// bucket when the writer creates or updates them (defaults 1 and
	// schema.DefaultStreamMaxBytes).
	StreamReplicas int   `envconfig:"STREAM_REPLICAS"`
	StreamMaxBytes int64 `envconfig:"STREAM_MAX_BYTES"`
	// StreamCompression is how the stream stores messages: none or s2
	// (schema.CompressionNone, CompressionS2); unset keeps an existing
	// stream's and gives a new one schema.DefaultCompression.
	StreamCompression string `envconfig:"STREAM_COMPRESSION"`
	// Fsync is batch (default: data and index synced before each header
	// rewrite), always (the header too) or off (never: survives a crash of
	// the process, not of the machine).
	Fsync string `envconfig:"FSYNC"`
	// MetricsAddr is where main serves /healthz and /metrics (default :9091).
	MetricsAddr string `envconfig:"METRICS_ADDR"`

	// BatchMax is the most messages applied in one group commit (default 500).
	BatchMax int `envconfig:"BATCH_MAX"`
	// PullMaxBytes bounds each pull request of the stream consumer, which
	// also asks for at most BatchMax messages (default 2 MiB).
	PullMaxBytes int `envconfig:"PULL_MAX_BYTES"`
	// BatchBytes bounds the bytes of messages handed over by the consumer
	// and not yet applied (default 2 MiB). With PullMaxBytes it bounds the
	// writer's message memory, whatever the size of a dataset.
	BatchBytes int `envconfig:"BATCH_BYTES"`
	// CheckpointInterval is how often the checkpoint is saved (default 1s).
	// A restart replays at most this much of the stream, and skips it.
	CheckpointInterval time.Duration `envconfig:"CHECKPOINT_INTERVAL"`

	// Rebuild (the --rebuild flag, never an environment variable) removes
	// the generations, CURRENT and state of every dataset and the
	// checkpoint, then rebuilds them from the stream.
	Rebuild bool `ignored:"true"`

	// LogLevel (debug, info, warn, error; default info) and LogFormat
	// (text or json; default text) are used by main.
	LogLevel  string `envconfig:"LOG_LEVEL"`
	LogFormat string `envconfig:"LOG_FORMAT"`
}

// DefaultConfig is the configuration with every default: safe on a small
// machine.
func DefaultConfig() Config {
	return Config{
		NATSURL:            "nats://127.0.0.1:4222",
		Stream:             schema.DefaultStream,
		DataDir:            "./data",
		KeepGenerations:    2,
		MaxDatasets:        256,
		StreamReplicas:     1,
		StreamMaxBytes:     schema.DefaultStreamMaxBytes,
		Fsync:              "batch",
		MetricsAddr:        ":9091",
		BatchMax:           500,
		PullMaxBytes:       2 << 20,
		BatchBytes:         2 << 20,
		CheckpointInterval: time.Second,
		LogLevel:           "info",
		LogFormat:          "text",
	}
}

// withDefaults fills the zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	set(&c.NATSURL, d.NATSURL)
	set(&c.Stream, d.Stream)
	set(&c.DataDir, d.DataDir)
	set(&c.Fsync, d.Fsync)
	set(&c.MetricsAddr, d.MetricsAddr)
	set(&c.LogLevel, d.LogLevel)
	set(&c.LogFormat, d.LogFormat)
	if c.KeepGenerations == 0 {
		c.KeepGenerations = d.KeepGenerations
	}
	if c.MaxDatasets == 0 {
		c.MaxDatasets = d.MaxDatasets
	}
	if c.StreamReplicas == 0 {
		c.StreamReplicas = d.StreamReplicas
	}
	if c.StreamMaxBytes == 0 {
		c.StreamMaxBytes = d.StreamMaxBytes
	}
	if c.BatchMax == 0 {
		c.BatchMax = d.BatchMax
	}
	if c.PullMaxBytes == 0 {
		c.PullMaxBytes = d.PullMaxBytes
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = d.BatchBytes
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = d.CheckpointInterval
	}
	return c
}

// Validate checks a configuration (after defaults); the error says which
// variable to change.
func (c Config) Validate() error {
	var errs []error
	if c.Stream == "" {
		errs = append(errs, errors.New("STREAM is empty"))
	}
	if c.KeepGenerations < 1 {
		errs = append(errs, fmt.Errorf("KEEP_GENERATIONS=%d: keep at least 1 (the current generation)", c.KeepGenerations))
	}
	if c.MaxDatasets < 1 {
		errs = append(errs, fmt.Errorf("MAX_DATASETS=%d: allow at least 1", c.MaxDatasets))
	}
	if c.StreamReplicas < 1 || c.StreamReplicas > 5 {
		errs = append(errs, fmt.Errorf("STREAM_REPLICAS=%d: use 1 to 5 (3 on a NATS cluster)", c.StreamReplicas))
	}
	if c.StreamMaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("STREAM_MAX_BYTES=%d: at least 1 MiB", c.StreamMaxBytes))
	}
	if err := schema.ValidateCompression(c.StreamCompression); err != nil {
		errs = append(errs, err)
	}
	if _, err := generation.ParsePolicy(c.Fsync); err != nil {
		errs = append(errs, err)
	}
	if c.BatchMax < 1 || c.BatchMax > 100000 {
		errs = append(errs, fmt.Errorf("BATCH_MAX=%d: use 1 to 100000", c.BatchMax))
	}
	if c.PullMaxBytes < 2*schema.MaxMessageBytes {
		errs = append(errs, fmt.Errorf("PULL_MAX_BYTES=%d: at least %d (two of the largest messages)", c.PullMaxBytes, 2*schema.MaxMessageBytes))
	}
	if c.BatchBytes < 64<<10 {
		errs = append(errs, fmt.Errorf("BATCH_BYTES=%d: at least 64 KiB", c.BatchBytes))
	}
	if c.CheckpointInterval < 0 {
		errs = append(errs, fmt.Errorf("CHECKPOINT_INTERVAL=%s: must not be negative", c.CheckpointInterval))
	}
	return errors.Join(errs...)
}
