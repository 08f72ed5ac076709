package schema

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// LookupWriter writes a lookup index (docs/lookup.md) from its keys in
// ascending order, each with its record numbers in ascending order. The
// count of records is known when it starts, so every section's offset is
// too: the writer streams the table, the postings and the slots through
// three buffers at their offsets, and writes the header last. Its memory
// is those buffers, whatever the number of records or keys.
type LookupWriter struct {
	w        io.WriterAt
	meta     LookupMeta
	l        lookupLayout
	table    section
	postings section
	slots    section

	key       LookupKey
	started   bool   // a key was added
	first     uint64 // first posting of the current key
	n         uint64 // postings so far, all keys
	keys      uint64
	bucket    uint64 // table entries written so far
	lastRec   uint64
	err       error
	scratch   [LookupSlotSize]byte
	finalized bool
}

// section is a sequential writer at an offset with a running CRC-32C.
type section struct {
	buf *bufio.Writer
	sum hash.Hash32
}

func newSection(w io.WriterAt, off int64, size int) section {
	s := section{sum: crc32.New(castagnoli)}
	s.buf = bufio.NewWriterSize(io.MultiWriter(io.NewOffsetWriter(w, off), s.sum), size)
	return s
}

func (s section) u64(v uint64) error {
	_, err := s.buf.Write(binary.LittleEndian.AppendUint64(s.buf.AvailableBuffer(), v))
	return err
}

// NewLookupWriter starts the index of column (0-based) name of generation
// gen, which covers records 0 … count-1. w must be empty; nothing is
// complete until Close returns nil.
func NewLookupWriter(w io.WriterAt, gen, count uint64, column int, name string) (*LookupWriter, error) {
	if name == "" || len(name) > MaxLookupColumnName || column < 0 || column > 1<<20 {
		return nil, fmt.Errorf("lookup index of column %d %q: bad column", column, name)
	}
	m := LookupMeta{Generation: gen, Count: count, Column: column, Name: name, Bits: LookupBits(count)}
	l := m.layout()
	lw := &LookupWriter{w: w, meta: m, l: l}
	lw.table = newSection(w, l.table, 32<<10)
	lw.postings = newSection(w, l.postings, 64<<10)
	lw.slots = newSection(w, l.slots, 32<<10)
	return lw, nil
}

// Add adds record rec to the postings of key. Keys come in ascending
// order (LookupKey.Compare), and the records of one key in ascending
// order; every record 0 … count-1 is added exactly once.
func (lw *LookupWriter) Add(key LookupKey, rec uint64) error {
	if lw.err != nil {
		return lw.err
	}
	switch {
	case lw.n >= lw.meta.Count || rec >= lw.meta.Count:
		lw.err = fmt.Errorf("lookup index: record %d is past the %d records of the index", rec, lw.meta.Count)
	case lw.started && key.Compare(&lw.key) < 0:
		lw.err = errors.New("lookup index: keys out of order")
	case lw.started && key == lw.key && rec <= lw.lastRec:
		lw.err = fmt.Errorf("lookup index: record %d after %d for one key", rec, lw.lastRec)
	}
	if lw.err != nil {
		return lw.err
	}
	if !lw.started || key != lw.key {
		if lw.started {
			lw.err = lw.endKey()
		}
		lw.err = errors.Join(lw.err, lw.fillTable(key.bucket(lw.meta.Bits)))
		lw.key, lw.first, lw.started = key, lw.n, true
	}
	lw.err = errors.Join(lw.err, lw.postings.u64(rec))
	lw.n++
	lw.lastRec = rec
	return lw.err
}

// fillTable writes the table's entries up to and including bucket b: each
// bucket not written yet starts at the next key's slot.
func (lw *LookupWriter) fillTable(b uint64) error {
	for ; lw.bucket <= b; lw.bucket++ {
		if err := lw.table.u64(lw.keys); err != nil {
			return err
		}
	}
	return nil
}

// endKey writes the slot of the current key.
func (lw *LookupWriter) endKey() error {
	s := lw.scratch[:]
	copy(s, lw.key[:])
	binary.LittleEndian.PutUint64(s[16:], lw.first)
	binary.LittleEndian.PutUint64(s[24:], lw.n-lw.first)
	lw.keys++
	_, err := lw.slots.buf.Write(s)
	return err
}

// Close writes what is buffered, then the header. It fails if fewer than
// count records were added. It does not sync or close the underlying file.
func (lw *LookupWriter) Close() (LookupMeta, error) {
	if lw.err != nil {
		return LookupMeta{}, lw.err
	}
	if lw.finalized {
		return LookupMeta{}, errors.New("lookup index: closed twice")
	}
	lw.finalized = true
	if lw.n != lw.meta.Count {
		return LookupMeta{}, fmt.Errorf("lookup index: %d records added, the index covers %d", lw.n, lw.meta.Count)
	}
	if lw.started {
		if err := lw.endKey(); err != nil {
			return LookupMeta{}, err
		}
	}
	if err := lw.fillTable(uint64(1) << lw.meta.Bits); err != nil { // the end entry too
		return LookupMeta{}, err
	}
	for _, s := range []section{lw.table, lw.postings, lw.slots} {
		if err := s.buf.Flush(); err != nil {
			return LookupMeta{}, err
		}
	}
	lw.meta.Keys = lw.keys
	head := encodeLookupHeader(lw.meta, lookupSums{lw.table.sum.Sum32(), lw.postings.sum.Sum32(), lw.slots.sum.Sum32()})
	if _, err := lw.w.WriteAt(head, 0); err != nil {
		return LookupMeta{}, err
	}
	return lw.meta, nil
}
