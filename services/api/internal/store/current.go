package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// current is a dataset's CURRENT as last read: the generation it names, and
// the file itself, held open so that no other file can take its inode while
// a stat of the path is compared with it.
type current struct {
	gen  uint64
	file *os.File
	info os.FileInfo
	seen atomic.Int64 // when a stat last showed it in force (UnixNano, taken before the stat)
}

// errNotDir is what a path through a file that is not a directory gives.
var errNotDir error = syscall.ENOTDIR

// maxCurrents bounds the CURRENT files kept open (one per dataset served).
const maxCurrents = 4 * MaxOpen

// current returns the CURRENT of dataset name in force now: the one kept
// when a stat of its path shows that file unchanged, else the file read
// again. A missing CURRENT is an error wrapping fs.ErrNotExist.
func (s *Store) current(name string) (*current, error) {
	s.mu.Lock()
	c := s.currents[name]
	s.mu.Unlock()
	now := time.Now().UnixNano()
	if c != nil && now-c.seen.Load() < int64(s.fresh) {
		return c, nil
	}
	path := filepath.Join(s.dir, name, schema.CurrentFile)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, currentError(path, err)
	}
	if c != nil && os.SameFile(fi, c.info) && fi.Size() == c.info.Size() && fi.ModTime().Equal(c.info.ModTime()) {
		c.seen.Store(now)
		return c, nil
	}
	if c, err = readCurrent(path); err != nil {
		return nil, err
	}
	c.seen.Store(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.currents[name]; old != nil {
		old.file.Close()
		delete(s.currents, name)
	}
	// Older generations are opened again only for pinned requests.
	for key, h := range s.gens {
		if key.dataset == name && key.gen < c.gen {
			s.dropLocked(h)
		}
	}
	if len(s.currents) < maxCurrents {
		s.currents[name] = c
	} else {
		c.file.Close() // served once, not kept
	}
	return c, nil
}

// readCurrent opens CURRENT and reads the generation it names. The stat is
// of the open file, so it describes the bytes read.
func readCurrent(path string) (*current, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, currentError(path, err)
	}
	var b [32]byte
	n, err := io.ReadFull(f, b[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, fmt.Errorf("%w: read %s: %v", ErrUnavailable, path, err)
	}
	gen, ok := schema.ParseCurrent(b[:n])
	if !ok {
		f.Close()
		return nil, fmt.Errorf("%w: %s holds %q, not a generation number and a newline", ErrUnavailable, path, b[:n])
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: stat %s: %v", ErrUnavailable, path, err)
	}
	return &current{gen: gen, file: f, info: fi}, nil
}

func currentError(path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
		return fs.ErrNotExist
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, path, err)
}

// noCurrent explains why CURRENT could not be read: no such dataset, or one
// whose first generation is still being built.
func (s *Store) noCurrent(name string, err error) error {
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	s.forget(name)
	entries, derr := os.ReadDir(filepath.Join(s.dir, name))
	if derr != nil {
		if errors.Is(derr, fs.ErrNotExist) || errors.Is(derr, errNotDir) {
			return fmt.Errorf("%w: %q", ErrDatasetNotFound, name)
		}
		return fmt.Errorf("%w: %v", ErrUnavailable, derr)
	}
	for _, e := range entries {
		if _, ok := schema.GenerationOf(e.Name()); ok {
			return fmt.Errorf("%w: %q", ErrNoGeneration, name)
		}
	}
	// A folder with neither CURRENT nor generation files (the embedded NATS
	// store in stack, say) is not a dataset.
	return fmt.Errorf("%w: %q", ErrDatasetNotFound, name)
}

// forget closes what is kept of a dataset whose CURRENT is gone.
func (s *Store) forget(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, h := range s.gens {
		if key.dataset == name {
			s.dropLocked(h)
		}
	}
	if c := s.currents[name]; c != nil {
		c.file.Close()
		delete(s.currents, name)
	}
}

// pinnedMissing tells a pruned generation (older than the current one) from
// one that never existed.
func (s *Store) pinnedMissing(name string, pin uint64) error {
	cur, err := s.current(name)
	if err != nil {
		if err := s.noCurrent(name, err); !errors.Is(err, ErrNoGeneration) {
			return err
		}
		return fmt.Errorf("%w: %s has no generation %d", ErrGenerationNotFound, name, pin)
	}
	if pin < cur.gen {
		return fmt.Errorf("%w: %s generation %d was pruned; the current one is %d", ErrGenerationGone, name, pin, cur.gen)
	}
	return fmt.Errorf("%w: %s has no generation %d; the current one is %d", ErrGenerationNotFound, name, pin, cur.gen)
}
