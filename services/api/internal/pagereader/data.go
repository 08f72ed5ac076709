package pagereader

import (
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// dataFile reads a handle's data file. A small read (a page of up to
// mappedReadMax bytes, which is most pages) is a copy out of the mapped
// file, with no system call: for limit=10 the pread was a twentieth of the
// api's CPU per request. A larger one is a read: there the copy itself
// costs the same either way, and the mapped pages it would touch would
// have to be dropped from the page tables far more often.
type dataFile handle

// mappedReadMax is the largest read served from the mapping: the pages the
// api builds in memory whole (respond.InlineMax).
const mappedReadMax = 32 << 10

// dataSweepBytes is how many bytes are copied out of a mapped data file
// before its pages are dropped from the process's page tables (madvise
// MADV_DONTNEED: the page cache keeps them, and the next access maps them
// again). The kernel maps up to 16 cached pages around each page it
// faults in, so the mapping adds at most a few times this much to the
// resident set, however large the file and however much of it is read.
const dataSweepBytes = 4 << 20

// ReadAt implements io.ReaderAt. A file cut shorter than the mapping (a
// rolled-back append; a complete generation only by hand) is an error, as
// the short read of a read would be, not a crash and not bytes that are
// not there: past the cut, a copy ends in zero bytes (the rest of the page
// the file now ends in) or faults (the pages after it), and a data file
// never holds a zero byte (JSON escapes it, the header pads with spaces).
func (f *dataFile) ReadAt(p []byte, off int64) (int, error) {
	m := f.dataMap
	if m == nil || len(p) > mappedReadMax || off < 0 || off+int64(len(p)) > int64(len(m)) {
		return f.data.ReadAt(p, off)
	}
	if err := copyMapped(p, m[off:off+int64(len(p))], "data file"); err != nil {
		return 0, err
	}
	if len(p) > 0 && p[len(p)-1] == 0 {
		return 0, fmt.Errorf("%w: the data file is shorter than it was: zero bytes at %d", io.ErrUnexpectedEOF, off+int64(len(p))-1)
	}
	n := uint64(len(p))
	if c := f.dataCopied.Add(n); c%dataSweepBytes < n {
		unix.Madvise(m, unix.MADV_DONTNEED)
	}
	return len(p), nil
}
