package respond

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// readRange reads len(p) bytes of src at pos into p and returns the bytes
// to send: p itself, or in join mode p with its line ends turned into
// commas (see lineEnds), the last one dropped when p ends the range (last),
// where it must be a '\n'. A short or failed read, or bytes that do not
// end lines where they must, is a *SourceError.
//
// It is a function of its own, not a method of Body, so that the line ends
// of a body built on the caller's stack (Buffer) stay there: escape
// analysis does not tell one field of a struct from another, and src
// escapes.
func readRange(src io.ReaderAt, p []byte, pos int64, last, join bool, lines *lineEnds) ([]byte, error) {
	n := len(p)
	got, err := src.ReadAt(p, pos)
	if got < n {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, &SourceError{fmt.Errorf("read records at %d: %w", pos+int64(got), err)}
	}
	if !join {
		return p, nil
	}
	if last && (n == 0 || p[n-1] != '\n') {
		return nil, &SourceError{ErrCorrupt}
	}
	if err := lines.join(p, pos); err != nil {
		return nil, &SourceError{err}
	}
	if last {
		p = p[:n-1] // the last line's separator is not followed by a record
	}
	return p, nil
}

// lineEnds turns the line ends of a range into the commas of a JSON array,
// chunk by chunk. Without known ends (the zero lineEnds) it scans each
// chunk for '\n'; with the ends of every line (SetEnds) it checks and
// rewrites only those bytes, which costs a few nanoseconds a record instead
// of a pass over all of the bytes.
type lineEnds struct {
	ends []int64 // offsets just past each '\n', ascending; nil: scan
	next int     // ends[next] is the first end not yet reached
}

// newLineEnds returns the lineEnds of the range [start, end) for ends, or
// the scanning one when ends are not the line ends of such a range.
func newLineEnds(ends []int64, start, end int64) lineEnds {
	if len(ends) == 0 || ends[0] <= start || ends[len(ends)-1] != end {
		return lineEnds{}
	}
	return lineEnds{ends: ends}
}

// join rewrites the line ends in chunk, the bytes of the range from file
// offset base on, into commas. Chunks come in order; a chunk may start
// past the end of the previous one (what was sent another way is skipped).
// A known end that is not a '\n' is ErrCorrupt: the index and the data
// file disagree.
func (l *lineEnds) join(chunk []byte, base int64) error {
	if l.ends == nil {
		for rest := chunk; ; {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				return nil
			}
			rest[i] = ','
			rest = rest[i+1:]
		}
	}
	for l.next < len(l.ends) && l.ends[l.next] <= base {
		l.next++
	}
	limit := base + int64(len(chunk))
	for ; l.next < len(l.ends) && l.ends[l.next] <= limit; l.next++ {
		i := l.ends[l.next] - 1 - base
		if i < 0 || chunk[i] != '\n' { // i < 0: ends out of order
			return ErrCorrupt
		}
		chunk[i] = ','
	}
	return nil
}
