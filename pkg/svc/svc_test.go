package svc

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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

func TestRedactURLsHidesSchemelessUserInformation(t *testing.T) {
	for in, want := range map[string]string{
		"alice:s3cret@nats:4222":                   "REDACTED@nats:4222",
		"tok3n@10.0.0.1:4222":                      "REDACTED@10.0.0.1:4222",
		"nats:4222":                                "nats:4222",
		"alice:s3cret@nats:4222,nats://bob:pw@b:1": "REDACTED@nats:4222,nats://REDACTED@b:1",
		"alice:s3%zz@nats:4222":                    "REDACTED@nats:4222", // does not parse: cut at the '@'
		"tls://carol:hunter2@[::1]:4222":           "tls://REDACTED@[::1]:4222",
	} {
		got := RedactURLs(in)
		if got != want {
			t.Errorf("RedactURLs(%q) = %q, want %q", in, got, want)
		}
		for _, secret := range []string{"s3cret", "tok3n", "pw@", "s3%zz", "hunter2", "alice", "carol"} {
			if strings.Contains(got, secret) {
				t.Errorf("RedactURLs(%q) = %q keeps %q", in, got, secret)
			}
		}
	}
}

func TestNATSAuthOptions(t *testing.T) {
	for _, tc := range []struct {
		a       NATSAuth
		n       int
		wantErr string
	}{
		{NATSAuth{}, 0, ""},
		{NATSAuth{Creds: "/x.creds"}, 1, ""},
		{NATSAuth{User: "writer", Password: "pw"}, 2, ""},
		{NATSAuth{User: "writer"}, 0, "NATS_PASSWORD"},
		{NATSAuth{Password: "pw"}, 0, "NATS_USER"},
		{NATSAuth{Creds: "/x.creds", User: "writer", Password: "pw"}, 0, "NATS_CREDS"},
	} {
		opts, err := tc.a.Options()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%+v: err %v, want one naming %s", tc.a, err, tc.wantErr)
			}
			continue
		}
		if err != nil || len(opts) != tc.n {
			t.Errorf("%+v: %d options, err %v; want %d", tc.a, len(opts), err, tc.n)
		}
	}
}

func TestProbeExitsZeroOnlyOn200(t *testing.T) {
	code := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(code)
		io.WriteString(w, `{"status":"x"}`)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	var out bytes.Buffer
	if got := Probe(&out, ":"+port, "/readyz"); got != 0 {
		t.Errorf("200: exit %d (%s)", got, out.String())
	}
	code = http.StatusServiceUnavailable
	if got := Probe(&out, "0.0.0.0:"+port, "/readyz"); got != 1 || !strings.Contains(out.String(), "503") {
		t.Errorf("503: exit %d, output %q", got, out.String())
	}
	srv.Close()
	if got := Probe(&out, ":"+port, "/readyz"); got != 1 {
		t.Errorf("nothing listening: exit %d", got)
	}
	if got := Probe(&out, "no-port", "/readyz"); got != 1 {
		t.Errorf("a bad address: exit %d", got)
	}
}
