// Package rejects reads the rows a generation refused, kept by the writer
// in gen-<G>.rejects.ndjson (pkg/schema/docs/rejects.md), a page at a time.
//
// A page at offset N reads the file from its start and skips N lines
// without decoding them: O(N) reading, O(1) memory. Rejects are few next to
// records and the file has no index; the records' O(1) paging is not
// needed here.
package rejects

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Page is one page of rejects; its JSON is the records' page envelope with
// schema.Reject objects as data, data last.
type Page struct {
	Dataset    string  `json:"dataset"`
	Generation uint64  `json:"generation"`
	Count      uint64  `json:"count"`
	Offset     uint64  `json:"offset"`
	Limit      int     `json:"limit"`
	Returned   int     `json:"returned"`
	NextOffset *uint64 `json:"next_offset"`
	// Data holds the rejects in file order (source line order within a
	// sync); never nil, so it encodes as [] when empty.
	Data []schema.Reject `json:"data"`
}

// ErrMissing: the header counts rejects and their file is not there (the
// generation was pruned after its header was read, or the file was removed
// by hand).
var ErrMissing = errors.New("the rejects file is missing")

// Unreadable is the reason of the stand-in that takes the place of a line
// of the file that is not a reject (schema.ErrRejectLine): the page keeps
// its length and the lines after it are still served.
const Unreadable = "unreadable reject"

// Generation is what Read needs to know of a generation, from its header.
type Generation struct {
	Dir        string // the dataset's folder: DATA_DIR/<dataset>
	Dataset    string
	Generation uint64
	Rejected   uint64 // the header's count of rejects
}

// Read returns the rejects [offset, offset+limit) of g, of the Rejected its
// header counts. An offset past the end gives an empty page. A line that is
// not a reject is logged and served as a stand-in whose Reason is
// Unreadable.
func Read(g Generation, offset uint64, limit int, log *slog.Logger) (Page, error) {
	p := Page{Dataset: g.Dataset, Generation: g.Generation, Count: g.Rejected, Offset: offset, Limit: limit, Data: []schema.Reject{}}
	if offset >= g.Rejected || limit < 1 {
		return p, nil
	}
	name := filepath.Join(g.Dir, schema.RejectsFile(g.Generation))
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return p, fmt.Errorf("%w: %s (the header counts %d)", ErrMissing, name, g.Rejected)
	}
	if err != nil {
		return p, fmt.Errorf("open rejects: %w", err)
	}
	defer f.Close()

	r := schema.NewRejectsReader(f, g.Rejected)
	if _, err := r.Skip(offset); err != nil {
		return p, shortFile(err, name, g.Rejected)
	}
	want := min(uint64(limit), g.Rejected-offset)
	p.Data = make([]schema.Reject, 0, want)
	for uint64(len(p.Data)) < want {
		rej, err := r.Next()
		if errors.Is(err, schema.ErrRejectLine) {
			log.Warn("rejects file holds a line that is not a reject", "file", name, "err", err)
			rej = schema.Reject{Reason: Unreadable, Error: err.Error()}
		} else if err != nil {
			return p, shortFile(err, name, g.Rejected)
		}
		p.Data = append(p.Data, rej)
	}
	p.Returned = len(p.Data)
	if next := offset + uint64(p.Returned); next < g.Rejected {
		p.NextOffset = &next
	}
	return p, nil
}

// shortFile says what an end of the file before the header's count means.
func shortFile(err error, name string, count uint64) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%s holds fewer lines than the %d its header counts: %w", name, count, io.ErrUnexpectedEOF)
	}
	return err
}
