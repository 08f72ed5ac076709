// Package console serves rowpipe's web console: one page at / and its
// static files under /console/, embedded in the binary. The page holds no
// data: its script asks for an API key, keeps it in the tab's
// sessionStorage and calls the api's JSON endpoints with it. There are no
// server-side sessions.
//
// Every answer carries a strict policy (SecurityHeaders): scripts, styles
// and requests only from the api's own origin, no inline script or style,
// no framing, no referrer.
package console

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"mime"
	"path"

	"github.com/gofiber/fiber/v2"
)

//go:embed static
var static embed.FS

// Route patterns, for fiber and the api's metrics.
const (
	PageRoute = "/"
	FileRoute = "/console/:file"
)

// CSP is the Content-Security-Policy of the console. Nothing inline runs:
// the page's one script and one style sheet are files of this origin, and
// the script may call only this origin.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// SecurityHeaders are set on every answer of the console.
var SecurityHeaders = [][2]string{
	{"Content-Security-Policy", CSP},
	{"X-Content-Type-Options", "nosniff"},
	{"X-Frame-Options", "DENY"},
	{"Referrer-Policy", "no-referrer"},
	{"Cross-Origin-Opener-Policy", "same-origin"},
	{"Cross-Origin-Resource-Policy", "same-origin"},
	{"Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"},
}

type file struct {
	body  []byte
	ctype string
	etag  string
}

// Console holds the embedded files, read once.
type Console struct {
	page  file
	files map[string]file // by base name, as /console/<name>
}

// New reads the embedded files.
func New() (*Console, error) {
	entries, err := static.ReadDir("static")
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	c := &Console{files: map[string]file{}}
	for _, e := range entries {
		b, err := static.ReadFile("static/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
		ctype := mime.TypeByExtension(path.Ext(e.Name()))
		if ctype == "" {
			return nil, fmt.Errorf("console: no content type for %s", e.Name())
		}
		sum := sha256.Sum256(b)
		f := file{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		if e.Name() == "index.html" {
			c.page = f
		} else {
			c.files[e.Name()] = f
		}
	}
	if c.page.body == nil {
		return nil, fmt.Errorf("console: no index.html embedded")
	}
	return c, nil
}

// Register adds GET (and HEAD) PageRoute and FileRoute to r.
func (c *Console) Register(r fiber.Router) {
	r.Get(PageRoute, c.Page)
	r.Get(FileRoute, c.File)
}

// Page answers GET /: the console's HTML.
func (c *Console) Page(ctx *fiber.Ctx) error { return c.send(ctx, c.page) }

// File answers GET /console/:file: a script, style sheet or icon of the
// page; any other name is fiber.ErrNotFound.
func (c *Console) File(ctx *fiber.Ctx) error {
	f, ok := c.files[ctx.Params("file")]
	if !ok {
		return fiber.ErrNotFound
	}
	return c.send(ctx, f)
}

// send answers with f, or 304 when If-None-Match names its ETag
// (fiber's Fresh; with no Last-Modified, If-Modified-Since alone is
// ignored). Browsers revalidate each time (no-cache): a new binary serves
// new files at once.
func (c *Console) send(ctx *fiber.Ctx, f file) error {
	for _, h := range SecurityHeaders {
		ctx.Set(h[0], h[1])
	}
	ctx.Set(fiber.HeaderCacheControl, "no-cache")
	ctx.Set(fiber.HeaderETag, f.etag)
	if ctx.Get(fiber.HeaderIfNoneMatch) != "" && ctx.Fresh() {
		return ctx.SendStatus(fiber.StatusNotModified)
	}
	ctx.Set(fiber.HeaderContentType, f.ctype)
	return ctx.Send(f.body)
}
