package writer

import (
	"strings"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

func TestZeroConfigGetsTheDefaults(t *testing.T) {
	got := Config{}.withDefaults()
	if got != DefaultConfig() {
		t.Fatalf("Config{} with defaults = %+v, want %+v", got, DefaultConfig())
	}
	if got.Stream != schema.DefaultStream || got.StreamMaxBytes != schema.DefaultStreamMaxBytes || got.KeepGenerations != 2 || got.MaxDatasets != 256 || got.Fsync != "batch" {
		t.Errorf("defaults %+v", got)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
}

func TestValidateSaysWhichVariableToChange(t *testing.T) {
	c := DefaultConfig()
	c.KeepGenerations, c.MaxDatasets, c.Fsync, c.PullMaxBytes, c.StreamCompression = 0, -1, "sometimes", 100, "zstd"
	err := c.Validate()
	for _, want := range []string{"KEEP_GENERATIONS", "MAX_DATASETS", "FSYNC", "PULL_MAX_BYTES", "STREAM_COMPRESSION"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("New without a connection succeeded")
	}
}
