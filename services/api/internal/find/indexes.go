package find

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Indexes are the lookup indexes of one generation, open for as long as
// the generation is. It is safe for concurrent use.
type Indexes struct {
	shape   *Shape
	byField map[int]*schema.Lookup
	files   []*os.File
}

// Shape is the Shape of the generation's records.
func (x *Indexes) Shape() *Shape { return x.shape }

// IndexInfo describes one index for the metadata.
type IndexInfo struct {
	Field    string `json:"field"`
	Distinct uint64 `json:"distinct"`
	// Stale is an index that covers other than the records the header
	// counts (an append sync added rows since it was built, or the header
	// read is older than the rebuilt index): not used, the field is
	// scanned until the two agree.
	Stale bool `json:"stale,omitempty"`
}

// OpenIndexes opens the lookup indexes of generation h.Generation in the
// dataset folder dir. A missing index is none. An index that is damaged
// or does not describe h (another column name, another generation) is
// left out and reported in the error, which never stops the others from
// being used: the caller logs it and serves.
func OpenIndexes(dir string, h schema.Header) (*Indexes, error) {
	shape, err := NewShape(h.Fields)
	if err != nil {
		return nil, err
	}
	x := &Indexes{shape: shape, byField: map[int]*schema.Lookup{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return x, err
	}
	var errs []error
	for _, e := range entries {
		gen, col, ok := schema.LookupFileOf(e.Name())
		if !ok || gen != h.Generation {
			continue
		}
		if err := x.open(filepath.Join(dir, e.Name()), h, col); err != nil {
			errs = append(errs, err)
		}
	}
	return x, errors.Join(errs...)
}

func (x *Indexes) open(path string, h schema.Header, col int) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) { // replaced or removed since the listing
			return nil
		}
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	lk, err := schema.OpenLookup(f, st.Size())
	if err == nil {
		m := lk.Meta()
		if m.Generation != h.Generation || col >= len(h.Fields) || m.Column != col || m.Name != h.Fields[col] {
			err = fmt.Errorf("%w: it describes column %d %q of generation %d (%d records)", schema.ErrLookupFormat, m.Column, m.Name, m.Generation, m.Count)
		}
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("lookup index %s: %w", path, err)
	}
	x.byField[col] = lk
	x.files = append(x.files, f)
	return nil
}

// For returns the index of field when it covers exactly count records
// (the header's count the request is served from), nil otherwise.
func (x *Indexes) For(field int, count uint64) *schema.Lookup {
	if x == nil {
		return nil
	}
	if lk := x.byField[field]; lk != nil && lk.Meta().Count == count {
		return lk
	}
	return nil
}

// Describe lists the indexes in field order, for a generation of count
// records.
func (x *Indexes) Describe(fields []string, count uint64) []IndexInfo {
	if x == nil {
		return nil
	}
	cols := make([]int, 0, len(x.byField))
	for c := range x.byField {
		cols = append(cols, c)
	}
	slices.Sort(cols)
	out := make([]IndexInfo, 0, len(cols))
	for _, c := range cols {
		m := x.byField[c].Meta()
		out = append(out, IndexInfo{Field: fields[c], Distinct: m.Keys, Stale: m.Count != count})
	}
	return out
}

// Close closes the files.
func (x *Indexes) Close() error {
	if x == nil {
		return nil
	}
	var errs []error
	for _, f := range x.files {
		errs = append(errs, f.Close())
	}
	x.files, x.byField = nil, nil
	return errors.Join(errs...)
}
