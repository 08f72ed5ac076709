// Package pagereader serves byte ranges of records from the generation files
// the writer keeps under DATA_DIR, without ever scanning them.
//
// A Store opens each generation once (its NDJSON data file and its offset
// index) and shares the open handles between requests. Acquire picks the
// generation (the one CURRENT names, or a pinned one), re-reads its
// metadata header with one small read, and returns a Lease: a consistent
// view of one generation at one header state. A page's byte range then
// costs one read of the index whatever its offset (Lease.Span reads the
// entries the page needs at once, and gives where each record ends, so
// that the JSON join need not scan the records for their newlines); the
// read is a copy out of the index mapped read-only, with no system call,
// whenever the entries lie in the mapping.
//
// Per request, Acquire validates what it keeps with no system call and no
// lock in the usual case, and with one when the header promises nothing:
//
//   - the whole header block, compared byte for byte with the last one
//     decoded, through a read-only mapping of it (the page cache itself,
//     no system call): an append, a rollback or a torn rewrite is never
//     missed, and changed bytes are decoded from a private copy whose
//     checksum is checked. While the current generation's header says
//     superseded false, CURRENT has not moved off it: the writer marks the
//     header before it changes CURRENT (pkg/schema/docs/header.md), so
//     nothing else is looked at (see leaseUnmoved) but once per
//     dataRecheck, for changes made by hand. Otherwise:
//   - an fstat of the CURRENT it last read, which it keeps open: a CURRENT
//     renamed into place or removed unlinks that file, and an edit in place
//     changes its size and times, so either is seen by the very next
//     request. A stat of CURRENT's path, compared with the kept file's
//     identity (no other file can take its inode while it is open), is
//     made once per dataRecheck on top, for a dataset folder replaced by
//     hand;
//   - a stat of the data file, compared with the open one's inode: a
//     pruned or replaced file is seen at once. For the generation CURRENT
//     names, one such stat made while the same CURRENT is in place holds
//     for dataRecheck: the writer prunes or replaces that generation's
//     files only after replacing or removing CURRENT, so only files
//     replaced by hand, CURRENT left alone, are seen up to a second late.
//
// The stats of paths are relative to DATA_DIR held open (see root).
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

	"golang.org/x/sys/unix"

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
	dir  string
	log  *slog.Logger
	root *root

	mu       sync.Mutex
	datasets map[string]*dataset // only datasets that had a generation opened
	opened   int                 // handles with open files (in the map or retired and leased)

	// published is a copy of datasets, replaced (under mu) whenever
	// datasets changes: Acquire looks a dataset up without the lock.
	published atomic.Pointer[map[string]*dataset]
	leases    atomic.Int64 // leases not yet released

	tornRetries atomic.Uint64

	// recheck is dataRecheck; tests shorten it.
	recheck time.Duration
}

type dataset struct {
	name        string
	dir         string
	currentPath string
	currentRel  relPath // currentPath under DATA_DIR
	current     uint64  // highest generation CURRENT has named
	gens        map[uint64]*handle
	// hot is the handle of generation current while it is not retired:
	// Acquire leases it without the lock (set and cleared under Store.mu).
	hot atomic.Pointer[handle]

	// cur is CURRENT as last read, set only on the stored entry of a
	// dataset (under Store.mu) and swapped atomically.
	cur atomic.Pointer[currentFile]
}

// currentFile is one CURRENT file as read: the generation it names and the
// identity the file had when read, kept open through fd.
//
// Holding the file open is what makes one stat enough to validate it: the
// writer replaces CURRENT only by renaming a new file over it, and a new
// file cannot get the inode of a file that is still open, so a stat of the
// path that shows this inode (and size, mtime and ctime, which also catch
// an edit in place) shows this very file. A stat that shows anything else
// means CURRENT moved on, and it is read again.
//
// Between stats of the path, fstat of the descriptor kept open is enough
// for up to dataRecheck (see fresh): the writer replaces CURRENT by
// renaming over it and --rebuild removes it, and either unlinks this file,
// which its link count then shows; an edit in place shows in its size and
// times, and a rename or a new link in its ctime. Only a change that leaves
// this file alone, such as the dataset folder moved away by hand and made
// again, goes unseen until the next stat of the path.
type currentFile struct {
	id  fileID
	gen uint64
	fd  int

	// foundAt is when (monoNow) a stat of CURRENT's path last showed this
	// file.
	foundAt atomic.Int64

	// vouched is the handle of generation gen whose data file a stat
	// showed to be the file at its name while this CURRENT was in force,
	// and vouchedAt when (monoNow). Until dataRecheck has passed, a request
	// that finds this CURRENT still in place leases that handle without a
	// stat of the data file: the writer never prunes or replaces the files
	// of the generation CURRENT names without replacing or removing CURRENT
	// first. Only a change made by hand goes unseen, for at most dataRecheck.
	vouched   atomic.Pointer[handle]
	vouchedAt atomic.Int64
}

