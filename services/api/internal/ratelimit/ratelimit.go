// Package ratelimit keeps one token bucket per API key.
package ratelimit

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/rowpipe/rowpipe/services/api/internal/auth"
)

// Limiter gives each key ID its own bucket of Burst tokens refilled at
// PerSecond. It holds at most maxKeys buckets (only accepted keys get one);
// past that, an arbitrary idle bucket is dropped. It is safe for concurrent
// use; a nil *Limiter allows everything.
type Limiter struct {
	limit   rate.Limit
	burst   int
	maxKeys int

	// buckets is replaced, never changed, under mu: Allow finds a key's
	// bucket with a map read and no lock. Only accepted keys get a bucket,
	// so new ones are rare and copying the map for each is cheap.
	mu      sync.Mutex
	buckets atomic.Pointer[map[auth.ID]*rate.Limiter]
}

// New returns a Limiter, or nil (no limit) when perSecond is not positive.
func New(perSecond float64, burst, maxKeys int) *Limiter {
	if perSecond <= 0 {
		return nil
	}
	if burst < 1 {
		burst = max(1, int(perSecond))
	}
	if maxKeys < 1 {
		maxKeys = 1024
	}
	l := &Limiter{limit: rate.Limit(perSecond), burst: burst, maxKeys: maxKeys}
	l.buckets.Store(&map[auth.ID]*rate.Limiter{})
	return l
}

// Allow takes a token for id at now. When there is none it reports how long
// until there will be one. Taking a token allocates nothing.
func (l *Limiter) Allow(id auth.ID, now time.Time) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	b := (*l.buckets.Load())[id]
	if b == nil {
		b = l.add(id)
	}
	if b.AllowN(now, 1) {
		return true, 0
	}
	// Refused: a reservation tells how long to wait (and is given back).
	r := b.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d <= 0 {
		return true, 0 // a token came in meanwhile, and is taken
	}
	r.CancelAt(now)
	return false, d
}

// add returns id's bucket, making it if no other request did meanwhile.
func (l *Limiter) add(id auth.ID) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.buckets.Load()
	if b := old[id]; b != nil {
		return b
	}
	next := maps.Clone(old)
	if len(next) >= l.maxKeys {
		for k := range next { // map order is random: drop any one
			delete(next, k)
			break
		}
	}
	b := rate.NewLimiter(l.limit, l.burst)
	next[id] = b
	l.buckets.Store(&next)
	return b
}
