package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// handle is one generation's open files, shared by its leases.
type handle struct {
	store    *Store
	dataset  string
	gen      uint64
	dir      string // the dataset's folder
	dataPath string
	data     *os.File
	dataInfo os.FileInfo // data's identity when opened
	idx      *os.File
	index    *schema.Index
	hdr      atomic.Pointer[snapshot]
	lookups  lookups

	// refs counts the leases, plus one while the handle is cached; the
	// files close when it reaches 0.
	refs atomic.Int64

	// Guarded by Store.mu.
	used    uint64 // Store.clock when last leased
	statted int64  // when a stat last showed the files at their names (UnixNano)
}

// snapshot is a decoded header and the bytes it was decoded from.
type snapshot struct {
	raw  []byte // nil before the first read
	size int    // the header's fixed size
	h    schema.Header
	at   int64 // when raw was read (UnixNano, taken before the read)
}

func (h *handle) unref() {
	if h.refs.Add(-1) == 0 {
		h.data.Close()
		h.idx.Close()
		h.lookups.close()
		h.store.opened.Add(-1)
	}
}

// check reads the header and the index header of newly opened files and
// makes sure they belong together and to this generation.
func (h *handle) check() error {
	var err error
	if h.dataInfo, err = h.data.Stat(); err != nil {
		return err
	}
	hdr, err := h.store.firstHeader(h.data)
	if err != nil {
		return err
	}
	if hdr.Dataset != h.dataset || hdr.Generation != h.gen {
		return fmt.Errorf("its header says dataset %q generation %d", hdr.Dataset, hdr.Generation)
	}
	if h.index, err = schema.OpenIndex(h.idx); err != nil {
		return fmt.Errorf("%s: %w", h.idx.Name(), err)
	}
	if h.index.DataStart() != int64(hdr.Size) {
		return fmt.Errorf("the index starts records at %d, the header is %d bytes", h.index.DataStart(), hdr.Size)
	}
	// No raw bytes: the first readHeader decodes what it reads.
	h.hdr.Store(&snapshot{size: hdr.Size, h: hdr})
	return nil
}

// A torn header clears as soon as the writer's one write of it lands; the
// budget (about 200 ms in all) covers a writer descheduled mid-write on a
// loaded machine. A header torn for longer is damaged.
const (
	tornAttempts = 20
	tornMaxSleep = 20 * time.Millisecond
)

func tornBackoff(attempt int) {
	if attempt >= 2 {
		time.Sleep(min(time.Duration(1<<attempt)*10*time.Microsecond, tornMaxSleep))
	}
}

// firstHeader reads a header with schema.ReadHeader, reading torn ones again.
func (s *Store) firstHeader(f *os.File) (schema.Header, error) {
	for attempt := 0; ; attempt++ {
		h, err := schema.ReadHeader(f)
		if !errors.Is(err, schema.ErrHeaderTorn) || attempt+1 >= tornAttempts {
			return h, err
		}
		s.tornRetries.Add(1)
		tornBackoff(attempt)
	}
}

var headerBufs = sync.Pool{New: func() any { return new([]byte) }}

// readHeader reads h's header block and returns it decoded: the last
// decoded header while the bytes are the same, else the bytes decoded
// (their checksum checked; a torn read is read again).
func (h *handle) readHeader() (*schema.Header, error) {
	snap := h.hdr.Load()
	now := time.Now().UnixNano()
	if snap.raw != nil && now-snap.at < int64(h.store.fresh) {
		return &snap.h, nil
	}
	size := snap.size
	bp := headerBufs.Get().(*[]byte)
	defer headerBufs.Put(bp)
	if cap(*bp) < size {
		*bp = make([]byte, size)
	}
	buf := (*bp)[:size]
	for attempt := 0; ; attempt++ {
		if _, err := h.data.ReadAt(buf, 0); err != nil {
			return nil, fmt.Errorf("%w: read the header of %s: %v", ErrUnavailable, h.dataPath, err)
		}
		if bytes.Equal(buf, snap.raw) {
			again := *snap
			again.at = now
			h.hdr.CompareAndSwap(snap, &again) // lost to a newer read: that one stands
			return &snap.h, nil
		}
		hdr, err := schema.DecodeHeader(buf)
		if err == nil {
			if hdr.Generation != h.gen || hdr.Dataset != h.dataset || hdr.Size != size {
				return nil, fmt.Errorf("%w: %s: header rewritten as dataset %q generation %d", ErrUnavailable, h.dataPath, hdr.Dataset, hdr.Generation)
			}
			read := &snapshot{raw: bytes.Clone(buf), size: size, h: hdr, at: now}
			h.hdr.CompareAndSwap(snap, read) // lost to a newer read: that one stands
			return &read.h, nil
		}
		if !errors.Is(err, schema.ErrHeaderTorn) || attempt+1 >= tornAttempts {
			return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, h.dataPath, err)
		}
		h.store.tornRetries.Add(1)
		tornBackoff(attempt)
	}
}
