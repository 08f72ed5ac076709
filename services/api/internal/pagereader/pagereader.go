// Package pagereader serves byte ranges of records from the generation files
// the writer keeps under DATA_DIR, without ever scanning them.
//
// A Store opens each generation once (its NDJSON data file and its offset
// index) and shares the open handles between requests. Acquire picks the
// generation (the one CURRENT names, or a pinned one), re-reads its
// metadata header with one small read, and returns a Lease: a consistent
// view of one generation at one header state. A page's byte range then
// costs two 8-byte index reads whatever its offset (schema.Index.Range).
//
// Handles are reference counted. When a newer generation becomes current,
// or a generation's files are pruned or replaced, its handle is retired:
// leases already taken keep reading it (an unlinked file stays readable
// while open) and the files are closed when the last lease is released.
package pagereader

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Errors returned by Acquire; test with errors.Is. Each wrapping error says
// which dataset or generation.
var (
	// ErrDatasetNotFound: DATA_DIR holds no such dataset.
	ErrDatasetNotFound = errors.New("dataset not found")
	// ErrNoGeneration: the dataset exists but no generation is complete yet.
	ErrNoGeneration = errors.New("dataset has no complete generation yet")
	// ErrGenerationNotFound: a pinned generation that does not exist (yet)
	// or is still being built.
	ErrGenerationNotFound = errors.New("generation not found")
	// ErrGenerationGone: a pinned generation older than the current one whose
	// files were pruned.
	ErrGenerationGone = errors.New("generation no longer kept")
	// ErrUnavailable: the files are there but cannot be served right now (a
	// header still torn after retries, a malformed CURRENT, an I/O error).
	ErrUnavailable = errors.New("dataset temporarily unreadable")
)

// Store hands out leases on generations under one DATA_DIR. It is safe for
// concurrent use. The zero value is not usable: call New.
type Store struct {
	dir string
	log *slog.Logger

	mu       sync.Mutex
	datasets map[string]*dataset // only datasets that had a generation opened
	opened   int                 // handles with open files (in the map or retired and leased)
	leases   int                 // leases not yet released

	tornRetries atomic.Uint64
}

type dataset struct {
	name        string
	dir         string
	currentPath string
	current     uint64 // highest generation CURRENT has named
	gens        map[uint64]*handle
}

// handle is one generation's open files. refs and retired are guarded by
// Store.mu; the header snapshot is swapped atomically.
type handle struct {
	ds       *dataset
	gen      uint64
	dataPath string
	data     *os.File
	idx      *os.File
	index    *schema.Index
	dev, ino uint64
	hdr      atomic.Pointer[headerSnap]

	refs    int
	retired bool
}

// headerSnap is a decoded header and the exact bytes it came from: a request
// whose read returns the same bytes reuses the decoded header.
type headerSnap struct {
	raw []byte
	h   schema.Header
}

// New returns a Store reading dataDir. Nothing is opened until Acquire.
func New(dataDir string, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{dir: dataDir, log: log, datasets: make(map[string]*dataset)}
}

// Dir is the data directory the Store reads.
func (s *Store) Dir() string { return s.dir }

// Stats reports the generations with open files and the leases not yet
// released; both return to their resting values once every response is done.
func (s *Store) Stats() (open, leases int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened, s.leases
}

// TornRetries counts header reads that came back torn and were retried.
func (s *Store) TornRetries() uint64 { return s.tornRetries.Load() }

// Lease is one generation at one header state. Header is what the caller
// serves: its Count bounds the records that may be read. A Lease must be
// released exactly once; its methods must not be used after Release.
type Lease struct {
	h      *handle
	s      *Store
	Header schema.Header
}

// Range returns the byte range [start, end) of records first .. first+n-1
// in the data file. n ≥ 1 and first+n ≤ Header.Count.
func (l Lease) Range(first, n uint64) (start, end int64, err error) {
	if n == 0 || first+n > l.Header.Count || first+n < first {
		return 0, 0, fmt.Errorf("records %d..%d are outside the %d the header covers", first, first+n-1, l.Header.Count)
	}
	return l.h.index.Range(first, n)
}

// ReadAt reads the generation's data file.
func (l Lease) ReadAt(p []byte, off int64) (int, error) { return l.h.data.ReadAt(p, off) }

// Release gives the generation back; its files close once no lease holds
// them and it is no longer the one served.
func (l Lease) Release() {
	if l.h == nil {
		return
	}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	l.s.leases--
	l.h.refs--
	if l.h.refs == 0 && l.h.retired {
		l.s.closeLocked(l.h)
	}
}

