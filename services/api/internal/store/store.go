// Package store keeps the generation files the writer lays out under
// DATA_DIR open for reading, and hands out leases on them.
//
// Acquire finds a dataset's generation (the one CURRENT names, or a pinned
// one) and returns a Lease: one generation at one header state, read with
// ReadAt, its pages found with Range in one read of the offset index
// whatever the offset, its lookup indexes opened with it.
//
// Acquire looks at the disk at most once per Fresh for each dataset and
// generation; the requests in between are served what the last look found.
// A look reads CURRENT (the writer replaces it by rename), stats the data
// file's path (files pruned or replaced by hand are closed once their last
// lease is released, and opened again at their names), and reads the
// header, decoding it only when its bytes changed; a torn read is read
// again.
//
// At most MaxOpen generations are kept open; the least recently used one
// not leased is closed first.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
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

// Fresh is how long a look at the disk stands for the requests that follow
// it: a change on disk is served to every request that arrives at least
// Fresh after it. A client that learns of a commit elsewhere (ingester
// --wait) and then asks is later than that.
const Fresh = time.Millisecond

// defaultFresh is Fresh; the package's tests of what the next Acquire sees
// set it to 0.
var defaultFresh = Fresh

// Store hands out leases on the generations under one DATA_DIR. It is safe
// for concurrent use. The zero value is not usable: call New.
type Store struct {
	dir   string
	log   *slog.Logger
	fresh time.Duration // Fresh; tests change it

	mu       sync.Mutex
	gens     map[genKey]*handle
	currents map[string]look // by dataset: the generation CURRENT named
	clock    uint64          // orders handle use, for closing the least recently used

	opened      atomic.Int64 // handles whose files are open, cached or not
	leases      atomic.Int64 // leases not yet released
	tornRetries atomic.Uint64
}

type genKey struct {
	dataset string
	gen     uint64
}

// look is what a read of the disk found, and when (UnixNano, taken before
// the read).
type look struct {
	gen uint64
	at  int64
}

// New returns a Store reading dataDir. Nothing is opened until Acquire.
func New(dataDir string, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{dir: dataDir, log: log, fresh: defaultFresh,
		gens: make(map[genKey]*handle), currents: make(map[string]look)}
}

// Stats reports the generations with open files and the leases not yet
// released; both return to their resting values once every answer is done.
func (s *Store) Stats() (open, leases int) {
	return int(s.opened.Load()), int(s.leases.Load())
}

// TornRetries counts header reads that came back torn and were read again.
func (s *Store) TornRetries() uint64 { return s.tornRetries.Load() }

// Close closes every generation no lease holds; the others close on their
// last Release.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.gens {
		s.dropLocked(h)
	}
	clear(s.currents)
}

// SweepEvery is how often Sweep runs while the api serves.
const SweepEvery = 10 * time.Second

// Sweep closes the generations whose files are no longer at their names
// (pruned, or replaced by hand), so that their disk space is freed even if
// no request asks for their dataset again. Leased ones close on their last
// Release.
func (s *Store) Sweep() {
	s.mu.Lock()
	gens := slices.Collect(maps.Values(s.gens))
	s.mu.Unlock()
	for _, h := range gens {
		if fi, err := os.Stat(h.dataPath); err != nil || !os.SameFile(fi, h.dataInfo) {
			s.mu.Lock()
			s.dropLocked(h)
			s.mu.Unlock()
		}
	}
}

// Acquire returns a lease on dataset name's generation pin, or on the one
// CURRENT names when pin is 0. name must be a valid dataset name
// (schema.ValidateDataset).
func (s *Store) Acquire(name string, pin uint64) (Lease, error) {
	if pin != 0 {
		l, err := s.lease(name, pin, true)
		if errors.Is(err, fs.ErrNotExist) {
			return Lease{}, s.pinnedMissing(name, pin)
		}
		return l, err
	}
	for attempt := 0; ; attempt++ {
		gen, err := s.current(name)
		if err != nil {
			return Lease{}, s.noCurrent(name, err)
		}
		l, err := s.lease(name, gen, false)
		if !errors.Is(err, fs.ErrNotExist) {
			return l, err
		}
		if attempt == 2 {
			return Lease{}, fmt.Errorf("%w: %s: generation %d named by CURRENT is missing", ErrUnavailable, name, gen)
		}
		// CURRENT moved on and this generation was pruned in between.
		s.mu.Lock()
		delete(s.currents, name)
		s.mu.Unlock()
	}
}

// lease leases gen of dataset name with its header as it is now. Missing
// files give an error wrapping fs.ErrNotExist.
func (s *Store) lease(name string, gen uint64, pinned bool) (Lease, error) {
	h, err := s.handle(name, gen)
	if err != nil {
		return Lease{}, err
	}
	s.leases.Add(1)
	l := Lease{h: h}
	hdr, err := h.readHeader()
	if err == nil && hdr.State != schema.StateComplete {
		if pinned {
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

// handle returns gen's open files with one more reference: the cached ones
// while a stat of the data file's path (at most once per Fresh) shows them
// at their names, else the files opened again.
func (s *Store) handle(name string, gen uint64) (*handle, error) {
	key := genKey{name, gen}
	now := time.Now().UnixNano()
	s.mu.Lock()
	h := s.gens[key]
	if h != nil && now-h.statted < int64(s.fresh) {
		s.useLocked(h)
		s.mu.Unlock()
		return h, nil
	}
	s.mu.Unlock()
	if h != nil {
		fi, err := os.Stat(h.dataPath)
		s.mu.Lock()
		if err == nil && os.SameFile(fi, h.dataInfo) && s.gens[key] == h {
			h.statted = now
			s.useLocked(h)
			s.mu.Unlock()
			return h, nil
		}
		s.dropLocked(h) // pruned or replaced
		s.mu.Unlock()
	}
	h, err := s.open(name, gen)
	if err != nil {
		return nil, err
	}
	h.statted = now
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
	if s.gens[key] == h {
		delete(s.gens, key)
		h.unref()
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
	h := &handle{store: s, dataset: name, gen: gen, dir: dir, dataPath: filepath.Join(dir, schema.DataFile(gen))}
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
