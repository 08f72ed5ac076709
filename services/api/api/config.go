package api

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/rowpipe/rowpipe/services/api/internal/find"
)

// Config is everything the api reads from its environment. Fill it with
// ConfigFromEnv (envconfig, with the defaults below) or as a literal: New
// gives a zero field the default written in its `default` tag, except
// RateLimit and MaxConnsPerAddr, where 0 means no limit, and the key
// fields, which have none.
type Config struct {
	// DataDir is the writer's data directory; the api only reads it.
	DataDir string `envconfig:"DATA_DIR" default:"./data"`
	// Dataset is what /fetch-data serves when the request names none.
	Dataset string `envconfig:"DATASET" default:"products"`
	// Addr is where the api listens (host:port).
	Addr string `envconfig:"API_ADDR" default:":5000"`
	// MetricsAddr, when set, serves /metrics on an address of its own
	// (plain net/http) instead of on Addr, as the writer does.
	MetricsAddr string `envconfig:"METRICS_ADDR"`

	// Keys are accepted API keys (comma-separated in API_KEYS). They never
	// print: Keys formats as a count.
	Keys Keys `envconfig:"API_KEYS"`
	// KeysFile holds more keys, one a line ('#' starts a comment); it is
	// re-read every KeysReload, so a rotated Kubernetes Secret takes effect
	// without a restart.
	KeysFile   string        `envconfig:"API_KEYS_FILE"`
	KeysReload time.Duration `envconfig:"API_KEYS_RELOAD" default:"5s"`
	// Auth is "on" (the default: the api refuses to start without a key) or
	// "off" (every data endpoint open: for a trusted network only).
	Auth string `envconfig:"API_AUTH" default:"on"`

	// MaxLimit is the largest page a request may ask for.
	MaxLimit int `envconfig:"MAX_LIMIT" default:"1000"`
	// ScanLimit is the most records one filtered request reads to test
	// filters that no lookup index answers.
	ScanLimit uint64 `envconfig:"SCAN_LIMIT" default:"100000"`
	// RateLimit is the requests per second each key may make (token
	// bucket of RateBurst); 0 turns rate limiting off.
	RateLimit float64 `envconfig:"API_RATE_LIMIT" default:"2000"`
	RateBurst int     `envconfig:"API_RATE_BURST" default:"4000"`

	// MaxConns bounds concurrent connections (fiber's Concurrency); more
	// are refused with 503.
	MaxConns int `envconfig:"API_MAX_CONNS" default:"1024"`
	// MaxConnsPerAddr bounds the connections open at once from one client
	// address (an IPv4 address or an IPv6 /64); more are answered 429 and
	// closed. 0 turns the cap off (behind a proxy every client shares the
	// proxy's address: raise it to the proxy's pool, or turn it off).
	MaxConnsPerAddr int `envconfig:"API_MAX_CONNS_PER_ADDR" default:"128"`
	// MaxGzip bounds the answers gzipped at once (each holds about 1 MiB,
	// compressor and buffers, until its client has read it); an answer
	// asked for with gzip beyond it is sent uncompressed.
	MaxGzip int `envconfig:"API_MAX_GZIP" default:"16"`
	// ReadTimeout bounds reading a request; WriteTimeout bounds writing a
	// whole answer, so a stalled client releases its generation by then;
	// IdleTimeout closes idle keep-alive connections.
	ReadTimeout  time.Duration `envconfig:"API_READ_TIMEOUT" default:"10s"`
	WriteTimeout time.Duration `envconfig:"API_WRITE_TIMEOUT" default:"60s"`
	IdleTimeout  time.Duration `envconfig:"API_IDLE_TIMEOUT" default:"60s"`
	// ShutdownTimeout is how long Run lets running answers finish after its
	// context ends.
	ShutdownTimeout time.Duration `envconfig:"API_SHUTDOWN_TIMEOUT" default:"15s"`

	// CORSOrigins are the browser origins allowed to call the api
	// (comma-separated; "*" for any). Empty: no CORS headers.
	CORSOrigins []string `envconfig:"API_CORS_ORIGINS"`
}

