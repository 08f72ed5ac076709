package pagereader

import (
	"fmt"
	"io"
	"runtime/debug"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// SpanMax is the most records a Span locates one by one (see Span.Ends): a
// page of up to SpanMax records costs one read of the index whatever its
// offset.
const SpanMax = 256

// Span is a run of consecutive records of the data file: its byte range
// and, for a run of up to SpanMax records, where each record ends. Fill it
// with Lease.Span; the zero Span is empty. It is meant to live on the
// caller's stack or in a pooled value: it holds no pointer.
type Span struct {
	Start, End int64 // the bytes [Start, End) of the data file
	n          int   // valid entries of ends; 0 when they were not read
	ends       [SpanMax]int64
}

// Ends are the offsets just past each record's '\n', in order (the last is
// End), or nil when the run was longer than SpanMax. They let a reader find
// the line ends of the run without scanning its bytes. The slice is valid
// until sp changes.
func (sp *Span) Ends() []int64 {
	if sp.n == 0 {
		return nil
	}
	return sp.ends[:sp.n]
}

// Span fills sp with records first .. first+n-1: n ≥ 1 and first+n ≤
// Header.Count. A run of up to SpanMax records costs one read of the
// index (the n entries it needs, and the one before when first > 0) and
// gets its Ends; a longer one reads only its first and last entries.
func (l Lease) Span(first, n uint64, sp *Span) error {
	if n == 0 || first+n > l.Header.Count || first+n < first {
		return fmt.Errorf("records %d..%d are outside the %d the header covers", first, first+n-1, l.Header.Count)
	}
	sp.n = 0
	if n > SpanMax {
		start, end, err := l.h.index.Range(first, n)
		sp.Start, sp.End = start, end
		return err
	}
	return l.readSpan(first, n, sp)
}

// readSpan reads the entries of a Span of up to SpanMax records at once.
func (l Lease) readSpan(first, n uint64, sp *Span) error {
	buf := entryBufs.Get().(*[entriesMax * schema.IndexEntrySize]byte)
	defer entryBufs.Put(buf)
	from, count := first, n
	if first > 0 {
		from, count = first-1, n+1 // the entry before gives the start
	}
	b := buf[:count*schema.IndexEntrySize]
	off := schema.IndexSize(from)
	if err := l.h.readEntries(b, off); err != nil {
		return fmt.Errorf("%s: entries %d..%d: %w", l.h.idx.Name(), from, from+count-1, err)
	}
	prev := l.h.index.DataStart()
	if first > 0 {
		prev = schema.IndexEntryEnd(b)
		b = b[schema.IndexEntrySize:]
		if prev < l.h.index.DataStart() {
			return fmt.Errorf("%w: %s: record %d ends at %d, before the records start at %d", schema.ErrIndexFormat, l.h.idx.Name(), first-1, prev, l.h.index.DataStart())
		}
	}
	sp.Start = prev
	for i := range int(n) {
		end := schema.IndexEntryEnd(b[i*schema.IndexEntrySize:])
		if end <= prev {
			return fmt.Errorf("%w: %s: record %d ends at %d, not after %d", schema.ErrIndexFormat, l.h.idx.Name(), first+uint64(i), end, prev)
		}
		sp.ends[i] = end
		prev = end
	}
	sp.End, sp.n = prev, int(n)
	return nil
}

// idxSweepEvery is how many copies out of the mapped index (readEntries)
// go by before its pages are dropped from the process's page tables
// (madvise MADV_DONTNEED: the page cache keeps them, and the next access
// maps them again). Each copy maps at most two pages, so the mapping never
// adds more than about 2 × idxSweepEvery × 4 KiB to the resident set,
// however large the index and however many of its pages are read.
const idxSweepEvery = 1024

// readEntries reads len(b) bytes of the index at off: copied out of the
// mapped index when they lie inside it (no system call), else read. A
// mapped index cut shorter than the mapping (a rolled-back append cuts the
// entries past the count of the header in force; a lease taken before may
// still ask for them) makes the copy fault: that is an error, not a crash.
func (h *handle) readEntries(b []byte, off int64) error {
	if m := h.idxMap; m != nil && off >= 0 && off+int64(len(b)) <= int64(len(m)) {
		if err := copyMapped(b, m[off:off+int64(len(b))], "index"); err != nil {
			return err
		}
		if h.idxReads.Add(1)%idxSweepEvery == 0 {
			unix.Madvise(m, unix.MADV_DONTNEED)
		}
		return nil
	}
	if got, err := h.idx.ReadAt(b, off); got < len(b) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// copyMapped copies a mapped file region into dst (see readMapped).
func copyMapped(dst, m []byte, what string) error {
	return readMapped(what, func() { copy(dst, m) })
}

// readMapped runs read, which reads a mapped file, turning the fault of a
// file cut shorter than the mapping into an error, not a crash; what names
// the file.
func readMapped(what string, read func()) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			err = fmt.Errorf("%w: the %s is shorter than it was: %v", io.ErrUnexpectedEOF, what, r)
		}
	}()
	read()
	return nil
}

// Range returns the byte range [start, end) of records first .. first+n-1
// in the data file (Span without the line ends).
func (l Lease) Range(first, n uint64) (start, end int64, err error) {
	if n > SpanMax {
		if first+n > l.Header.Count || first+n < first {
			return 0, 0, fmt.Errorf("records %d..%d are outside the %d the header covers", first, first+n-1, l.Header.Count)
		}
		return l.h.index.Range(first, n)
	}
	sp := spans.Get().(*Span)
	defer spans.Put(sp)
	err = l.Span(first, n, sp)
	return sp.Start, sp.End, err
}

var spans = sync.Pool{New: func() any { return new(Span) }}

// entriesMax is room for the entries of a Span: SpanMax and the one before.
const entriesMax = SpanMax + 1

// entryBufs holds the buffers Span reads entries into (a buffer handed to
// a read escapes: a stack array would be an allocation per call).
var entryBufs = sync.Pool{New: func() any { return new([entriesMax * schema.IndexEntrySize]byte) }}
