package main

import (
	"runtime/debug"
	"testing"
)

func TestUsageAndConfigurationErrorsExitWith2(t *testing.T) {
	t.Setenv("FSYNC", "sometimes")
	if code := run(nil); code != 2 {
		t.Errorf("FSYNC=sometimes: exit %d, want 2", code)
	}
	t.Setenv("FSYNC", "batch")
	if code := run([]string{"extra"}); code != 2 {
		t.Errorf("an argument: exit %d, want 2", code)
	}
	if code := run([]string{"--no-such-flag"}); code != 2 {
		t.Errorf("an unknown flag: exit %d, want 2", code)
	}
	t.Setenv("KEEP_GENERATIONS", "zero")
	if code := run(nil); code != 2 {
		t.Errorf("KEEP_GENERATIONS=zero: exit %d, want 2", code)
	}
	t.Setenv("KEEP_GENERATIONS", "2")
	for _, v := range []string{"-1", "12MiB"} {
		t.Setenv("WRITER_MEMORY_LIMIT", v)
		if code := run(nil); code != 2 {
			t.Errorf("WRITER_MEMORY_LIMIT=%s: exit %d, want 2", v, code)
		}
	}
}

func TestGOMEMLIMITWinsOverTheWritersMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOMEMLIMIT", "")
	if got, from := setMemoryLimit(defaultMemoryLimit); got != defaultMemoryLimit || from != "WRITER_MEMORY_LIMIT" || debug.SetMemoryLimit(-1) != defaultMemoryLimit {
		t.Errorf("without GOMEMLIMIT: %d from %s, runtime %d", got, from, debug.SetMemoryLimit(-1))
	}
	debug.SetMemoryLimit(64 << 20) // as the runtime does at start from GOMEMLIMIT=64MiB
	t.Setenv("GOMEMLIMIT", "64MiB")
	if got, from := setMemoryLimit(defaultMemoryLimit); got != 64<<20 || from != "GOMEMLIMIT" || debug.SetMemoryLimit(-1) != 64<<20 {
		t.Errorf("with GOMEMLIMIT=64MiB: %d from %s, runtime %d", got, from, debug.SetMemoryLimit(-1))
	}
}
