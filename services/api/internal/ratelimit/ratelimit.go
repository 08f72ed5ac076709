// Package ratelimit keeps one token bucket per API key.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/rowpipe/rowpipe/services/api/internal/auth"
)

// Limiter gives each key ID its own bucket of burst tokens refilled at
// perSecond. It holds at most maxKeys buckets (only accepted keys get one);
// past that, an arbitrary bucket is dropped. It is safe for concurrent use;
// a nil *Limiter allows everything.
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
	return &Limiter{limit: rate.Limit(perSecond), burst: max(burst, 1), maxKeys: max(maxKeys, 1),
		buckets: map[auth.ID]*rate.Limiter{}}
}

// Allow takes a token for id at now. When there is none it reports how long
// until there will be one.
func (l *Limiter) Allow(id auth.ID, now time.Time) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	b := l.bucket(id)
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

// bucket returns id's bucket, made on first use.
func (l *Limiter) bucket(id auth.ID) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
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
	return b
}