// dataRecheck is how long a stat of the current generation's data file is
// trusted while CURRENT stays the same file (see currentFile.vouched): how
// late a data file pruned or replaced by hand, CURRENT left alone, is seen.
const dataRecheck = time.Second

// fresh reports whether c is still the CURRENT in force, as far as one
// fstat of its descriptor can tell: the file is still linked and unchanged,
// and a stat of the path showed it less than recheck ago. The descriptor
// may have been closed and its number reused meanwhile (c was replaced by
// another request); another file's stat then differs from c.id.
func (c *currentFile) fresh(recheck time.Duration) bool {
	if monoNow()-c.foundAt.Load() >= int64(recheck) {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(c.fd, &st); err != nil {
		return false
	}
	return st.Nlink > 0 && idOf(&st) == c.id
}

// vouches reports whether h was seen to be gen's data file while c was in
// force, less than recheck ago.
func (c *currentFile) vouches(h *handle, recheck time.Duration) bool {
	return c.vouched.Load() == h && monoNow()-c.vouchedAt.Load() < int64(recheck)
}

// vouch records that a stat made while c was in force showed h's data file
// at its name.
func (c *currentFile) vouch(h *handle, at int64) {
	c.vouchedAt.Store(at)
	c.vouched.Store(h)
}

var monoEpoch = time.Now()

// monoNow is the monotonic clock, in nanoseconds since the process started.
func monoNow() int64 { return int64(time.Since(monoEpoch)) }

// fileID is what a stat says about a file's identity and last change.
type fileID struct {
	dev, ino, size                   uint64
	mtimeS, mtimeNs, ctimeS, ctimeNs int64
}

func idOf(st *unix.Stat_t) fileID {
	return fileID{
		dev: uint64(st.Dev), ino: st.Ino, size: uint64(st.Size),
		mtimeS: int64(st.Mtim.Sec), mtimeNs: int64(st.Mtim.Nsec),
		ctimeS: int64(st.Ctim.Sec), ctimeNs: int64(st.Ctim.Nsec),
	}
}

// handle is one generation's open files. retired is guarded by Store.mu;
// refs and the header snapshot are atomic.
type handle struct {
	ds       *dataset
	gen      uint64
	dataPath string
	dataRel  relPath // dataPath under DATA_DIR
	data     *os.File
	dataFd   int // data's descriptor
	idx      *os.File
	index    *schema.Index
	dev, ino uint64
	hdr      atomic.Pointer[headerSnap]
	// hdrMap is the data file's header block as mapped (the start of
	// dataMap: the page cache itself, so it shows every write as a read
	// would), or nil.
	hdrMap []byte
	// idxMap is the index file mapped read-only (MAP_SHARED), as long as
	// it was when opened, or nil: Span copies a page's entries out of it
	// instead of reading them with a system call (see readEntries).
	// idxReads counts those copies, to drop the mapped pages now and then
	// (see idxSweepEvery). Unmapped with the files.
	idxMap   []byte
	idxReads atomic.Uint32
	// dataMap is the data file mapped read-only (MAP_SHARED), as long as
	// it was when opened, or nil: the header is compared through it and
	// small reads of records are copies out of it instead of system calls
	// (see dataFile). dataCopied counts the bytes copied, to drop the
	// mapped pages now and then (see dataSweepBytes). Unmapped with the
	// files, when no lease holds the handle.
	dataMap    []byte
	dataCopied atomic.Uint64

	// refs counts the leases, plus one while the handle is not retired;
	// the files close when it reaches 0, after which it never rises again.
	refs    atomic.Int64
	retired bool
}

// tryRef takes a reference unless the handle's files are closed (or being
// closed).
func (h *handle) tryRef() bool {
	for {
		r := h.refs.Load()
		if r <= 0 {
			return false
		}
		if h.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

// headerSnap is a decoded header and the exact bytes it came from: a request
// whose read returns the same bytes reuses the decoded header.
type headerSnap struct {
	raw []byte
	// used is the length of raw's JSON object, the padding left out: a
	// block whose first used bytes are raw's holds the same header (see
	// readHeader).
	used int
	h    schema.Header
	memo atomic.Pointer[[]byte] // Lease.SetMemo
}

// newSnap pairs h with raw, the bytes it was decoded from.
func newSnap(raw []byte, h schema.Header) *headerSnap {
	used := bytes.LastIndexByte(raw, '}') + 1
	if used == 0 {
		used = len(raw)
	}
	return &headerSnap{raw: raw, used: used, h: h}
}

// New returns a Store reading dataDir. Nothing is opened until Acquire.
func New(dataDir string, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{dir: dataDir, log: log, root: newRoot(dataDir), datasets: make(map[string]*dataset), recheck: dataRecheck}
	s.publishLocked()
	return s
}

// Dir is the data directory the Store reads.
func (s *Store) Dir() string { return s.dir }

// Stats reports the generations with open files and the leases not yet
// released; both return to their resting values once every response is done.
func (s *Store) Stats() (open, leases int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened, int(s.leases.Load())
}

// publishLocked makes Acquire's lock-free view of datasets match it.
func (s *Store) publishLocked() {
	m := make(map[string]*dataset, len(s.datasets))
	for k, v := range s.datasets {
		m[k] = v
	}
	s.published.Store(&m)
}

// TornRetries counts header reads that came back torn and were retried.
func (s *Store) TornRetries() uint64 { return s.tornRetries.Load() }

// Lease is one generation at one header state. Header is what the caller
// serves: its Count bounds the records that may be read. A Lease must be
// released exactly once; its methods must not be used after Release.
type Lease struct {
	h      *handle
	s      *Store
	snap   *headerSnap
	Header schema.Header
}

// Memo is what SetMemo stored for this lease's header state, or nil. It is
// for answers derived from the header alone (the metadata body): they are
// computed once per header state and reused until the header changes. The
// bytes must not be modified.
func (l Lease) Memo() []byte {
	if l.snap == nil {
		return nil
	}
	if m := l.snap.memo.Load(); m != nil {
		return *m
	}
	return nil
}

// SetMemo stores b with this lease's header state (see Memo). b must not be
// modified afterwards.
func (l Lease) SetMemo(b []byte) {
	if l.snap != nil {
		l.snap.memo.Store(&b)
	}
}

// Data is the generation's data file, for reading while the lease is held.
// Its small reads are copies out of the mapped file (see dataFile).
func (l Lease) Data() io.ReaderAt { return (*dataFile)(l.h) }

// DataFd is the descriptor of the data file (for sendfile), valid while the
// lease is held. Read it only at explicit offsets: it is shared.
func (l Lease) DataFd() int { return l.h.dataFd }

// ReadAt reads the generation's data file, as Data does.
func (l Lease) ReadAt(p []byte, off int64) (int, error) { return (*dataFile)(l.h).ReadAt(p, off) }

// Release gives the generation back; its files close once no lease holds
// them and it is no longer the one served.
func (l Lease) Release() {
	if l.h == nil {
		return
	}
	l.s.leases.Add(-1)
	if l.h.refs.Add(-1) == 0 {
		// Retired, and this was the last lease.
		l.s.mu.Lock()
		l.s.closeLocked(l.h)
		l.s.mu.Unlock()
	}
}

// Acquire returns a lease on dataset name's generation pin, or on the one
// CURRENT names when pin is 0. name must already be a valid dataset name
// (schema.ValidateDataset). The lease's header is complete and re-read for
// this call, so a generation that grows (append mode) is seen as it grows.
func (s *Store) Acquire(name string, pin uint64) (Lease, error) {
	d := s.lookup(name)
	if pin == 0 {
		if l, ok := s.leaseUnmoved(d); ok {
			return l, nil
		}
	}
	for attempt := 0; ; attempt++ {
		gen := pin
		var cur *currentFile
		if pin == 0 {
			g, c, err := s.currentGen(d)
			if err != nil {
				return Lease{}, s.noCurrent(d, err)
			}
			gen, cur = g, c
		}
		h, err := s.handle(d, gen, pin == 0, cur)
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
		snap, err := s.readHeader(h)
		var hdr schema.Header
		if err == nil {
			hdr = snap.h
		}
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
		return Lease{h: h, s: s, snap: snap, Header: hdr}, nil
	}
}

// leaseUnmoved leases the current generation with no system call at all,
// when its header promises that CURRENT has not moved off it (superseded
// false: the writer marks the header before CURRENT moves on, see
// pkg/schema/docs/header.md). It needs what the usual path checks for
// changes made by hand to have been checked less than recheck ago: CURRENT
// at its path, naming this generation, and the handle's data file at its
// name. ok false leaves it to the usual path.
func (s *Store) leaseUnmoved(d *dataset) (l Lease, ok bool) {
	c, h := d.cur.Load(), d.hot.Load()
	if c == nil || h == nil || h.gen != c.gen || !c.vouches(h, s.recheck) ||
		monoNow()-c.foundAt.Load() >= int64(s.recheck) || !h.tryRef() {
		return Lease{}, false
	}
	s.leases.Add(1)
	l = Lease{h: h, s: s}
	snap, err := s.readHeader(h)
	if err != nil || !snap.h.Unmoved() || snap.h.State != schema.StateComplete {
		l.Release()
		return Lease{}, false
	}
	l.snap, l.Header = snap, snap.h
	return l, true
}

// lookup returns the known dataset entry, or a fresh one that is stored only
// once one of its generations opens (so unknown names do not grow the map).
func (s *Store) lookup(name string) *dataset {
	if d := (*s.published.Load())[name]; d != nil {
		return d
	}
	name = strings.Clone(name)
	dir := filepath.Join(s.dir, name)
	return &dataset{name: name, dir: dir, currentPath: filepath.Join(dir, schema.CurrentFile),
		currentRel: newRelPath(name, schema.CurrentFile), gens: make(map[uint64]*handle)}
}

// handle returns gen's handle with one more reference, opening it if needed.
// A cached handle whose data file was pruned or replaced is retired first.
// cur is the CURRENT in force that named gen, if any and kept.
func (s *Store) handle(d *dataset, gen uint64, fromCurrent bool, cur *currentFile) (*handle, error) {
	var st unix.Stat_t
	// The usual case, without the lock: the current generation's handle,
	// still the file at its name (vouched for under the CURRENT in force,
	// or one stat: not pruned, not replaced), and still open. It may have
	// been retired meanwhile (a newer generation, seen by another request
	// after this one read CURRENT): serving it is what this request would
	// have done a moment earlier, and its files stay open while leased.
	if h := d.hot.Load(); h != nil && h.gen == gen {
		if cur != nil && cur.vouches(h, s.recheck) && h.tryRef() {
			s.leases.Add(1)
			return h, nil
		}
		at := monoNow()
		err := s.root.stat(h.dataRel, &st)
		if err == nil && uint64(st.Dev) == h.dev && st.Ino == h.ino && h.tryRef() {
			if cur != nil { // it named gen
				cur.vouch(h, at)
			}
			s.leases.Add(1)
			return h, nil
		}
	}
	s.mu.Lock()
	d = s.canonicalLocked(d)
	h := d.gens[gen]
	s.mu.Unlock()
	if h != nil {
		// One stat tells whether the cached handle still is the file at
		// that name: pruned (ENOENT) or replaced (another inode).
		err := s.root.stat(h.dataRel, &st)
		s.mu.Lock()
		if err == nil && uint64(st.Dev) == h.dev && st.Ino == h.ino && !h.retired {
			s.noteCurrentLocked(d, gen, fromCurrent)
			s.noteHotLocked(d, h)
			h.refs.Add(1) // not retired: refs ≥ 1
			s.leases.Add(1)
			s.mu.Unlock()
			return h, nil
		}
		s.retireLocked(h)
		s.mu.Unlock()
		if err != nil {
			if err == unix.ENOENT {
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
		s.publishLocked()
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
		h.refs.Store(1) // the map's reference
		d.gens[gen] = h
	}
	s.noteCurrentLocked(d, gen, fromCurrent)
	s.noteHotLocked(d, h)
	h.refs.Add(1)
	s.leases.Add(1)
	return h, nil
}

// noteHotLocked makes h the handle Acquire leases without the lock, if it
// is the current generation's.
func (s *Store) noteHotLocked(d *dataset, h *handle) {
	if h.gen == d.current && !h.retired && d.hot.Load() != h {
		d.hot.Store(h)
	}
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
	if h.ds.hot.Load() == h {
		h.ds.hot.Store(nil)
	}
	if h.refs.Add(-1) == 0 { // the map's reference
		s.closeLocked(h)
	}
}

func (s *Store) closeLocked(h *handle) {
	h.hdrMap = nil // part of dataMap
	for _, m := range []*[]byte{&h.dataMap, &h.idxMap} {
		if *m != nil {
			unix.Munmap(*m)
			*m = nil
		}
	}

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
	h := &handle{ds: d, gen: gen, dataPath: dataPath, dataRel: newRelPath(d.name, schema.DataFile(gen)), data: data, idx: idx}
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
	h.dataFd = int(data.Fd())
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
	// The snapshot pairs a header with the very bytes it was decoded from:
	// bytes read after hdr was decoded may already be newer (an append in
	// between), and matching them would keep serving the older hdr. Bytes
	// that do not decode (torn) are zeroed, which no header block matches:
	// the first Acquire decodes again.
	if again, err := schema.DecodeHeader(raw); err == nil && again.Dataset == hdr.Dataset && again.Generation == hdr.Generation && again.Size == hdr.Size {
		hdr = again
	} else {
		clear(raw)
	}
	h.hdr.Store(newSnap(raw, hdr))
	// The data file mapped as long as it was when opened (records
	// appended later are read with a system call): Acquire compares the
	// header block through it with the last bytes decoded, without a
	// system call. Where mapping fails (a file system without mmap), every
	// Acquire reads the block instead.
	h.dataMap = mapWhole(int(data.Fd()), st.Size)
	if len(h.dataMap) >= hdr.Size {
		h.hdrMap = h.dataMap[:hdr.Size]
	}
	// The index mapped the same way; an empty or unmappable one is read.
	if err := syscall.Fstat(int(idx.Fd()), &st); err == nil {
		h.idxMap = mapWhole(int(idx.Fd()), st.Size)
	}
	return h, nil
}

// mapWhole maps the first size bytes of fd read-only (MAP_SHARED), or
// returns nil when size is 0 or the mapping fails.
func mapWhole(fd int, size int64) []byte {
	if size <= 0 {
		return nil
	}
	m, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	return m
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

// readHeader re-reads h's header, all of its fixed size. When the bytes
// equal the last ones decoded, the decoded header is reused: no JSON
// decoding on the hot path. The comparison reads the mapped header block
// (no system call); when it differs, or there is no mapping, the block is
// read into a private buffer and schema.DecodeHeader checks its checksum
// there (never decoding bytes that may change under it); a torn read is
// retried.
//
// The mapped block is compared only as far as the last JSON object
// decoded (snap.used), not through its padding: the writer rewrites the
// whole block with one write, and a header whose first snap.used bytes
// are those of a complete object that ends in its checksum member (which
// no string can hold unescaped) is that header. Bytes past them that
// differ are a rewrite caught half way, whose first bytes have not
// landed: the header as it was, a moment before that write.
func (s *Store) readHeader(h *handle) (*headerSnap, error) {
	snap := h.hdr.Load()
	if h.hdrMap != nil {
		same, err := equalMapped(h.hdrMap[:snap.used], snap.raw[:snap.used])
		if err != nil {
			return nil, fmt.Errorf("%w: read header of %s: %v", ErrUnavailable, h.dataPath, err)
		}
		if same {
			return snap, nil
		}
	}
	size := len(snap.raw)
	bp := headerBufs.Get().(*[]byte)
	defer headerBufs.Put(bp)
	if cap(*bp) < size {
		*bp = make([]byte, size)
	}
	buf := (*bp)[:size]
	for attempt := 0; ; attempt++ {
		if _, err := h.data.ReadAt(buf, 0); err != nil {
			return nil, fmt.Errorf("%w: read header of %s: %v", ErrUnavailable, h.dataPath, err)
		}
		if bytes.Equal(buf, snap.raw) {
			return snap, nil
		}
		hdr, err := schema.DecodeHeader(buf)
		if err == nil {
			if hdr.Generation != h.gen || hdr.Dataset != h.ds.name || hdr.Size != size {
				return nil, fmt.Errorf("%w: %s: header rewritten as dataset %q generation %d", ErrUnavailable, h.dataPath, hdr.Dataset, hdr.Generation)
			}
			snap = newSnap(bytes.Clone(buf), hdr)
			h.hdr.Store(snap)
			return snap, nil
		}
		if !errors.Is(err, schema.ErrHeaderTorn) || attempt+1 >= tornAttempts {
			return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, h.dataPath, err)
		}
		s.tornRetries.Add(1)
		tornBackoff(attempt)
	}
}

// currentGen returns the generation d's CURRENT names, and CURRENT as read
// (nil for a dataset the Store does not keep yet). While the remembered
// CURRENT is fresh (an fstat of it), it takes the generation read then.
// Otherwise it stats CURRENT's path and, when the stat shows the file it
// read last time (see currentFile), takes that generation; else it reads
// CURRENT again and, for a dataset the Store keeps, remembers what it
// read. The stat comes before the remembered file is looked at: a
// remembered file is open until it is replaced, so it was open at the time
// of the stat.
func (s *Store) currentGen(d *dataset) (uint64, *currentFile, error) {
	if c := d.cur.Load(); c != nil && c.fresh(s.recheck) {
		return c.gen, c, nil
	}
	var st unix.Stat_t
	at := monoNow()
	if err := s.root.stat(d.currentRel, &st); err != nil {
		if err == unix.ENOENT || err == unix.ENOTDIR {
			return 0, nil, fs.ErrNotExist
		}
		return 0, nil, fmt.Errorf("%w: stat %s: %v", ErrUnavailable, d.currentPath, err)
	}
	if c := d.cur.Load(); c != nil && c.id == idOf(&st) {
		c.foundAt.Store(at)
		return c.gen, c, nil
	}
	c, err := openCurrent(d.currentPath)
	if err != nil {
		return 0, nil, err
	}
	c.foundAt.Store(at)
	// This request answers from what it read itself, whatever another one
	// remembers meanwhile: a later stat that disagrees reads CURRENT again.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.datasets[d.name] != d {
		// A dataset not kept (yet): nothing to remember it in.
		syscall.Close(c.fd)
		return c.gen, nil, nil
	}
	if old := d.cur.Swap(c); old != nil {
		syscall.Close(old.fd)
	}
	return c.gen, c, nil
}

// dropCurrentLocked forgets d's remembered CURRENT and closes it.
func dropCurrentLocked(d *dataset) {
	if old := d.cur.Swap(nil); old != nil {
		syscall.Close(old.fd)
	}
}

// openCurrent opens and reads CURRENT, and returns it still open with the
// identity of the file it read (fstat of the open file, so a rename in
// between cannot pair one file's identity with another's contents).
func openCurrent(path string) (*currentFile, error) {
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
			return nil, fs.ErrNotExist
		}
		return nil, fmt.Errorf("%w: open %s: %v", ErrUnavailable, path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("%w: stat %s: %v", ErrUnavailable, path, err)
	}
	g, err := readCurrentFd(fd, path)
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return &currentFile{id: idOf(&st), gen: g, fd: fd}, nil
}

// equalMapped compares a mapped file region with b. A file cut shorter
// than the mapping (by hand: the writer never cuts into a header) makes the
// access fault; that is an error here, not a crash.
func equalMapped(m, b []byte) (same bool, err error) {
	err = readMapped("data file", func() { same = bytes.Equal(m, b) })
	return same, err
}

// readCurrentFd reads an open CURRENT file from its start.
func readCurrentFd(fd int, path string) (uint64, error) {
	var b [32]byte
	var n int
	var err error
	for {
		n, err = syscall.Pread(fd, b[:], 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("%w: read %s: %v", ErrUnavailable, path, err)
	}
	g, ok := schema.ParseCurrent(b[:max(n, 0)])
	if !ok {
		return 0, fmt.Errorf("%w: %s holds %q, not a generation number and a newline", ErrUnavailable, path, b[:max(n, 0)])
	}
	return g, nil
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
	defer syscall.Close(fd)
	return readCurrentFd(fd, path)
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
		s.publishLocked()
		dropCurrentLocked(d)
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
		dropCurrentLocked(d)
	}
	clear(s.datasets)
	s.publishLocked()
	s.root.close()
}
