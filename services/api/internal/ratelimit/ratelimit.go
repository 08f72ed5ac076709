// Package ratelimit keeps one token bucket per API key.
package ratelimit

import (
	"sync"
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

	mu      sync.Mutex
	buckets map[auth.ID]*rate.Limiter
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
	return &Limiter{limit: rate.Limit(perSecond), burst: burst, maxKeys: maxKeys, buckets: make(map[auth.ID]*rate.Limiter)}
}

// Allow takes a token for id at now. When there is none it reports how long
// until there will be one.
func (l *Limiter) Allow(id auth.ID, now time.Time) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	b := l.buckets[id]
	if b == nil {
		if len(l.buckets) >= l.maxKeys {
			for k := range l.buckets { // map order is random: drop any one
				delete(l.buckets, k)
				break
			}
		}
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[id] = b
	}
	l.mu.Unlock()
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}
