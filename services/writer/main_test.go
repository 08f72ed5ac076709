package main

import (
	"strings"
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
}

func TestRedactHidesCredentials(t *testing.T) {
	got := redact("nats://user:s3cret@10.0.0.1:4222,nats://token@host:4222,nats://plain:4222")
	if strings.Contains(got, "s3cret") || strings.Contains(got, "token@") || !strings.Contains(got, "nats://plain:4222") {
		t.Errorf("redact = %q", got)
	}
}
