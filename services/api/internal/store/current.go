package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// errNotDir is what a path through a file that is not a directory gives.
var errNotDir error = syscall.ENOTDIR

// current returns the generation CURRENT of dataset name names: as a read
// of it less than Fresh ago found, else read again. A missing CURRENT is an
// error wrapping fs.ErrNotExist.
func (s *Store) current(name string) (uint64, error) {
	now := time.Now().UnixNano()
	s.mu.Lock()
	last, ok := s.currents[name]
	s.mu.Unlock()
	if ok && now-last.at < int64(s.fresh) {
		return last.gen, nil
	}
	path := filepath.Join(s.dir, name, schema.CurrentFile)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
			return 0, fs.ErrNotExist
		}
		return 0, fmt.Errorf("%w: %s: %v", ErrUnavailable, path, err)
	}
	gen, valid := schema.ParseCurrent(b)
	if !valid {
		return 0, fmt.Errorf("%w: %s holds %q, not a generation number and a newline", ErrUnavailable, path, b[:min(len(b), 32)])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if newer, ok := s.currents[name]; ok && newer.at > now {
		return newer.gen, nil // a later read landed meanwhile: it stands
	}
	if !ok || last.gen != gen {
		// Older generations are opened again only for pinned requests.
		for key, h := range s.gens {
			if key.dataset == name && key.gen < gen {
				s.dropLocked(h)
			}
		}
	}
	s.currents[name] = look{gen: gen, at: now}
	return gen, nil
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
	delete(s.currents, name)
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
	if pin < cur {
		return fmt.Errorf("%w: %s generation %d was pruned; the current one is %d", ErrGenerationGone, name, pin, cur)
	}
	return fmt.Errorf("%w: %s has no generation %d; the current one is %d", ErrGenerationNotFound, name, pin, cur)
}
