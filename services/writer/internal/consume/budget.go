package consume

import (
	"sync"
	"time"
)

// budget is a byte semaphore: acquire waits while the bytes out would
// exceed the limit (unless nothing is out, so a large message passes).
type budget struct {
	mu     sync.Mutex
	cond   *sync.Cond
	used   int
	limit  int
	closed bool
}

func newBudget(limit int) *budget {
	b := &budget{limit: limit}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *budget) acquire(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.closed && b.used > 0 && b.used+n > b.limit {
		b.cond.Wait()
	}
	b.used += n
	return !b.closed
}

func (b *budget) release(n int) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *budget) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

// every lets an event through at most once per 10 seconds.
type every struct {
	mu   sync.Mutex
	last time.Time
}

func (e *every) allow() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if now := time.Now(); now.Sub(e.last) >= 10*time.Second {
		e.last = now
		return true
	}
	return false
}
