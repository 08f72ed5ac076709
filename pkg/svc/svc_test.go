package svc

import (
	"bytes"
	"strings"
	"testing"
)

func TestNewLoggerWritesTheFormatAskedFor(t *testing.T) {
	var text, js bytes.Buffer
	lt, err := NewLogger(&text, "info", "")
	if err != nil {
		t.Fatal(err)
	}
	lj, err := NewLogger(&js, "debug", "JSON")
	if err != nil {
		t.Fatal(err)
	}
	lt.Debug("hidden")
	lt.Info("shown", "k", 1)
	lj.Debug("shown", "k", 1)
	if strings.Contains(text.String(), "hidden") || !strings.Contains(text.String(), "msg=shown k=1") {
		t.Errorf("text at info: %q", text.String())
	}
	if !strings.Contains(js.String(), `"msg":"shown","k":1`) {
		t.Errorf("json at debug: %q", js.String())
	}
}

func TestNewLoggerNamesTheVariableToFix(t *testing.T) {
	if _, err := NewLogger(&bytes.Buffer{}, "loud", "text"); err == nil || !strings.Contains(err.Error(), "LOG_LEVEL") {
		t.Errorf("bad level: %v", err)
	}
	if _, err := NewLogger(&bytes.Buffer{}, "info", "xml"); err == nil || !strings.Contains(err.Error(), "LOG_FORMAT") {
		t.Errorf("bad format: %v", err)
	}
}

func TestRedactURLsHidesUserInformationOnly(t *testing.T) {
	got := RedactURLs("nats://alice:s3cret@a:4222, nats://tok3n@b:4222,nats://c:4222")
	if strings.Contains(got, "s3cret") || strings.Contains(got, "tok3n") || strings.Contains(got, "alice") {
		t.Errorf("a secret is left: %q", got)
	}
	if want := "nats://REDACTED@a:4222,nats://REDACTED@b:4222,nats://c:4222"; got != want {
		t.Errorf("RedactURLs = %q, want %q", got, want)
	}
}
