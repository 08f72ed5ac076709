// Package checkpoint keeps the writer's two files at the top of DATA_DIR:
// the checkpoint (how far the stream has been applied, so a restart does
// not read it from the beginning) and the lock that makes the writer of a
// DATA_DIR a singleton.
//
//	DATA_DIR/.writer-checkpoint   {"stream":"ROWS","stream_created":"…","seq":1234}
//	DATA_DIR/.writer.lock         flock(2)ed while a writer runs; holds its pid
//
// The checkpoint may lag behind the files (it is written at most every
// CHECKPOINT_INTERVAL): a restart replays from it and the datasets skip
// what their files already hold. It must never run ahead of them, so it is
// written only after a batch is fully applied.
package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
)

// File and LockFile are the names of the checkpoint and the lock in DATA_DIR.
const (
	File     = ".writer-checkpoint"
	LockFile = ".writer.lock"
)

// Checkpoint is the content of the checkpoint file.
type Checkpoint struct {
	// Stream is the stream the files were built from.
	Stream string `json:"stream"`
	// StreamCreated is the stream's creation time: a stream deleted and
	// created again starts its sequences over, and the files no longer
	// describe it.
	StreamCreated time.Time `json:"stream_created"`
	// Seq is a stream sequence up to which every message is applied.
	Seq uint64 `json:"seq"`
}

// Load reads the checkpoint in dir. A missing file gives ok false and no
// error; a damaged one gives an error (the caller may start over from the
// first message, which is always safe).
func Load(fsys disk.FS, dir string) (c Checkpoint, ok bool, err error) {
	b, err := fsys.ReadFile(filepath.Join(dir, File))
	if errors.Is(err, fs.ErrNotExist) {
		return c, false, nil
	}
	if err != nil {
		return c, false, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, false, fmt.Errorf("%s: %w", filepath.Join(dir, File), err)
	}
	return c, true, nil
}

// Save replaces the checkpoint in dir atomically (synced unless durable is
// false).
func Save(fsys disk.FS, dir string, c Checkpoint, durable bool) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return disk.WriteFileAtomic(fsys, filepath.Join(dir, File), append(b, '\n'), durable)
}

// Remove deletes the checkpoint in dir (writer --rebuild).
func Remove(fsys disk.FS, dir string) error {
	return disk.RemoveIfExists(fsys, filepath.Join(dir, File))
}

// ErrLocked is wrapped by the error Lock returns when another writer holds
// the lock of the same DATA_DIR.
var ErrLocked = errors.New("another writer is running on this DATA_DIR")

// Lock is a held writer lock.
type Lock struct{ f *os.File }

// Acquire takes the lock of dir without waiting. If another process (or
// another Lock in this one) holds it, the error wraps ErrLocked and names
// the holder's pid. The lock is released by Release or when the process
// dies, however it dies.
func Acquire(dir string) (*Lock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = fmt.Sprintf(" (pid %d)", pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held%s; one writer per DATA_DIR, stop the other one or give this one another DATA_DIR", ErrLocked, path, holder)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release gives the lock up.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}