// Auth switch values.
const (
	AuthOn  = "on"
	AuthOff = "off"
)

// ConfigFromEnv reads Config from the environment with its defaults.
func ConfigFromEnv() (Config, error) {
	var c Config
	if err := envconfig.Process("", &c); err != nil {
		return c, fmt.Errorf("api config: %w", err)
	}
	return c, nil
}

// withDefaults fills zero fields with their defaults.
func (c Config) withDefaults() Config {
	set := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	setD := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&c.DataDir, "./data")
	set(&c.Dataset, "products")
	set(&c.Addr, ":5000")
	set(&c.Auth, AuthOn)
	c.Auth = strings.ToLower(strings.TrimSpace(c.Auth))
	if c.MaxLimit == 0 {
		c.MaxLimit = 1000
	}
	if c.ScanLimit == 0 {
		c.ScanLimit = find.DefaultScanLimit
	}
	if c.RateLimit > 0 && c.RateBurst == 0 {
		c.RateBurst = max(1, int(2*c.RateLimit))
	}
	if c.MaxConns == 0 {
		c.MaxConns = 1024
	}
	if c.MaxGzip == 0 {
		c.MaxGzip = 16
	}
	setD(&c.KeysReload, 5*time.Second)
	setD(&c.ReadTimeout, 10*time.Second)
	setD(&c.WriteTimeout, 60*time.Second)
	setD(&c.IdleTimeout, 60*time.Second)
	setD(&c.ShutdownTimeout, 15*time.Second)
	return c
}

// validate checks what New cannot repair; each message names the variable.
func (c Config) validate() error {
	var errs []error
	if c.Auth != AuthOn && c.Auth != AuthOff {
		errs = append(errs, fmt.Errorf("API_AUTH must be %q or %q, got %q", AuthOn, AuthOff, c.Auth))
	}
	if c.MaxLimit < 1 {
		errs = append(errs, fmt.Errorf("MAX_LIMIT must be at least 1, got %d", c.MaxLimit))
	}
	if c.RateLimit < 0 || c.RateBurst < 0 {
		errs = append(errs, errors.New("API_RATE_LIMIT and API_RATE_BURST must not be negative"))
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("API_MAX_CONNS must be positive, got %d", c.MaxConns))
	}
	if c.MaxGzip < 0 {
		errs = append(errs, fmt.Errorf("API_MAX_GZIP must be positive, got %d", c.MaxGzip))
	}
	if c.MaxConnsPerAddr < 0 {
		errs = append(errs, fmt.Errorf("API_MAX_CONNS_PER_ADDR must not be negative (0 turns the cap off), got %d", c.MaxConnsPerAddr))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"API_KEYS_RELOAD", c.KeysReload}, {"API_READ_TIMEOUT", c.ReadTimeout}, {"API_WRITE_TIMEOUT", c.WriteTimeout}, {"API_IDLE_TIMEOUT", c.IdleTimeout}, {"API_SHUTDOWN_TIMEOUT", c.ShutdownTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %s", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}

// Keys is a list of API keys that never shows its contents when printed,
// logged or marshalled: only how many there are.
type Keys []string

// Decode implements envconfig.Decoder: comma-separated keys, spaces around
// each trimmed, empty ones dropped.
func (k *Keys) Decode(v string) error {
	*k = nil
	for key := range strings.SplitSeq(v, ",") {
		if key = strings.TrimSpace(key); key != "" {
			*k = append(*k, key)
		}
	}
	return nil
}

// String shows the number of keys, never a key.
func (k Keys) String() string { return fmt.Sprintf("[%d API keys, redacted]", len(k)) }

// GoString is String, so %#v does not print keys either.
func (k Keys) GoString() string { return k.String() }

// LogValue keeps keys out of slog output.
func (k Keys) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalText keeps keys out of JSON and text encodings.
func (k Keys) MarshalText() ([]byte, error) { return []byte(k.String()), nil }
