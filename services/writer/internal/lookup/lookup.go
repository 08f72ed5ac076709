// Package lookup builds the lookup indexes of a generation
// (pkg/schema/docs/lookup.md) with memory that does not grow with the
// number of records: an external sort in two passes.
//
//  1. One sequential read of the data file. For each record and each
//     indexed column, the value's key (schema.LookupKeyOf) and the record
//     number go into the column's run buffer; a full buffer is sorted by
//     (key, record) and appended to the column's run file as one sorted run.
//  2. For each column, a k-way merge of its runs streams (key, record) in
//     the index's order into a schema.LookupWriter. Runs hold ascending
//     record numbers (pass 1 reads in file order), so ties between runs
//     go to the earlier run and each key's records come out ascending.
//
// The index is a function of the values alone: the same records give the
// same bytes, whatever the memory budget. A column whose entries fit in
// one buffer skips the run file.
//
// Why this shape: a hash table of every value in memory would grow with
// the rows (hundreds of MB at 10M), and appending to the index while rows
// land would make each row's work and the crash recovery depend on it. A
// build at the end reads the finished file once, costs 24 bytes of
// temporary disk per record and column, and is simply done again if the
// writer stops half way: the end message is applied again.
package lookup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
)

// DefaultBudget is the memory Build gives its run buffers, all columns
// together, and again its merge buffers: about 2 × 2 MiB at most.
const DefaultBudget = 2 << 20

// Config says where and how to write.
type Config struct {
	FS  disk.FS
	Dir string // the dataset folder
	// Durable syncs each index and the folder before Build returns
	// (FSYNC other than off).
	Durable bool
	// Budget bounds the bytes of the run buffers (and, separately, of the
	// merge buffers); 0 is DefaultBudget.
	Budget int
}

// Source is the generation to index: its metadata header (Count, Fields,
// Size) and its data file.
type Source struct {
	Header schema.Header
	Data   io.ReaderAt
}

// Build writes the lookup index of each column (0-based positions in
// src.Header.Fields) of src, covering records 0 … Count-1. Each index is
// written to a temporary name, synced and renamed into place, so a
// reader finds a complete index or none. It removes its temporary files,
// whatever happens. The records are trusted to be what the writer
// appended: a record that does not decode is an error.
func Build(ctx context.Context, cfg Config, src Source, columns []int) error {
	if len(columns) == 0 {
		return nil
	}
	if cfg.Budget <= 0 {
		cfg.Budget = DefaultBudget
	}
	h := src.Header
	dec, err := schema.NewRecordDecoder(h.Fields)
	if err != nil {
		return err
	}
	cols := make([]*column, len(columns))
	perColumn := max(cfg.Budget/entrySize/len(columns), 1024)
	for i, c := range columns {
		if c < 0 || c >= len(h.Fields) {
			return fmt.Errorf("index column %d of %d fields", c, len(h.Fields))
		}
		cols[i] = &column{pos: c, path: filepath.Join(cfg.Dir, schema.LookupFile(h.Generation, c)), buf: make([]entry, 0, perColumn), cfg: cfg}
	}
	defer func() {
		for _, c := range cols {
			c.discard()
		}
	}()
	if err := collect(ctx, src, dec, cols); err != nil {
		return err
	}
	for _, c := range cols {
		if err := c.write(ctx, h); err != nil {
			return fmt.Errorf("lookup index of %q: %w", h.Fields[c.pos], err)
		}
	}
	if cfg.Durable {
		if err := cfg.FS.SyncDir(cfg.Dir); err != nil {
			return err
		}
	}
	return nil
}

// entry is one (key, record) pair: entrySize bytes in a run file.
type entry struct {
	key schema.LookupKey
	rec uint64
}

const entrySize = schema.LookupKeySize + 8

func compareEntries(a, b entry) int {
	if c := a.key.Compare(&b.key); c != 0 {
		return c
	}
	switch {
	case a.rec < b.rec:
		return -1
	case a.rec > b.rec:
		return 1
	}
	return 0
}

