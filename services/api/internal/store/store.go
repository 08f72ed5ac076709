// Package store keeps the generation files the writer lays out under
// DATA_DIR open for reading, and hands out leases on them.
//
// Acquire finds a dataset's generation (the one CURRENT names, or a pinned
// one), makes sure its header is the one on disk (as of Fresh ago at most),
// and returns a Lease: one generation at one header state. A Lease reads
// records with ReadAt and finds a page's bytes with Range, one read of the
// offset index whatever the offset.
//
// What an Acquire looks at, at most once per Fresh for each dataset and
// generation (the requests in between are served what the last look found):
//
//   - CURRENT: a stat of its path. The store holds the CURRENT it last read
//     open, so its inode cannot be reused; while the stat shows that very
//     file unchanged (os.SameFile, size, modification time), the generation
//     read then stands. The writer replaces CURRENT by rename.
//   - the generation's files: opened once and shared by every lease. A stat
//     of the data file's path confirms that they are still the files at
//     their names whenever CURRENT changed, for every pinned request, and
//     at least once per Recheck; pruned or replaced files are closed once
//     their last lease is released (an unlinked file stays readable while
//     open).
//   - the header: read whole (one read of its fixed size) and decoded only
//     when its bytes changed, so an append is served too. A torn read
//     (checksum mismatch) is read again.
//
// At most MaxOpen generations are kept open; the least recently used one
// not leased is closed first.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
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

// MaxOpen is the most generations a Store keeps open between requests.
const MaxOpen = 64

// Recheck is the longest a current generation's open files are served
// without a stat of their path: how late files replaced by hand, CURRENT
// left alone, are seen.
const Recheck = time.Second

// Fresh is how long a look at CURRENT and at a header stands for the
// requests that follow it: a change on disk is served to every request that
// arrives at least Fresh after it. Under load this spares most requests two
// system calls; a client that learns of a commit elsewhere (ingester --wait)
// and then asks is later than that.
const Fresh = time.Millisecond

// defaultFresh is Fresh; the package's tests of what the next Acquire sees
// set it to 0.
var defaultFresh = Fresh

// Store hands out leases on the generations under one DATA_DIR. It is safe
// for concurrent use. The zero value is not usable: call New.
type Store struct {
	dir string
	log *slog.Logger

	mu       sync.Mutex
	gens     map[genKey]*handle
	currents map[string]*current // datasets with an open generation
	clock    uint64              // orders handle use, for closing the least recently used

	opened      atomic.Int64 // handles whose files are open, cached or not
	leases      atomic.Int64 // leases not yet released
	tornRetries atomic.Uint64

	recheck time.Duration // Recheck; tests shorten it
	fresh   time.Duration // Fresh; tests set 0
}

type genKey struct {
	dataset string
	gen     uint64
}

// New returns a Store reading dataDir. Nothing is opened until Acquire.
func New(dataDir string, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{dir: dataDir, log: log, gens: make(map[genKey]*handle),
		currents: make(map[string]*current), recheck: Recheck, fresh: defaultFresh}
}

// Stats reports the generations with open files and the leases not yet
// released; both return to their resting values once every answer is done.
func (s *Store) Stats() (open, leases int) {
	return int(s.opened.Load()), int(s.leases.Load())
}

// TornRetries counts header reads that came back torn and were read again.
func (s *Store) TornRetries() uint64 { return s.tornRetries.Load() }

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

// Release gives the generation back; its files close once no lease holds
// them and it is no longer cached.
func (l Lease) Release() {
	if l.h != nil {
		l.h.store.leases.Add(-1)
		l.h.unref()
	}
}

// Close closes every generation no lease holds; the others close on their
// last Release.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.gens {
		s.dropLocked(h)
	}
	for name, c := range s.currents {
		c.file.Close()
		delete(s.currents, name)
	}
}

// Acquire returns a lease on dataset name's generation pin, or on the one
// CURRENT names when pin is 0. name must be a valid dataset name
// (schema.ValidateDataset).
func (s *Store) Acquire(name string, pin uint64) (Lease, error) {
	if pin != 0 {
		l, err := s.lease(name, pin, nil)
		if errors.Is(err, fs.ErrNotExist) {
			return Lease{}, s.pinnedMissing(name, pin)
		}
		return l, err
	}
	for attempt := 0; ; attempt++ {
		cur, err := s.current(name)
		if err != nil {
			return Lease{}, s.noCurrent(name, err)
		}
		l, err := s.lease(name, cur.gen, cur)
		if !errors.Is(err, fs.ErrNotExist) {
			return l, err
		}
		if attempt == 2 {
			return Lease{}, fmt.Errorf("%w: %s: generation %d named by CURRENT is missing", ErrUnavailable, name, cur.gen)
		}
		// CURRENT moved on and this generation was pruned in between.
	}
}

