package store

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/api/internal/find"
)

// Lease is one generation at one header state. Header is what the caller
// serves: its Count bounds the records that may be read. Release it exactly
// once; its methods must not be used after Release.
type Lease struct {
	h      *handle
	Header schema.Header
}

// ReadAt reads the generation's data file (io.ReaderAt).
func (l Lease) ReadAt(p []byte, off int64) (int, error) { return l.h.data.ReadAt(p, off) }

// File is the generation's data file, for sendfile: read it only at
// explicit offsets (it is shared), and only while the lease is held.
func (l Lease) File() *os.File { return l.h.data }

// Range returns the bytes [start, end) of the data file that hold records
// first .. first+n-1, whole lines each ending in '\n'. n must be at least 1
// and first+n at most Header.Count.
func (l Lease) Range(first, n uint64) (start, end int64, err error) {
	if n == 0 || first+n > l.Header.Count || first+n < first {
		return 0, 0, fmt.Errorf("records %d..%d are outside the %d the header covers", first, first+n-1, l.Header.Count)
	}
	start, end, err = l.h.index.Range(first, n)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", l.h.idx.Name(), err)
	}
	return start, end, nil
}

// Ends fills ends with the end offsets of records first ..
// first+len(ends)-1, each just past its '\n', and returns where the first
// starts: one read of the index, for up to schema.EndsMax records.
// first+len(ends) must be at most Header.Count.
func (l Lease) Ends(first uint64, ends []int64) (start int64, err error) {
	if n := uint64(len(ends)); first+n > l.Header.Count || first+n < first {
		return 0, fmt.Errorf("records %d..%d are outside the %d the header covers", first, first+n-1, l.Header.Count)
	}
	if start, err = l.h.index.Ends(first, ends); err != nil {
		return 0, fmt.Errorf("%s: %w", l.h.idx.Name(), err)
	}
	return start, nil
}

// Lookups returns the generation's lookup indexes for a request served
// from the lease's Header at now, and the function that releases them, to
// call once the request is done with them: opened with the first request
// that asks, kept up to date by find.Live. The error reports indexes left
// out; the indexes returned are usable whatever it says (nil only when the
// header's fields cannot be decoded).
func (l Lease) Lookups(now time.Time) (*find.Indexes, func(), error) {
	var openErr error
	lk := &l.h.lookups
	lk.once.Do(func() { lk.live, openErr = find.OpenLive(l.h.dir, l.Header) })
	x, release, err := lk.live.For(l.Header, now)
	return x, release, errors.Join(openErr, err)
}

// lookups are a generation's lookup indexes, opened on first use.
type lookups struct {
	once sync.Once
	live *find.Live
}

// close closes the indexes, if they were opened; no lease may hold them.
func (lk *lookups) close() {
	if lk.live != nil {
		lk.live.Close()
	}
}

// Release gives the generation back; its files close once no lease holds
// them and it is no longer cached.
func (l Lease) Release() {
	if l.h != nil {
		l.h.store.leases.Add(-1)
		l.h.unref()
	}
}
