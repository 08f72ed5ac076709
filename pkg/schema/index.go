package schema

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// The offset index beside each generation file (docs/index.md):
//
//	┌──────────────┬─────────────┬───────────┬────────────────────┐
//	│ magic "RPIX" │ version (1) │ 3 × 0x00  │ data start (u64 LE) │   16 bytes
//	├──────────────┴─────────────┴───────────┴────────────────────┤
//	│ entry 0: end offset of record 0 (u64 LE) │ stream seq (u64 LE)│   16 bytes
//	│ entry 1 ...                                                  │
//	└──────────────────────────────────────────────────────────────┘
//
// Record i occupies [end(i-1), end(i)) of the NDJSON file, with end(-1) =
// data start (the metadata header's size). Only the first Header.Count
// entries are valid: entries past it may be torn and are ignored.
const (
	// IndexMagic opens every index file.
	IndexMagic = "RPIX"
	// IndexVersion is the format in docs/index.md; OpenIndex refuses others.
	IndexVersion = 1
	// IndexHeaderSize is the size of the index header; entry i starts at
	// IndexHeaderSize + i*IndexEntrySize.
	IndexHeaderSize = 16
	// IndexEntrySize is the size of one entry: end offset and stream seq.
	IndexEntrySize   = 16
	indexVersionByte = 4
)

// ErrIndexFormat is wrapped by errors about an index file's bytes.
var ErrIndexFormat = errors.New("not a rowpipe offset index")

// AppendIndexHeader appends the 16-byte index header for a generation whose
// records start at dataStart.
func AppendIndexHeader(dst []byte, dataStart int64) []byte {
	dst = append(dst, IndexMagic...)
	dst = append(dst, IndexVersion, 0, 0, 0)
	return binary.LittleEndian.AppendUint64(dst, uint64(dataStart))
}

// AppendIndexEntry appends the entry of one record: the offset just past its
// '\n', and the stream sequence of the message that carried it.
func AppendIndexEntry(dst []byte, end int64, seq uint64) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, uint64(end))
	return binary.LittleEndian.AppendUint64(dst, seq)
}

// IndexSize is the size of an index holding count entries, which is also
// the offset of entry count: a writer rolling back to count entries
// truncates the index there.
func IndexSize(count uint64) int64 { return IndexHeaderSize + int64(count)*IndexEntrySize }

// IndexEntryEnd decodes the end offset of the entry that b starts with
// (at least 8 bytes): for readers that fetch many entries in one read.
func IndexEntryEnd(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b[:8])) }

// Index maps a record number to its byte range with one or two small reads,
// whatever the number. It holds no entries in memory and is safe for
// concurrent use if r is. Entry and Range do not allocate when they succeed.
type Index struct {
	r         io.ReaderAt
	dataStart int64
}

// OpenIndex checks the index header at the start of r: the magic and the
// version. The error wraps ErrIndexFormat. It does not know how many entries
// are valid: that is the metadata header's Count.
func OpenIndex(r io.ReaderAt) (*Index, error) {
	var b [IndexHeaderSize]byte
	if err := readFullAt(r, b[:], 0); err != nil {
		return nil, fmt.Errorf("%w: read header: %v", ErrIndexFormat, err)
	}
	if string(b[:4]) != IndexMagic {
		return nil, fmt.Errorf("%w: bad magic %q", ErrIndexFormat, b[:4])
	}
	if b[indexVersionByte] != IndexVersion {
		return nil, fmt.Errorf("%w: version %d (this build reads %d)", ErrIndexFormat, b[indexVersionByte], IndexVersion)
	}
	return &Index{r: r, dataStart: int64(binary.LittleEndian.Uint64(b[8:]))}, nil
}

// DataStart is the offset of record 0 in the NDJSON file.
func (x *Index) DataStart() int64 { return x.dataStart }

// entryBufs holds the small buffers Entry and Range read into: a buffer
// passed to an io.ReaderAt escapes, so a stack array would cost one
// allocation per call on the api's hot path.
var entryBufs = sync.Pool{New: func() any { return new([IndexEntrySize]byte) }}

// Entry returns entry i: the end offset of record i and its stream sequence.
// The caller checks i < Header.Count; past it the bytes may be torn or absent.
func (x *Index) Entry(i uint64) (end int64, seq uint64, err error) {
	b := entryBufs.Get().(*[IndexEntrySize]byte)
	defer entryBufs.Put(b)
	if err := readFullAt(x.r, b[:], IndexSize(i)); err != nil {
		return 0, 0, fmt.Errorf("index entry %d: %w", i, err)
	}
	return IndexEntryEnd(b[:]), binary.LittleEndian.Uint64(b[8:]), nil
}

