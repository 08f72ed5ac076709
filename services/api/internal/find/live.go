package find

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// ReopenEvery is how often Live looks for rebuilt indexes while the ones
// it holds are stale.
const ReopenEvery = time.Second

// Live holds the lookup indexes of one generation for as long as the
// generation is open, and keeps them up to date: an append sync grows the
// generation and then has the writer rebuild its indexes under the same
// names, so while an index covers fewer records than the header, Live
// opens the files again (at most every ReopenEvery). Indexes it replaced
// stay open until Close, for requests that still use them. It is safe for
// concurrent use.
type Live struct {
	dir string
	cur atomic.Pointer[Indexes]

	mu      sync.Mutex
	retired []*Indexes
	tried   time.Time
	closed  bool
}

// OpenLive opens the indexes of generation h in the dataset folder dir.
// The error reports indexes left out (see OpenIndexes); the Live is
// usable whatever it says.
func OpenLive(dir string, h schema.Header) (*Live, error) {
	x, err := OpenIndexes(dir, h)
	l := &Live{dir: dir}
	l.cur.Store(x)
	return l, err
}

// For returns the indexes to answer a request served from header h,
// reopening them first if one is stale and the last try is ReopenEvery
// old. The error reports an index that could not be reopened; the
// indexes returned are usable whatever it says.
func (l *Live) For(h schema.Header, now time.Time) (*Indexes, error) {
	x := l.cur.Load()
	if !x.staleFor(h.Count) {
		return x, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || now.Sub(l.tried) < ReopenEvery {
		return l.cur.Load(), nil
	}
	l.tried = now
	nx, err := OpenIndexes(l.dir, h)
	l.retired = append(l.retired, l.cur.Swap(nx))
	return nx, err
}

// Close closes every index it opened.
func (l *Live) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	errs := []error{l.cur.Load().Close()}
	for _, x := range l.retired {
		errs = append(errs, x.Close())
	}
	l.retired = nil
	return errors.Join(errs...)
}

// staleFor reports whether an index covers other than count records.
func (x *Indexes) staleFor(count uint64) bool {
	if x == nil {
		return false
	}
	for _, lk := range x.byField {
		if lk.Meta().Count != count {
			return true
		}
	}
	return false
}
