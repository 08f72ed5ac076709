package find

import (
	"path/filepath"
	"sync"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// CacheSize is the most generations whose indexes a Cache keeps open.
const CacheSize = 64

// Cache keeps the lookup indexes of the generations requests use open,
// per (dataset, generation), the least recently used closed first once
// more than CacheSize are open (never while a request holds them). A
// generation pruned by the writer is closed when it falls out. It is safe
// for concurrent use.
type Cache struct {
	dataDir string
	mu      sync.Mutex
	entries map[cacheKey]*cacheEntry
	clock   uint64
}

type cacheKey struct {
	dataset string
	gen     uint64
}

type cacheEntry struct {
	live    *Live
	refs    int
	used    uint64
	evicted bool
}

// NewCache returns a Cache of the datasets under dataDir.
func NewCache(dataDir string) *Cache {
	return &Cache{dataDir: dataDir, entries: map[cacheKey]*cacheEntry{}}
}

// Acquire returns the indexes of generation h.Generation of dataset to
// serve a request from header h, and the function that gives them back,
// to call exactly once when the request is done with them. The error
// reports indexes left out (damaged, or not of this generation); the
// indexes returned are usable whatever it says.
func (c *Cache) Acquire(dataset string, h schema.Header, now time.Time) (*Indexes, func(), error) {
	k := cacheKey{dataset, h.Generation}
	c.mu.Lock()
	e := c.entries[k]
	var openErr error
	if e == nil {
		// Opening lists the folder and opens a few files: rare, done
		// once per generation, under the lock so that it is done once.
		live, err := OpenLive(filepath.Join(c.dataDir, dataset), h)
		e, openErr = &cacheEntry{live: live}, err
		c.entries[k] = e
	}
	c.clock++
	e.used = c.clock
	e.refs++
	c.evictLocked()
	c.mu.Unlock()
	x, err := e.live.For(h, now)
	if openErr != nil {
		err = openErr
	}
	return x, func() { c.release(e) }, err
}

func (c *Cache) release(e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	if e.refs == 0 && e.evicted {
		e.live.Close()
	}
}

// evictLocked drops the least recently used entries past CacheSize.
func (c *Cache) evictLocked() {
	for len(c.entries) > CacheSize {
		var oldest cacheKey
		var oe *cacheEntry
		for k, e := range c.entries {
			if oe == nil || e.used < oe.used {
				oldest, oe = k, e
			}
		}
		delete(c.entries, oldest)
		oe.evicted = true
		if oe.refs == 0 {
			oe.live.Close()
		}
	}
}

// Close closes every entry no request holds; the others close when
// released.
func (c *Cache) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		delete(c.entries, k)
		e.evicted = true
		if e.refs == 0 {
			e.live.Close()
		}
	}
}
