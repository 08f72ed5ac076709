package csvsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// IdleTimeout is how long a URL source's body may send nothing before the
// ingest fails: a server that stalls mid-body would otherwise hold the
// ingester (and its NATS connection) forever.
const IdleTimeout = 2 * time.Minute

// maxRedirects is the most redirects a URL source follows (net/http's).
const maxRedirects = 10

// NoDowngrade is an http.Client CheckRedirect that follows up to 10
// redirects but never from https to http: a redirect must not send the
// request, or expose the data, in clear text.
func NoDowngrade(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if req.URL.Scheme != "https" {
		for _, prev := range via {
			if prev.URL.Scheme == "https" {
				return fmt.Errorf("refused a redirect from https to %s://%s", req.URL.Scheme, req.URL.Host)
			}
		}
	}
	return nil
}

// idleBody fails a body that sends nothing for idle: a timer, reset on
// every read that returns data, cancels the request.
type idleBody struct {
	rc      io.ReadCloser
	timer   *time.Timer
	idle    time.Duration
	cancel  context.CancelCauseFunc
	stalled func() error
}

var errStalled = errors.New("the body stalled")

func newIdleBody(rc io.ReadCloser, idle time.Duration, cancel context.CancelCauseFunc, stalled func() error) *idleBody {
	b := &idleBody{rc: rc, idle: idle, cancel: cancel, stalled: stalled}
	b.timer = time.AfterFunc(idle, func() { cancel(errStalled) })
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 && !b.timer.Reset(b.idle) {
		// The timer had fired: the request is cancelled, whatever came.
		return n, b.stalled()
	}
	if err != nil && err != io.EOF && !b.timer.Stop() {
		return n, b.stalled()
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}