// lease leases gen of dataset name with its header as it is now. cur is the
// CURRENT that named it, nil for a pinned generation. Missing files give an
// error wrapping fs.ErrNotExist.
func (s *Store) lease(name string, gen uint64, cur *current) (Lease, error) {
	h, err := s.handle(name, gen, cur)
	if err != nil {
		return Lease{}, err
	}
	s.leases.Add(1)
	l := Lease{h: h}
	hdr, err := h.readHeader()
	if err == nil && hdr.State != schema.StateComplete {
		if cur == nil {
			err = fmt.Errorf("%w: %s generation %d is still being built (state %q)", ErrGenerationNotFound, name, gen, hdr.State)
		} else {
			err = fmt.Errorf("%w: %s: CURRENT names generation %d whose state is %q", ErrUnavailable, name, gen, hdr.State)
		}
	}
	if err != nil {
		l.Release()
		return Lease{}, err
	}
	l.Header = *hdr
	return l, nil
}

// handle returns gen's open files with one more reference, opening them if
// they are not open or are no longer the files at their names.
func (s *Store) handle(name string, gen uint64, cur *current) (*handle, error) {
	key := genKey{name, gen}
	s.mu.Lock()
	h := s.gens[key]
	if h != nil && h.trusted(cur, s.recheck) {
		s.useLocked(h)
		s.mu.Unlock()
		return h, nil
	}
	s.mu.Unlock()
	if h != nil {
		fi, err := os.Stat(h.dataPath)
		same := err == nil && os.SameFile(fi, h.dataInfo)
		s.mu.Lock()
		if same && s.gens[key] == h {
			h.confirm(cur)
			s.useLocked(h)
			s.mu.Unlock()
			return h, nil
		}
		if s.gens[key] == h {
			s.dropLocked(h) // pruned or replaced
		}
		s.mu.Unlock()
	}
	h, err := s.open(name, gen)
	if err != nil {
		return nil, err
	}
	h.confirm(cur)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.gens[key]; old != nil {
		s.dropLocked(old) // opened by another request meanwhile: this one is as new
	}
	s.gens[key] = h
	s.useLocked(h)
	s.evictLocked()
	return h, nil
}

// useLocked takes a reference on h, a cached handle, and marks it used.
func (s *Store) useLocked(h *handle) {
	h.refs.Add(1)
	s.clock++
	h.used = s.clock
}

// dropLocked removes h from the cache; its files close with its last lease.
func (s *Store) dropLocked(h *handle) {
	key := genKey{h.dataset, h.gen}
	if s.gens[key] != h {
		return
	}
	delete(s.gens, key)
	h.unref()
	for _, o := range s.gens {
		if o.dataset == h.dataset {
			return
		}
	}
	if c := s.currents[h.dataset]; c != nil {
		c.file.Close()
		delete(s.currents, h.dataset)
	}
}

// evictLocked closes the least recently used generations beyond MaxOpen.
func (s *Store) evictLocked() {
	for len(s.gens) > MaxOpen {
		var lru *handle
		for _, h := range s.gens {
			if lru == nil || h.used < lru.used {
				lru = h
			}
		}
		s.dropLocked(lru)
	}
}

// open opens gen's data file and index and checks that they belong
// together. Missing files give an error wrapping fs.ErrNotExist.
func (s *Store) open(name string, gen uint64) (*handle, error) {
	dir := filepath.Join(s.dir, name)
	h := &handle{store: s, dataset: name, gen: gen, dataPath: filepath.Join(dir, schema.DataFile(gen))}
	var err error
	if h.data, err = openFile(h.dataPath); err != nil {
		return nil, err
	}
	if h.idx, err = openFile(filepath.Join(dir, schema.IndexFile(gen))); err != nil {
		h.data.Close()
		return nil, err
	}
	if err := h.check(); err != nil {
		h.data.Close()
		h.idx.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, h.dataPath, err)
	}
	h.refs.Store(1) // the cache's
	s.opened.Add(1)
	return h, nil
}

func openFile(path string) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fs.ErrNotExist
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return f, nil
}
