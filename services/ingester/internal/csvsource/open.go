package csvsource

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// Kind says where a source's bytes come from.
type Kind int

const (
	// File is a path on the local file system: it can be hashed before it
	// is read and read again from the start.
	File Kind = iota
	// URL is an http or https URL, fetched with one GET and streamed.
	URL
	// Stdin is standard input ("-"): read once, never again.
	Stdin
)

// String names the kind: file, url or stdin.
func (k Kind) String() string {
	switch k {
	case File:
		return "file"
	case URL:
		return "url"
	}
	return "stdin"
}

// OpenOptions are what Open needs besides the name.
type OpenOptions struct {
	// Stdin is read for the name "-"; nil refuses "-".
	Stdin io.Reader
	// HTTPClient fetches URLs; nil means DefaultHTTPClient.
	HTTPClient *http.Client
	// IdleTimeout fails a URL source whose body sends nothing for that
	// long; 0 means IdleTimeout.
	IdleTimeout time.Duration
}

// DefaultHTTPClient fetches URL sources: the default transport (proxy from
// the environment, HTTP/2, gzip), a minute at most for the response
// headers, so a server that never answers fails the ingest instead of
// hanging it, and redirects that never go from https to http (NoDowngrade).
// The body may take as long as it needs while it moves; a body that stops
// for IdleTimeout fails the ingest (OpenOptions.IdleTimeout).
var DefaultHTTPClient = &http.Client{
	Transport: func() http.RoundTripper {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = time.Minute
		return t
	}(),
	CheckRedirect: NoDowngrade,
}

// Input is an open source. Reading it counts the bytes and hashes them with
// SHA-256 as they go by, so a URL or standard input is hashed in the same
// single pass that parses it.
type Input struct {
	// Name is the source as the user gave it, for messages and the begin
	// message: a path, "-" for standard input, or a URL without its
	// user:password and query (they may hold credentials).
	Name string
	// Kind says where the bytes come from.
	Kind Kind
	// Size is the source's size in bytes, -1 when not known in advance.
	Size int64

	path    string
	modTime time.Time
	rc      io.ReadCloser
	sum     hash.Hash
	n       atomic.Int64
}

// IsURL reports whether src names an http or https URL rather than a file.
func IsURL(src string) bool {
	s := strings.ToLower(src)
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// Open opens src: "-" for standard input, an http(s) URL, or a file path.
// Failing to open it (missing file, no permission, a folder, an HTTP status
// other than 2xx, an unreachable host) is a *SourceError wrapping
// ErrUnreadable; a zero-byte file one wrapping ErrEmpty.
func Open(ctx context.Context, src string, o OpenOptions) (*Input, error) {
	switch {
	case src == "-":
		return openStdin(o.Stdin)
	case IsURL(src):
		return openURL(ctx, src, o)
	}
	return openFile(src)
}

func openStdin(r io.Reader) (*Input, error) {
	if r == nil {
		return nil, sourceErr("-", ErrUnreadable, "standard input is not available here")
	}
	in := &Input{Name: "-", Kind: Stdin, Size: -1, rc: io.NopCloser(r), sum: sha256.New()}
	if f, ok := r.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			in.Size = st.Size() // ingester - < file.csv
		}
	}
	return in, nil
}

func openFile(path string) (*Input, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileErr(path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fileErr(path, err)
	}
	if st.IsDir() {
		f.Close()
		return nil, sourceErr(path, ErrUnreadable, "it is a folder, not a file")
	}
	if st.Mode().IsRegular() && st.Size() == 0 {
		f.Close()
		return nil, sourceErr(path, ErrEmpty, "")
	}
	size := st.Size()
	if !st.Mode().IsRegular() {
		size = -1 // a named pipe or a device: read once, like stdin
	}
	return &Input{Name: path, Kind: File, Size: size, path: path, modTime: st.ModTime(), rc: f, sum: sha256.New()}, nil
}

func fileErr(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return sourceErr(path, ErrUnreadable, "no such file")
	case errors.Is(err, fs.ErrPermission):
		return sourceErr(path, ErrUnreadable, "permission denied")
	}
	return sourceErr(path, ErrUnreadable, "%v", err)
}

func openURL(ctx context.Context, src string, o OpenOptions) (*Input, error) {
	u, err := url.Parse(src)
	if err != nil || u.Host == "" {
		return nil, sourceErr(src, ErrUnreadable, "not a valid URL")
	}
	name := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	idle := o.IdleTimeout
	if idle <= 0 {
		idle = IdleTimeout
	}
	// The request lives until the body is closed or stalls for idle.
	rctx, cancel := context.WithCancelCause(ctx)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, src, nil)
	if err != nil {
		cancel(nil)
		return nil, sourceErr(name, ErrUnreadable, "%v", err)
	}
	req.Header.Set("Accept", "text/csv, text/plain;q=0.9, */*;q=0.5")
	client := o.HTTPClient
	if client == nil {
		client = DefaultHTTPClient
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel(nil)
		// The error text repeats the full URL; say what failed without it.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, sourceErr(name, ErrUnreadable, "GET failed: %v", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		resp.Body.Close()
		cancel(nil)
		return nil, sourceErr(name, ErrUnreadable, "GET answered %s", resp.Status)
	}
	body := newIdleBody(resp.Body, idle, cancel, func() error {
		return sourceErr(name, ErrUnreadable, "the server sent nothing for %s; giving up", idle)
	})
	return &Input{Name: name, Kind: URL, Size: resp.ContentLength, rc: body, sum: sha256.New()}, nil
}

// Read reads from the source, counting and hashing what it returns.
func (in *Input) Read(p []byte) (int, error) {
	n, err := in.rc.Read(p)
	if n > 0 {
		in.sum.Write(p[:n])
		in.n.Add(int64(n))
	}
	return n, err
}

// BytesRead is how many bytes have been read so far; safe to call from
// another goroutine (the progress display).
func (in *Input) BytesRead() int64 { return in.n.Load() }

// SHA256 is the hex SHA-256 of the bytes read so far: the whole source's
// once Read has returned io.EOF.
func (in *Input) SHA256() string { return hex.EncodeToString(in.sum.Sum(nil)) }

// Close closes the source.
func (in *Input) Close() error { return in.rc.Close() }

// PreHash reads a regular file once, start to end, and returns its hex
// SHA-256, so that an unchanged file is recognised, or an interrupted sync
// of it resumed, before anything is published. Other sources give "" (their
// hash is only known once read: see SHA256).
func (in *Input) PreHash(ctx context.Context) (string, error) {
	if in.Kind != File || in.Size < 0 {
		return "", nil
	}
	f, err := os.Open(in.path)
	if err != nil {
		return "", fileErr(in.path, err)
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 256<<10)
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), nil
		}
		if err != nil {
			return "", sourceErr(in.path, ErrUnreadable, "%v", err)
		}
	}
}

// CheckUnchanged reports an error if a file was modified since Open (its
// size or modification time differ), which would make the rows published
// from it a mix of two versions.
func (in *Input) CheckUnchanged() error {
	if in.Kind != File || in.Size < 0 {
		return nil
	}
	st, err := os.Stat(in.path)
	if err != nil {
		return fmt.Errorf("%s: %w", in.path, err)
	}
	if st.Size() != in.Size || !st.ModTime().Equal(in.modTime) {
		return fmt.Errorf("%s changed while it was being read (size %d -> %d)", in.path, in.Size, st.Size())
	}
	return nil
}