// Acquire returns a lease on dataset name's generation pin, or on the one
// CURRENT names when pin is 0. name must already be a valid dataset name
// (schema.ValidateDataset). The lease's header is complete and re-read for
// this call, so a generation that grows (append mode) is seen as it grows.
func (s *Store) Acquire(name string, pin uint64) (Lease, error) {
	d := s.lookup(name)
	for attempt := 0; ; attempt++ {
		gen := pin
		if pin == 0 {
			g, err := readCurrent(d.currentPath)
			if err != nil {
				return Lease{}, s.noCurrent(d, err)
			}
			gen = g
		}
		h, err := s.handle(d, gen, pin == 0)
		if errors.Is(err, fs.ErrNotExist) {
			if pin != 0 {
				return Lease{}, s.pinnedMissing(d, pin)
			}
			if attempt < 3 {
				continue // CURRENT moved on and this one was pruned in between: read it again
			}
			return Lease{}, fmt.Errorf("%w: %s: generation %d named by CURRENT is missing", ErrUnavailable, name, gen)
		}
		if err != nil {
			return Lease{}, err
		}
		hdr, err := s.readHeader(h)
		if err == nil && hdr.State != schema.StateComplete {
			if pin != 0 {
				err = fmt.Errorf("%w: %s generation %d is still being built (state %q)", ErrGenerationNotFound, name, gen, hdr.State)
			} else {
				err = fmt.Errorf("%w: %s: CURRENT names generation %d whose state is %q", ErrUnavailable, name, gen, hdr.State)
			}
		}
		if err != nil {
			Lease{h: h, s: s}.Release()
			return Lease{}, err
		}
		return Lease{h: h, s: s, Header: hdr}, nil
	}
}

// lookup returns the known dataset entry, or a fresh one that is stored only
// once one of its generations opens (so unknown names do not grow the map).
func (s *Store) lookup(name string) *dataset {
	s.mu.Lock()
	d := s.datasets[name]
	s.mu.Unlock()
	if d != nil {
		return d
	}
	name = strings.Clone(name)
	dir := filepath.Join(s.dir, name)
	return &dataset{name: name, dir: dir, currentPath: filepath.Join(dir, schema.CurrentFile), gens: make(map[uint64]*handle)}
}

// handle returns gen's handle with one more reference, opening it if needed.
// A cached handle whose data file was pruned or replaced is retired first.
func (s *Store) handle(d *dataset, gen uint64, fromCurrent bool) (*handle, error) {
	var st syscall.Stat_t
	s.mu.Lock()
	d = s.canonicalLocked(d)
	h := d.gens[gen]
	s.mu.Unlock()
	if h != nil {
		// One stat tells whether the cached handle still is the file at
		// that name: pruned (ENOENT) or replaced (another inode).
		err := syscall.Stat(h.dataPath, &st)
		s.mu.Lock()
		if err == nil && st.Dev == h.dev && st.Ino == h.ino && !h.retired {
			s.noteCurrentLocked(d, gen, fromCurrent)
			h.refs++
			s.leases++
			s.mu.Unlock()
			return h, nil
		}
		s.retireLocked(h)
		s.mu.Unlock()
		if err != nil {
			if errors.Is(err, syscall.ENOENT) {
				return nil, fs.ErrNotExist
			}
			return nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, h.dataPath, err)
		}
	}
	h, err := s.open(d, gen)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opened++
	if cur := s.datasets[d.name]; cur != nil {
		d = cur
	} else {
		s.datasets[d.name] = d
	}
	h.ds = d
	if other := d.gens[gen]; other != nil && !other.retired && other.dev == h.dev && other.ino == h.ino {
		// Another request opened it meanwhile: keep one.
		s.closeLocked(h)
		h = other
	} else {
		if other != nil {
			s.retireLocked(other)
		}
		d.gens[gen] = h
	}
	s.noteCurrentLocked(d, gen, fromCurrent)
	h.refs++
	s.leases++
	return h, nil
}

// noteCurrentLocked retires the handles of generations older than a newly
// seen current one: they are only opened again for pinned requests.
func (s *Store) noteCurrentLocked(d *dataset, gen uint64, fromCurrent bool) {
	if !fromCurrent || gen <= d.current {
		return
	}
	d.current = gen
	for g, h := range d.gens {
		if g < gen {
			s.retireLocked(h)
		}
	}
}

