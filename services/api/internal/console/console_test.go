package console

import (
	"io"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
)

func app(t *testing.T) (*fiber.App, *Console) {
	t.Helper()
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	a := fiber.New(fiber.Config{DisableStartupMessage: true})
	c.Register(a)
	return a, c
}

func get(t *testing.T, a *fiber.App, path string, header ...string) (int, map[string]string, string) {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := a.Test(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	h := map[string]string{}
	for k := range resp.Header {
		h[k] = resp.Header.Get(k)
	}
	return resp.StatusCode, h, string(b)
}

func TestEveryAnswerCarriesTheSecurityHeaders(t *testing.T) {
	a, _ := app(t)
	for _, p := range []string{"/", "/console/console.js", "/console/console.css", "/console/favicon.svg"} {
		status, h, _ := get(t, a, p)
		if status != 200 {
			t.Fatalf("GET %s: %d", p, status)
		}
		for _, sh := range SecurityHeaders {
			if h[sh[0]] != sh[1] {
				t.Errorf("GET %s: %s = %q, want %q", p, sh[0], h[sh[0]], sh[1])
			}
		}
	}
}

func TestPolicyAllowsNothingInline(t *testing.T) {
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "*", "data:", "http:"} {
		if strings.Contains(CSP, bad) {
			t.Errorf("CSP allows %q: %s", bad, CSP)
		}
	}
	for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "default-src 'none'"} {
		if !strings.Contains(CSP, want) {
			t.Errorf("CSP lacks %q", want)
		}
	}
}

// The page must work under its own policy: no inline script, no inline
// style, no event handler attribute; every file it refers to is served.
func TestPageNeedsNothingThePolicyRefuses(t *testing.T) {
	a, c := app(t)
	page := string(c.page.body)
	for _, re := range []string{`<script[^>]*>\s*[^<\s]`, `\sstyle=`, `<style`, `\son[a-z]+=`, `javascript:`} {
		if regexp.MustCompile(`(?i)` + re).MatchString(page) {
			t.Errorf("index.html matches %s", re)
		}
	}
	for _, m := range regexp.MustCompile(`<script([^>]*)>`).FindAllStringSubmatch(page, -1) {
		if !strings.Contains(m[1], `src="/console/`) {
			t.Errorf("a script that is not a file of the console: %s", m[0])
		}
	}
	refs := regexp.MustCompile(`(?:src|href)="(/console/[^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 3 {
		t.Fatalf("index.html refers to %d console files", len(refs))
	}
	for _, m := range refs {
		if status, _, _ := get(t, a, m[1]); status != 200 {
			t.Errorf("index.html refers to %s: %d", m[1], status)
		}
	}
}

// The key belongs in sessionStorage and a header, nowhere else.
func TestScriptKeepsTheKeyOutOfURLsAndLocalStorage(t *testing.T) {
	_, c := app(t)
	js := string(c.files["console.js"].body)
	for _, bad := range []string{"localStorage.", "console.log", "console.error", "document.cookie", "innerHTML", "eval("} {
		if strings.Contains(js, bad) {
			t.Errorf("console.js uses %s", bad)
		}
	}
	if !strings.Contains(js, `"X-API-Key": key`) || !strings.Contains(js, "sessionStorage.getItem(KEY)") {
		t.Error("console.js does not send the sessionStorage key as X-API-Key")
	}
}

func TestRevalidationAndTypes(t *testing.T) {
	a, _ := app(t)
	for p, ctype := range map[string]string{"/": "text/html", "/console/console.js": "javascript", "/console/console.css": "text/css", "/console/favicon.svg": "image/svg+xml"} {
		_, h, body := get(t, a, p)
		if !strings.Contains(h["Content-Type"], ctype) || body == "" || h["Cache-Control"] != "no-cache" {
			t.Errorf("GET %s: Content-Type %q, Cache-Control %q, %d bytes", p, h["Content-Type"], h["Cache-Control"], len(body))
		}
		for _, inm := range []string{`"other", ` + h["Etag"], "W/" + h["Etag"], "*"} {
			status, h304, body := get(t, a, p, "If-None-Match", inm)
			if status != 304 || body != "" || h304["Etag"] != h["Etag"] {
				t.Errorf("GET %s with If-None-Match %s: %d, %d bytes, ETag %q", p, inm, status, len(body), h304["Etag"])
			}
		}
		if status, _, _ := get(t, a, p, "If-None-Match", `"other"`); status != 200 {
			t.Errorf("GET %s with another ETag: %d", p, status)
		}
		// No Last-Modified is sent, so If-Modified-Since says nothing.
		if status, _, body := get(t, a, p, "If-Modified-Since", "Sun, 06 Dec 2026 00:00:00 GMT"); status != 200 || body == "" {
			t.Errorf("GET %s with If-Modified-Since: %d, %d bytes", p, status, len(body))
		}
	}
}

func TestUnknownFileIsNotFound(t *testing.T) {
	a, _ := app(t)
	for _, p := range []string{"/console/nope.js", "/console/index.html", "/console/..%2Fconsole.go"} {
		if status, _, _ := get(t, a, p); status != 404 {
			t.Errorf("GET %s: %d, want 404", p, status)
		}
	}
}
