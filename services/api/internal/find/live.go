package find

import (
	"sync"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// ReopenEvery is how often Live looks for rebuilt indexes while the ones
// it holds are stale.
const ReopenEvery = time.Second

// Live holds the lookup indexes of one generation for as long as the
// generation is open, and keeps them up to date: an append sync grows the
// generation and then has the writer rebuild its indexes under the same
// names, so while an index covers other than the records the header
// counts, Live opens the files again (at most every ReopenEvery). Indexes
// it replaced close once the last request using them releases them. It is
// safe for concurrent use.
type Live struct {
	dir string

	mu    sync.Mutex
	cur   *Indexes
	users map[*Indexes]int // requests holding each Indexes For returned
	tried time.Time
}

// OpenLive opens the indexes of generation h in the dataset folder dir.
// The error reports indexes left out (see OpenIndexes); the Live is
// usable whatever it says.
func OpenLive(dir string, h schema.Header) (*Live, error) {
	x, err := OpenIndexes(dir, h)
	return &Live{dir: dir, cur: x, users: map[*Indexes]int{}}, err
}

// For returns the indexes to answer a request served from header h,
// reopening them first if one is stale and the last try is ReopenEvery
// old, and the function that releases them, to call once the request is
// done with them. The error reports an index that could not be reopened;
// the indexes returned are usable whatever it says.
func (l *Live) For(h schema.Header, now time.Time) (*Indexes, func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	if l.cur.staleFor(h.Count) && now.Sub(l.tried) >= ReopenEvery {
		l.tried = now
		old := l.cur
		l.cur, err = OpenIndexes(l.dir, h)
		if l.users[old] == 0 {
			old.Close()
		}
	}
	x := l.cur
	l.users[x]++
	return x, func() { l.release(x) }, err
}

func (l *Live) release(x *Indexes) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.users[x]--; l.users[x] == 0 {
		delete(l.users, x)
		if x != l.cur {
			x.Close()
		}
	}
}

// Close closes the indexes; every one For returned must have been
// released.
func (l *Live) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur.Close()
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
