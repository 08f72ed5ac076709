package ingester

import (
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/ingester/internal/csvsource"
	"github.com/rowpipe/rowpipe/services/ingester/internal/publish"
)

// Config is everything an ingest needs. The fields with an envconfig tag are
// filled from the environment (envconfig.Process("", &cfg)); the others are
// flags of the command (main.go) or set by the embedding program (stack).
// Defaults (called by Validate) fills the zero values that have a default,
// so a Config built by hand needs only Source.
type Config struct {
	// NATSURL and the credentials (a NATS_CREDS file, or NATS_USER and
	// NATS_PASSWORD) are used by main.go to connect; Run uses the
	// connection it is given.
	NATSURL      string `envconfig:"NATS_URL" default:"nats://127.0.0.1:4222"`
	NATSCreds    string `envconfig:"NATS_CREDS"`
	NATSUser     string `envconfig:"NATS_USER"`
	NATSPassword string `envconfig:"NATS_PASSWORD"`

	// Stream is the JetStream stream of all syncs (default
	// schema.DefaultStream), bound on start with schema.BindStream, and its
	// state bucket. An existing stream is used as it is: its configuration
	// is the writer's (or the operator's) to change. StreamMaxBytes and
	// StreamReplicas (and StreamCompression) apply only to a stream the
	// ingester creates, when it starts before any writer
	// (schema.DefaultStreamMaxBytes, 1 and schema.DefaultCompression when
	// unset).
	Stream            string `envconfig:"STREAM"`
	StreamReplicas    int    `envconfig:"STREAM_REPLICAS"`
	StreamMaxBytes    int64  `envconfig:"STREAM_MAX_BYTES"`
	StreamCompression string `envconfig:"STREAM_COMPRESSION"`

	// Dataset receives the rows (--dataset, default "products"); it must
	// pass schema.ValidateDataset. It is not used for a folder source,
	// whose files each name their dataset (Run logs a warning if it is
	// set); the command refuses --dataset with a folder.
	Dataset string `envconfig:"DATASET"`

	// PublishWindow is the most messages unacknowledged at once: the
	// memory bound of publishing (default 500; the server acks every half
	// of it, see package publish). PublishGiveUp is how long failing
	// publishes (and the first connection) are retried before the ingest
	// fails with exit status 1 (--give-up, default 1m). PublishAckTimeout
	// (default 10s) gives up a batch whose ack does not come: what the
	// stream lacks is published again.
	PublishWindow     int           `envconfig:"PUBLISH_WINDOW"`
	PublishGiveUp     time.Duration `envconfig:"PUBLISH_GIVE_UP"`
	PublishAckTimeout time.Duration `envconfig:"PUBLISH_ACK_TIMEOUT"`

	// Progress is how progress is shown: "auto" (the default: a bar when
	// stderr is a terminal, log lines otherwise), "bar", "log" or "off".
	Progress string `envconfig:"PROGRESS"`

	// WaitTimeout bounds --wait once the sync is published; 0 waits as
	// long as it takes (--wait-timeout).
	WaitTimeout time.Duration `envconfig:"WAIT_TIMEOUT" default:"10m"`

	// LogLevel (debug|info|warn|error) and LogFormat (text|json) are used
	// by main.go to build the logger.
	LogLevel  string `envconfig:"LOG_LEVEL" default:"info"`
	LogFormat string `envconfig:"LOG_FORMAT" default:"text"`

	// Source is what to ingest: a file path, an http(s) URL, "-" for
	// Stdin, or a folder, whose CSV files each sync to their own dataset
	// (see Run).
	Source string `ignored:"true"`
	// Mode is replace (the default) or append (--mode).
	Mode schema.Mode `ignored:"true"`
	// Wait returns only once the writer has committed or refused the sync
	// (--wait).
	Wait bool `ignored:"true"`
	// Strict turns any rejected row into an aborted sync (--strict).
	Strict bool `ignored:"true"`
	// Index names the fields the writer builds lookup indexes of
	// (--index or INDEX, e.g. "Handle,Variant SKU"); each must be a field
	// of the source, else the source is refused. It travels in the begin,
	// so a replay or writer --rebuild builds the same.
	Index FieldList `envconfig:"INDEX"`
	// Every > 0 syncs again every Every until the context ends (--every),
	// skipping unchanged sources; a folder is listed again each time.
	Every time.Duration `ignored:"true"`
	// Encoding of the source (--encoding): "" or utf-8, windows-1252,
	// latin-1, or another WHATWG encoding name.
	Encoding string `ignored:"true"`
	// Delimiter (--delimiter): "" or "auto" detects , ; tab or | from the
	// header line.
	Delimiter string `ignored:"true"`

	// Stdin is read for the source "-"; nil refuses "-".
	Stdin io.Reader `ignored:"true"`
	// HTTPClient fetches URL sources; nil means csvsource's default client
	// (standard transport, one minute at most for the response headers).
	HTTPClient *http.Client `ignored:"true"`
}

