package csvsource

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestURLSourceFailsWhenTheBodyStalls(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "sku,qty\nA,1\n")
		w.(http.Flusher).Flush()
		select { // then nothing, until the client gives up or the test ends
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	in, err := Open(context.Background(), srv.URL+"/p.csv", OpenOptions{IdleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	start := time.Now()
	b, err := io.ReadAll(in)
	if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), "sent nothing for 200ms") {
		t.Fatalf("a stalled body: %v, want ErrUnreadable saying it sent nothing", err)
	}
	if string(b) != "sku,qty\nA,1\n" {
		t.Errorf("read %q before the stall", b)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("gave up after %s", took)
	}
}

func TestURLSourceMayBeSlowWhileItMoves(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "n\n")
		for i := range 8 { // 8 × 60 ms: longer than the idle timeout in all
			time.Sleep(60 * time.Millisecond)
			io.WriteString(w, strings.Repeat("x", i+1)+"\n")
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	in, err := Open(context.Background(), srv.URL, OpenOptions{IdleTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	b, err := io.ReadAll(in)
	if err != nil || strings.Count(string(b), "\n") != 9 {
		t.Fatalf("a slow, moving body: %d lines, %v", strings.Count(string(b), "\n"), err)
	}
}

func TestURLSourceRefusesARedirectFromHTTPSToHTTP(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "sku\nleaked\n")
	}))
	defer plain.Close()
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/same" {
			http.Redirect(w, r, "/data.csv", http.StatusFound)
			return
		}
		if r.URL.Path == "/data.csv" {
			io.WriteString(w, "sku\nA\n")
			return
		}
		http.Redirect(w, r, plain.URL+"/data.csv", http.StatusFound)
	}))
	defer secure.Close()
	client := secure.Client() // trusts the test certificate
	client.CheckRedirect = DefaultHTTPClient.CheckRedirect

	_, err := Open(context.Background(), secure.URL+"/export.csv", OpenOptions{HTTPClient: client})
	if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), "https to http") {
		t.Fatalf("https -> http: %v, want a refusal", err)
	}
	in, err := Open(context.Background(), secure.URL+"/same", OpenOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("https -> https: %v", err)
	}
	b, _ := io.ReadAll(in)
	in.Close()
	if string(b) != "sku\nA\n" {
		t.Errorf("https -> https: %q", b)
	}
	// http -> https is an upgrade, and fine.
	if err := NoDowngrade(httptest.NewRequest("GET", "https://b.example/x", nil), []*http.Request{httptest.NewRequest("GET", "http://a.example/x", nil)}); err != nil {
		t.Errorf("http -> https: %v", err)
	}
}
