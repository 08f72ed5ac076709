package disk

import (
	"io/fs"
	"sync"
	"syscall"
)

// Faulty wraps an FS and injects the failures a full or failing disk
// produces. It exists for tests (of this module and of whoever embeds the
// writer), and is safe for concurrent use.
//
// Space models a disk that is almost full: every byte a write adds past a
// file's current end uses up one byte of space; a write that needs more than
// is left writes what fits (a short write, as on a real disk) and fails
// with ENOSPC. Rewriting bytes inside a file, as the header rewrite does,
// needs no space. Fail makes every write, sync, truncate, rename and remove
// fail with the given error until it is cleared.
type Faulty struct {
	FS
	mu    sync.Mutex
	space int64 // < 0: unlimited
	err   error
	hook  func(op, name string, off int64) error
	// Writes counts WriteAt calls that reached the underlying file.
	writes int
}

// NewFaulty wraps fsys with unlimited space and no failure.
func NewFaulty(fsys FS) *Faulty { return &Faulty{FS: fsys, space: -1} }

// SetSpace leaves n more bytes of space; n < 0 means unlimited.
func (f *Faulty) SetSpace(n int64) {
	f.mu.Lock()
	f.space = n
	f.mu.Unlock()
}

// Fail makes every mutating operation fail with err; nil clears it.
func (f *Faulty) Fail(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// Hook, when set, is asked before every write ("write", with its offset),
// sync ("sync"), truncate, rename and remove; an error it returns is the
// operation's. It lets a test fail one precise operation.
func (f *Faulty) Hook(h func(op, name string, off int64) error) {
	f.mu.Lock()
	f.hook = h
	f.mu.Unlock()
}

// Writes is the number of writes that reached the disk, whole or short.
func (f *Faulty) Writes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

func (f *Faulty) failure() error { return f.check("", "", 0) }

func (f *Faulty) check(op, name string, off int64) error {
	f.mu.Lock()
	err, hook := f.err, f.hook
	f.mu.Unlock()
	if err == nil && hook != nil && op != "" {
		err = hook(op, name, off)
	}
	return err
}

// OpenFile opens name through the wrapped FS. Creating a file fails while
// Fail is set.
func (f *Faulty) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	if flag&(syscall.O_CREAT|syscall.O_TRUNC) != 0 {
		if err := f.failure(); err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
	}
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultyFile{File: file, fs: f}, nil
}

// Remove fails while Fail is set.
func (f *Faulty) Remove(name string) error {
	if err := f.check("remove", name, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: name, Err: err}
	}
	return f.FS.Remove(name)
}

// Rename fails while Fail is set.
func (f *Faulty) Rename(oldpath, newpath string) error {
	if err := f.check("rename", newpath, 0); err != nil {
		return &fs.PathError{Op: "rename", Path: oldpath, Err: err}
	}
	return f.FS.Rename(oldpath, newpath)
}

// SyncDir fails while Fail is set.
func (f *Faulty) SyncDir(name string) error {
	if err := f.check("sync", name, 0); err != nil {
		return &fs.PathError{Op: "fsync", Path: name, Err: err}
	}
	return f.FS.SyncDir(name)
}

type faultyFile struct {
	File
	fs *Faulty
}

func (f *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.check("write", f.Name(), off); err != nil {
		return 0, &fs.PathError{Op: "write", Path: f.Name(), Err: err}
	}
	st, err := f.File.Stat()
	if err != nil {
		return 0, err
	}
	f.fs.mu.Lock()
	allowed := len(p)
	if f.fs.space >= 0 {
		grow := off + int64(len(p)) - st.Size()
		if grow > f.fs.space {
			allowed = int(max(st.Size()-off, 0) + f.fs.space)
			allowed = min(allowed, len(p))
		}
		if used := off + int64(allowed) - st.Size(); used > 0 {
			f.fs.space -= used
		}
	}
	f.fs.writes++
	f.fs.mu.Unlock()
	n, err := f.File.WriteAt(p[:allowed], off)
	if err == nil && allowed < len(p) {
		err = &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return n, err
}

func (f *faultyFile) Sync() error {
	if err := f.fs.check("sync", f.Name(), 0); err != nil {
		return &fs.PathError{Op: "fsync", Path: f.Name(), Err: err}
	}
	return f.File.Sync()
}

func (f *faultyFile) Truncate(size int64) error {
	if err := f.fs.check("truncate", f.Name(), size); err != nil {
		return &fs.PathError{Op: "truncate", Path: f.Name(), Err: err}
	}
	return f.File.Truncate(size)
}