// collect is pass 1: it reads the records in order and fills the
// columns' runs.
func collect(ctx context.Context, src Source, dec *schema.RecordDecoder, cols []*column) error {
	h := src.Header
	r := newLineReader(io.NewSectionReader(src.Data, int64(h.Size), 1<<62))
	byField := make([]*column, len(h.Fields))
	for _, c := range cols {
		byField[c.pos] = c
	}
	var rec uint64
	add := func(i int, value []byte) error {
		if c := byField[i]; c != nil {
			return c.add(entry{schema.LookupKeyOf(value), rec})
		}
		return nil
	}
	var scratch []byte
	for ; rec < h.Count; rec++ {
		if rec&0xffff == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		line, err := r.next()
		if err != nil {
			return fmt.Errorf("record %d: %w", rec, err)
		}
		if scratch, err = dec.Decode(line, scratch, add); err != nil {
			return fmt.Errorf("record %d: %w", rec, err)
		}
	}
	return nil
}

// lineReader reads '\n'-terminated records through a fixed buffer; a
// record longer than the buffer is gathered in long, which keeps the
// largest record's size.
type lineReader struct {
	br   *bufio.Reader
	long []byte
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 256<<10)}
}

// next returns the next record without its '\n', valid until the next call.
func (l *lineReader) next() ([]byte, error) {
	line, err := l.br.ReadSlice('\n')
	if err == nil {
		return line[:len(line)-1], nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	l.long = append(l.long[:0], line...)
	for {
		line, err = l.br.ReadSlice('\n')
		l.long = append(l.long, line...)
		switch {
		case err == nil:
			return l.long[:len(l.long)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			if len(l.long) > schema.MaxMessageBytes {
				return nil, fmt.Errorf("a record of more than %d bytes", schema.MaxMessageBytes)
			}
		case errors.Is(err, io.EOF):
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// column is the build of one column's index.
type column struct {
	cfg  Config
	pos  int
	path string
	buf  []entry
	runs []int64 // end offset of each run in the run file
	file disk.File
}

func (c *column) runPath() string { return c.path + ".runs" }
func (c *column) tmpPath() string { return c.path + ".tmp" }

// add appends e to the buffer, writing a sorted run when it is full.
func (c *column) add(e entry) error {
	if len(c.buf) == cap(c.buf) {
		if err := c.spill(); err != nil {
			return err
		}
	}
	c.buf = append(c.buf, e)
	return nil
}

// spill sorts the buffer and appends it to the run file as one run.
func (c *column) spill() error {
	if c.file == nil {
		f, err := c.cfg.FS.OpenFile(c.runPath(), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		c.file = f
	}
	slices.SortFunc(c.buf, compareEntries)
	var off int64
	if len(c.runs) > 0 {
		off = c.runs[len(c.runs)-1]
	}
	w := bufio.NewWriterSize(io.NewOffsetWriter(c.file, off), 64<<10)
	for _, e := range c.buf {
		if err := writeEntry(w, e); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	c.runs = append(c.runs, off+int64(len(c.buf))*entrySize)
	c.buf = c.buf[:0]
	return nil
}

// write is pass 2: it writes the index from the buffer alone (one run
// that never spilled) or from a merge of the runs.
func (c *column) write(ctx context.Context, h schema.Header) error {
	out, err := c.cfg.FS.OpenFile(c.tmpPath(), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if out != nil {
			out.Close()
		}
	}()
	lw, err := schema.NewLookupWriter(out, h.Generation, h.Count, c.pos, h.Fields[c.pos])
	if err != nil {
		return err
	}
	if len(c.runs) == 0 {
		slices.SortFunc(c.buf, compareEntries)
		for _, e := range c.buf {
			if err := lw.Add(e.key, e.rec); err != nil {
				return err
			}
		}
	} else {
		if len(c.buf) > 0 {
			if err := c.spill(); err != nil {
				return err
			}
		}
		c.buf = nil // the merge has buffers of its own
		if err := merge(ctx, c.file, c.runs, c.cfg.Budget, lw.Add); err != nil {
			return err
		}
	}
	if _, err := lw.Close(); err != nil {
		return err
	}
	if c.cfg.Durable {
		if err := out.Sync(); err != nil {
			return err
		}
	}
	err, out = out.Close(), nil
	if err != nil {
		return err
	}
	return c.cfg.FS.Rename(c.tmpPath(), c.path)
}

// discard removes the column's temporary files.
func (c *column) discard() {
	if c.file != nil {
		c.file.Close()
		c.file = nil
	}
	disk.RemoveIfExists(c.cfg.FS, c.runPath())
	disk.RemoveIfExists(c.cfg.FS, c.tmpPath())
}
