package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRunRefusesToStartWithoutAKey(t *testing.T) {
	t.Setenv("API_KEYS", "")
	t.Setenv("API_KEYS_FILE", "")
	t.Setenv("API_AUTH", "")
	t.Setenv("DATA_DIR", t.TempDir())
	var stderr bytes.Buffer
	if code := run(nil, &stderr); code != 2 || !strings.Contains(stderr.String(), "API_KEYS") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}

func TestRunRefusesBadUsage(t *testing.T) {
	t.Setenv("API_KEYS", "k")
	for _, args := range [][]string{{"--no-such-flag"}, {"extra-arg"}, {"--log-level", "loud"}, {"--log-format", "xml"}} {
		var stderr bytes.Buffer
		if code := run(args, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args, code, stderr.String())
		}
	}
	t.Setenv("MAX_LIMIT", "many")
	var stderr bytes.Buffer
	if code := run(nil, &stderr); code != 2 || !strings.Contains(stderr.String(), "MAX_LIMIT") {
		t.Errorf("MAX_LIMIT=many: exit %d: %s", code, stderr.String())
	}
}
