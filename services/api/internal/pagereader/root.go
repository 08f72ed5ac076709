package pagereader

import (
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// root is DATA_DIR held open as a directory. The stats of the hot path (a
// dataset's CURRENT and the data file of the generation served) are made
// relative to it with fstatat, which spares the kernel a walk of DATA_DIR's
// whole path twice a request (about half of each stat's cost).
//
// A name not found through it is looked up again by its full path before
// the answer is trusted, so a DATA_DIR deleted and made again, or replaced
// by another directory, is noticed at the first miss and opened again. (A
// DATA_DIR renamed away while it keeps its files is not: it is served
// until the api restarts, as a process's working directory would be.)
type root struct {
	dir string

	fd     atomic.Int64 // -1: not open
	mu     sync.Mutex   // opening
	stale  []int        // replaced fds, closed by Close (another request may still use one)
	closed bool
}

func newRoot(dir string) *root {
	r := &root{dir: dir}
	r.fd.Store(-1)
	return r
}

// get returns the open DATA_DIR, opening it if needed; -1 if it cannot be
// opened (then callers use full paths).
func (r *root) get() int {
	if fd := r.fd.Load(); fd >= 0 {
		return int(fd)
	}
	return r.reopen(-1)
}

// reopen opens DATA_DIR again unless another request already replaced
// seen, the descriptor the caller found stale.
func (r *root) reopen(seen int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := int(r.fd.Load()); cur != seen || r.closed {
		return cur
	}
	fd, err := openDir(r.dir)
	if err != nil {
		return seen
	}
	if seen >= 0 {
		r.stale = append(r.stale, seen)
	}
	r.fd.Store(int64(fd))
	return fd
}

// close closes every descriptor; later calls use full paths.
func (r *root) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if fd := int(r.fd.Swap(-1)); fd >= 0 {
		unix.Close(fd)
	}
	for _, fd := range r.stale {
		unix.Close(fd)
	}
	r.stale = nil
}

// relPath is a path under DATA_DIR, kept NUL-terminated for fstatat.
type relPath []byte

func newRelPath(parts ...string) relPath {
	return relPath(filepath.Join(parts...) + "\x00")
}

func (p relPath) String() string { return string(p[:len(p)-1]) }

// stat stats rel into st: fstatat through the open DATA_DIR, confirmed by
// the full path when that finds nothing.
func (r *root) stat(rel relPath, st *unix.Stat_t) error {
	fd := r.get()
	if fd >= 0 {
		err := retryEINTR(func() error { return fstatat(fd, rel, st) })
		if err != unix.ENOENT && err != unix.ENOTDIR {
			return err
		}
	}
	err := retryEINTR(func() error { return unix.Stat(filepath.Join(r.dir, rel.String()), st) })
	if err == nil && fd >= 0 {
		// Found by path, not through the open directory: it is stale.
		r.reopen(fd)
	}
	return err
}

func openDir(dir string) (int, error) {
	var fd int
	err := retryEINTR(func() (err error) {
		fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return err
	})
	return fd, err
}

func retryEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}