// canonicalLocked returns the stored entry of d's dataset, if any.
func (s *Store) canonicalLocked(d *dataset) *dataset {
	if cur := s.datasets[d.name]; cur != nil {
		return cur
	}
	return d
}

func (s *Store) retireLocked(h *handle) {
	if h.retired {
		return
	}
	h.retired = true
	if h.ds.gens[h.gen] == h {
		delete(h.ds.gens, h.gen)
	}
	if h.refs == 0 {
		s.closeLocked(h)
	}
}

func (s *Store) closeLocked(h *handle) {
	h.data.Close()
	h.idx.Close()
	s.opened--
}

// open opens gen's data file and index and checks that they belong together.
// A missing file gives an error wrapping fs.ErrNotExist.
func (s *Store) open(d *dataset, gen uint64) (*handle, error) {
	dataPath := filepath.Join(d.dir, schema.DataFile(gen))
	data, err := os.Open(dataPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fs.ErrNotExist
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	idx, err := os.Open(filepath.Join(d.dir, schema.IndexFile(gen)))
	if err != nil {
		data.Close()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fs.ErrNotExist
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	h := &handle{ds: d, gen: gen, dataPath: dataPath, data: data, idx: idx}
	fail := func(err error) (*handle, error) {
		data.Close()
		idx.Close()
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(data.Fd()), &st); err != nil {
		return fail(fmt.Errorf("%w: stat %s: %v", ErrUnavailable, dataPath, err))
	}
	h.dev, h.ino = uint64(st.Dev), st.Ino
	hdr, err := s.firstHeader(data)
	if err != nil {
		return fail(fmt.Errorf("%w: %s: %w", ErrUnavailable, dataPath, err))
	}
	if hdr.Dataset != d.name || hdr.Generation != gen {
		return fail(fmt.Errorf("%w: %s: its header says dataset %q generation %d", ErrUnavailable, dataPath, hdr.Dataset, hdr.Generation))
	}
	if h.index, err = schema.OpenIndex(idx); err != nil {
		return fail(fmt.Errorf("%w: %s: %v", ErrUnavailable, idx.Name(), err))
	}
	if h.index.DataStart() != int64(hdr.Size) {
		return fail(fmt.Errorf("%w: %s: the index starts records at %d, the header is %d bytes", ErrUnavailable, idx.Name(), h.index.DataStart(), hdr.Size))
	}
	raw := make([]byte, hdr.Size)
	if _, err := data.ReadAt(raw, 0); err != nil {
		return fail(fmt.Errorf("%w: %s: %w", ErrUnavailable, dataPath, err))
	}
	h.hdr.Store(&headerSnap{raw: raw, h: hdr}) // a stale raw only costs one decode later
	return h, nil
}

// Retry budget for torn headers: the writer's rewrite is one pwrite, so a
// torn read clears at once; the budget (about 200 ms in all, backing off
// from immediate retries to 20 ms sleeps) only covers a writer descheduled
// mid-write on a loaded machine. A header torn for longer is damaged.
const (
	tornAttempts = 20
	tornMaxSleep = 20 * time.Millisecond
)

func tornBackoff(attempt int) {
	if attempt < 2 {
		return // retry at once: the rewrite is one pwrite
	}
	time.Sleep(min(time.Duration(1<<attempt)*10*time.Microsecond, tornMaxSleep))
}

// firstHeader reads a header with schema.ReadHeader, retrying torn reads.
func (s *Store) firstHeader(f io.ReaderAt) (schema.Header, error) {
	for attempt := 0; ; attempt++ {
		h, err := schema.ReadHeader(f)
		if !errors.Is(err, schema.ErrHeaderTorn) || attempt+1 >= tornAttempts {
			return h, err
		}
		s.tornRetries.Add(1)
		tornBackoff(attempt)
	}
}

var headerBufs = sync.Pool{New: func() any { b := make([]byte, schema.HeaderBlock); return &b }}

// readHeader re-reads h's header with one read of its fixed size. When the
// bytes equal the last ones decoded, the decoded header is reused: no JSON
// decoding on the hot path. Otherwise schema.DecodeHeader checks the
// checksum; a torn read is retried.
func (s *Store) readHeader(h *handle) (schema.Header, error) {
	snap := h.hdr.Load()
	size := len(snap.raw)
	bp := headerBufs.Get().(*[]byte)
	defer headerBufs.Put(bp)
	if cap(*bp) < size {
		*bp = make([]byte, size)
	}
	buf := (*bp)[:size]
	for attempt := 0; ; attempt++ {
		if _, err := h.data.ReadAt(buf, 0); err != nil {
			return schema.Header{}, fmt.Errorf("%w: read header of %s: %v", ErrUnavailable, h.dataPath, err)
		}
		if bytes.Equal(buf, snap.raw) {
			return snap.h, nil
		}
		hdr, err := schema.DecodeHeader(buf)
		if err == nil {
			if hdr.Generation != h.gen || hdr.Dataset != h.ds.name || hdr.Size != size {
				return schema.Header{}, fmt.Errorf("%w: %s: header rewritten as dataset %q generation %d", ErrUnavailable, h.dataPath, hdr.Dataset, hdr.Generation)
			}
			h.hdr.Store(&headerSnap{raw: bytes.Clone(buf), h: hdr})
			return hdr, nil
		}
		if !errors.Is(err, schema.ErrHeaderTorn) || attempt+1 >= tornAttempts {
			return schema.Header{}, fmt.Errorf("%w: %s: %w", ErrUnavailable, h.dataPath, err)
		}
		s.tornRetries.Add(1)
		tornBackoff(attempt)
	}
}

// readCurrent reads a CURRENT file: the decimal generation and '\n'. It
// uses the system calls directly (open, one read, close): os.Open adds
// several more per call for a file that is read once.
func readCurrent(path string) (uint64, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		if err == syscall.ENOENT || err == syscall.ENOTDIR {
			return 0, fs.ErrNotExist
		}
		return 0, fmt.Errorf("%w: open %s: %v", ErrUnavailable, path, err)
	}
	var b [32]byte
	n, err := syscall.Read(fd, b[:])
	syscall.Close(fd)
	if err != nil {
		return 0, fmt.Errorf("%w: read %s: %v", ErrUnavailable, path, err)
	}
	g, ok := schema.ParseCurrent(b[:max(n, 0)])
	if !ok {
		return 0, fmt.Errorf("%w: %s holds %q, not a generation number and a newline", ErrUnavailable, path, b[:max(n, 0)])
	}
	return g, nil
}

// noCurrent explains why CURRENT could not be read: no such dataset, or one
// whose first generation is still being built.
func (s *Store) noCurrent(d *dataset, err error) error {
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	s.forget(d)
	entries, derr := os.ReadDir(d.dir)
	if derr != nil {
		if errors.Is(derr, fs.ErrNotExist) || errors.Is(derr, syscall.ENOTDIR) {
			return fmt.Errorf("%w: %q", ErrDatasetNotFound, d.name)
		}
		return fmt.Errorf("%w: %v", ErrUnavailable, derr)
	}
	for _, e := range entries {
		if _, ok := schema.GenerationOf(e.Name()); ok {
			return fmt.Errorf("%w: %q", ErrNoGeneration, d.name)
		}
	}
	// A folder with neither CURRENT nor generation files (the embedded NATS
	// store in stack, say) is not a dataset.
	return fmt.Errorf("%w: %q", ErrDatasetNotFound, d.name)
}

// forget retires every handle of a dataset whose CURRENT is gone.
func (s *Store) forget(d *dataset) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d = s.canonicalLocked(d)
	for _, h := range d.gens {
		s.retireLocked(h)
	}
	if s.datasets[d.name] == d {
		delete(s.datasets, d.name)
	}
}

// pinnedMissing tells a pruned generation (older than the current one) from
// one that never existed.
func (s *Store) pinnedMissing(d *dataset, pin uint64) error {
	cur, err := readCurrent(d.currentPath)
	if err != nil {
		if err := s.noCurrent(d, err); !errors.Is(err, ErrNoGeneration) {
			return err
		}
		return fmt.Errorf("%w: %s has no generation %d", ErrGenerationNotFound, d.name, pin)
	}
	if pin < cur {
		return fmt.Errorf("%w: %s generation %d was pruned; the current one is %d", ErrGenerationGone, d.name, pin, cur)
	}
	return fmt.Errorf("%w: %s has no generation %d; the current one is %d", ErrGenerationNotFound, d.name, pin, cur)
}

// Close closes every handle no lease holds and retires the others, which
// close on their last Release.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.datasets {
		for _, h := range d.gens {
			s.retireLocked(h)
		}
	}
	clear(s.datasets)
}