// Range returns the byte range [start, end) of records first .. first+n-1
// in the NDJSON file, with one read of the index when the two entries it
// needs are less than rangeSpan bytes apart, two otherwise. n must be at
// least 1 and first+n must be at most Header.Count; Range cannot check the
// count, only that the range is not empty and starts at or after DataStart
// (an error wrapping ErrIndexFormat otherwise).
func (x *Index) Range(first, n uint64) (start, end int64, err error) {
	if n == 0 {
		return 0, 0, errors.New("index range of zero records")
	}
	b := rangeBufs.Get().(*[rangeSpan]byte)
	defer rangeBufs.Put(b)
	lastAt := IndexSize(first + n - 1)
	if first == 0 {
		start = x.dataStart
	} else if at := IndexSize(first - 1); lastAt+8-at <= rangeSpan {
		// Both entries in one read.
		if err := readFullAt(x.r, b[:lastAt+8-at], at); err != nil {
			return 0, 0, fmt.Errorf("index entries %d..%d: %w", first-1, first+n-1, err)
		}
		start, end = IndexEntryEnd(b[:]), IndexEntryEnd(b[lastAt-at:])
		return x.checkRange(first, n, start, end)
	} else {
		if err := readFullAt(x.r, b[:8], at); err != nil {
			return 0, 0, fmt.Errorf("index entry %d: %w", first-1, err)
		}
		start = IndexEntryEnd(b[:])
	}
	if err := readFullAt(x.r, b[:8], lastAt); err != nil {
		return 0, 0, fmt.Errorf("index entry %d: %w", first+n-1, err)
	}
	return x.checkRange(first, n, start, IndexEntryEnd(b[:]))
}

// EndsMax is the most records Ends locates at once.
const EndsMax = rangeSpan/IndexEntrySize - 1

// Ends fills ends with the end offsets of records first .. first+len(ends)-1
// (each just past the record's '\n') and returns where the first of them
// starts, with one read of the index. 1 ≤ len(ends) ≤ EndsMax, and
// first+len(ends) must be at most Header.Count. The offsets must go forward
// from DataStart (an error wrapping ErrIndexFormat otherwise).
func (x *Index) Ends(first uint64, ends []int64) (start int64, err error) {
	n := uint64(len(ends))
	if n == 0 || n > EndsMax {
		return 0, fmt.Errorf("index ends of %d records: want 1..%d", n, EndsMax)
	}
	b := rangeBufs.Get().(*[rangeSpan]byte)
	defer rangeBufs.Put(b)
	from := first
	if first > 0 {
		from = first - 1 // its end is the start
	}
	buf := b[:(first+n-from)*IndexEntrySize]
	if err := readFullAt(x.r, buf, IndexSize(from)); err != nil {
		return 0, fmt.Errorf("index entries %d..%d: %w", from, first+n-1, err)
	}
	start = x.dataStart
	if first > 0 {
		start, buf = IndexEntryEnd(buf), buf[IndexEntrySize:]
	}
	prev := start
	for i := range ends {
		ends[i] = IndexEntryEnd(buf[i*IndexEntrySize:])
		if ends[i] <= prev || prev < x.dataStart {
			return 0, fmt.Errorf("%w: record %d maps to [%d, %d)", ErrIndexFormat, first+uint64(i), prev, ends[i])
		}
		prev = ends[i]
	}
	return start, nil
}

// rangeSpan is the most index bytes Range and Ends read at once (256
// entries).
const rangeSpan = 256 * IndexEntrySize

var rangeBufs = sync.Pool{New: func() any { return new([rangeSpan]byte) }}

func (x *Index) checkRange(first, n uint64, start, end int64) (int64, int64, error) {
	if end <= start || start < x.dataStart {
		return 0, 0, fmt.Errorf("%w: records %d..%d map to [%d, %d)", ErrIndexFormat, first, first+n-1, start, end)
	}
	return start, end, nil
}

// readFullAt fills b from r at off. io.ReaderAt allows io.EOF together with
// a full read at the end of the input; that is a success here. A short read
// keeps the reader's error (io.EOF past the end of a file).
func readFullAt(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF // a ReaderAt that breaks its contract
	}
	return err
}
