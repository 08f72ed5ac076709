// Package building reports the sync in progress on a dataset, as far as its
// files say: the replace generation the writer is filling beside the
// current one (a gen-<G>.ndjson newer than CURRENT whose header says
// "building"). Its header counts the rows written so far; how many are to
// come is not known until the sync ends. An append sync grows the current
// generation itself and shows as its count growing.
package building

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Progress is a generation being built, from its header.
type Progress struct {
	Generation uint64        `json:"generation"`
	Sync       string        `json:"sync"`
	Count      uint64        `json:"count"`    // rows written so far
	Rejected   uint64        `json:"rejected"` // rows refused so far
	Source     schema.Source `json:"source"`
	StartedAt  time.Time     `json:"started_at"`
	UpdatedAt  time.Time     `json:"updated_at"`
}

// tornRetries is how often a header caught mid-rewrite is read again.
const tornRetries = 3

// Find returns the newest generation of the dataset folder dir that is
// newer than current and still building, or nil when there is none. A
// generation that ends (or is discarded) while Find reads it is not an
// error: it is simply not reported.
func Find(dir string, current uint64) (*Progress, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("building: %w", err)
	}
	var newest uint64
	for _, e := range entries {
		if g, ok := schema.GenerationOf(e.Name()); ok && g > newest && g > current && e.Name() == schema.DataFile(g) {
			newest = g
		}
	}
	if newest == 0 {
		return nil, nil
	}
	f, err := os.Open(filepath.Join(dir, schema.DataFile(newest)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // committed and renamed, or discarded, since ReadDir
	}
	if err != nil {
		return nil, fmt.Errorf("building: %w", err)
	}
	defer f.Close()
	var h schema.Header
	for i := 0; ; i++ {
		h, err = schema.ReadHeader(f)
		if !errors.Is(err, schema.ErrHeaderTorn) || i == tornRetries {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("building: %s: %w", f.Name(), err)
	}
	if h.State != schema.StateBuilding {
		return nil, nil
	}
	return &Progress{Generation: h.Generation, Sync: h.Sync, Count: h.Count, Rejected: h.Rejected,
		Source: h.Source, StartedAt: h.CreatedAt, UpdatedAt: h.UpdatedAt}, nil
}