// Defaults sets every zero field that has a default to it (Dataset only
// when Source is not a folder). Each default has one owner: schema for the
// stream, package publish for the window.
func (c *Config) Defaults() {
	if c.Stream == "" {
		c.Stream = schema.DefaultStream
	}
	if c.StreamReplicas == 0 {
		c.StreamReplicas = 1
	}
	if c.Dataset == "" && !IsFolder(c.Source) {
		c.Dataset = "products"
	}
	if c.Mode == "" {
		c.Mode = schema.ModeReplace
	}
	if c.PublishWindow == 0 {
		c.PublishWindow = publish.DefaultWindow
	}
	if c.PublishGiveUp == 0 {
		c.PublishGiveUp = publish.DefaultGiveUp
	}
	if c.PublishAckTimeout == 0 {
		c.PublishAckTimeout = publish.DefaultAckTimeout
	}
	if c.Progress == "" {
		c.Progress = "auto"
	}
}

// Validate fills the defaults (Defaults) and checks c. Every error wraps
// ErrUsage and names the setting to change.
func (c *Config) Validate() error {
	c.Defaults()
	switch {
	case c.Source == "":
		return usagef("no source: give a file, an http(s) URL, or - for standard input")
	case c.StreamReplicas < 1 || c.StreamReplicas > 5:
		return usagef("STREAM_REPLICAS=%d: want 1 to 5", c.StreamReplicas)
	case c.StreamMaxBytes < 0:
		return usagef("STREAM_MAX_BYTES=%d: want a positive size in bytes", c.StreamMaxBytes)
	case c.PublishWindow < 1 || c.PublishWindow > 65536:
		return usagef("PUBLISH_WINDOW=%d: want 1 to 65536 messages", c.PublishWindow)
	case c.PublishGiveUp < 0 || c.PublishAckTimeout < 0 || c.WaitTimeout < 0 || c.Every < 0:
		return usagef("durations must not be negative")
	case c.Every > 0 && c.Every < time.Second:
		return usagef("--every %s: want at least 1s", c.Every)
	case c.Every > 0 && c.Source == "-":
		return usagef("--every cannot re-read standard input; give a file or a URL")
	}
	if err := schema.ValidateDataset(c.Dataset); err != nil && !IsFolder(c.Source) {
		return usagef("--dataset: %v", err)
	}
	if err := schema.ValidateCompression(c.StreamCompression); err != nil {
		return usagef("%v", err)
	}
	if _, err := schema.ParseMode(string(c.Mode)); err != nil {
		return usagef("--mode: %v", err)
	}
	if _, err := csvsource.LookupEncoding(c.Encoding); err != nil {
		return usagef("--encoding: %v", err)
	}
	if _, err := csvsource.ParseDelimiter(c.Delimiter); err != nil {
		return usagef("--delimiter: %v", err)
	}
	switch c.Progress {
	case "auto", "bar", "log", "off":
	default:
		return usagef("PROGRESS=%q: want auto, bar, log or off", c.Progress)
	}
	return nil
}

func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUsage}, args...)...)
}

// FieldList is a list of field names written as one CSV record
// (schema.ParseFieldList): "Handle,Variant SKU", or "\"Weight, kg\",Title"
// for a name holding a comma. It is a flag.Value and an envconfig.Decoder.
type FieldList []string

// Set parses v (flag.Value); "" is no field.
func (l *FieldList) Set(v string) error {
	if v == "" {
		*l = nil
		return nil
	}
	names, err := schema.ParseFieldList(v)
	if err != nil {
		return err
	}
	*l = names
	return nil
}

// Decode parses v (envconfig.Decoder).
func (l *FieldList) Decode(v string) error { return l.Set(v) }

// String writes the list back as one CSV record.
func (l *FieldList) String() string {
	if l == nil || len(*l) == 0 {
		return ""
	}
	var b strings.Builder
	w := csv.NewWriter(&b)
	w.Write(*l)
	w.Flush()
	return strings.TrimSuffix(b.String(), "\n")
}
