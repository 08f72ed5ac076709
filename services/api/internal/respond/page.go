package respond

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// Format is how a page's records are written.
type Format int

// The formats of a page.
const (
	JSON   Format = iota // the records as a JSON array: the lines joined by commas
	NDJSON               // the lines as they are in the file
	CSV                  // a header row of Fields, then one row a record
)

// ChunkSize is the most record bytes WriteTo reads at once.
const ChunkSize = 32 << 10

// ErrCorrupt is a range of records whose bytes do not hold the number of
// lines the index says they hold.
var ErrCorrupt = errors.New("record bytes do not end with a newline where the index says")

// SourceError is an error of the file side of a page (a failed or short
// read, corrupt bytes), as opposed to the client side (a write that failed
// because the client went away or stalled). Only the former needs an
// operator's attention.
type SourceError struct{ Err error }

func (e *SourceError) Error() string { return "reading the generation file: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *SourceError) Unwrap() error { return e.Err }

// IsSourceError reports whether err came from the file side of a page.
func IsSourceError(err error) bool {
	var se *SourceError
	return errors.As(err, &se)
}

// Page is one page of records and how to write it: Head, then the Records
// whole lines in Src's bytes [Start, End) in Format, then Tail; gzipped
// when Gzip is set. Writing it checks that the range holds exactly Records
// lines, the last one ending it; when it does not, or Src is shorter, the
// error is a *SourceError.
type Page struct {
	Head, Tail []byte // the JSON envelope around the records; nil for NDJSON and CSV
	Src        io.ReaderAt
	Start, End int64
	Records    int
	// Ends, when set, are where each record of a JSON page ends (just past
	// its '\n'), as the index says: a range read in one piece turns
	// exactly those bytes into commas instead of scanning for them.
	Ends   []int64
	Format Format
	Fields []string // CSV's header row
	Gzip   bool
}

// Size is the exact length of the body when it is known before the body is
// written (JSON and NDJSON without gzip), else -1.
func (p *Page) Size() int64 {
	if p.Gzip || p.Format == CSV {
		return -1
	}
	n := int64(len(p.Head)+len(p.Tail)) + p.End - p.Start
	if p.Format == JSON && p.End > p.Start {
		n-- // the last newline is dropped
	}
	return n
}

// Append appends the whole body to dst. A body of known Size has its
// records read straight into dst, in one piece.
func (p *Page) Append(dst []byte) ([]byte, error) {
	size := p.Size()
	if size < 0 {
		buf := bytes.NewBuffer(dst)
		if _, err := p.WriteTo(buf); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	dst = append(dst, p.Head...)
	at := len(dst)
	dst = slices.Grow(dst, int(size))[:at+int(p.End-p.Start)]
	var lines int
	recs, err := p.records(dst[at:], p.Start, true, &lines)
	if err != nil {
		return nil, err
	}
	return append(dst[:at+len(recs)], p.Tail...), nil
}

// WriteTo writes the body to w, ChunkSize record bytes at a time, and
// returns the bytes written to w. It stops at the first error: w's, or a
// *SourceError.
func (p *Page) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	if !p.Gzip {
		err := p.write(cw)
		return cw.n, err
	}
	zw := gzipWriters.Get().(*gzip.Writer)
	defer func() {
		zw.Reset(io.Discard)
		gzipWriters.Put(zw)
	}()
	zw.Reset(cw)
	err := p.write(zw)
	if err == nil {
		err = zw.Close()
	}
	return cw.n, err
}

// write writes the uncompressed body to w.
func (p *Page) write(w io.Writer) error {
	var rows *csvWriter
	if p.Format == CSV {
		var err error
		if rows, err = newCSVWriter(w, p.Fields); err != nil {
			return err
		}
	} else if _, err := w.Write(p.Head); err != nil {
		return err
	}
	buf := chunks.Get().(*[]byte)
	defer chunks.Put(buf)
	var lines int
	for off := p.Start; off < p.End; {
		n := min(ChunkSize, p.End-off)
		recs, err := p.records((*buf)[:n], off, off+n == p.End, &lines)
		if err == nil && rows != nil {
			err = rows.lines(recs)
		} else if err == nil {
			_, err = w.Write(recs)
		}
		if err != nil {
			return err
		}
		off += n
	}
	if rows != nil {
		return rows.flush()
	}
	_, err := w.Write(p.Tail)
	return err
}

// gzipWriters write at the fastest level: record JSON compresses well even
// there, and the api's budget is CPU.
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return w
}}

var chunks = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// records reads len(b) record bytes of Src at off into b and returns them
// as they are written: for JSON with each newline turned into a comma, the
// range's last one dropped. lines counts the newlines read so far; the
// chunk that ends the range (last) checks that they are Records, the last
// one ending it.
func (p *Page) records(b []byte, off int64, last bool, lines *int) ([]byte, error) {
	if n, err := p.Src.ReadAt(b, off); n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, &SourceError{fmt.Errorf("read records at %d: %w", off+int64(n), err)}
	}
	switch {
	case p.Format != JSON:
		*lines += bytes.Count(b, newline)
	case p.Ends != nil && off == p.Start && last: // the whole range is in b
		for _, end := range p.Ends {
			i := end - 1 - off
			if i < 0 || i >= int64(len(b)) || b[i] != '\n' {
				return nil, &SourceError{ErrCorrupt}
			}
			b[i] = ','
		}
		*lines = len(p.Ends)
	default:
		for i := 0; ; *lines++ {
			j := bytes.IndexByte(b[i:], '\n')
			if j < 0 {
				break
			}
			i += j
			b[i] = ','
		}
	}
	if !last || len(b) == 0 {
		return b, nil
	}
	if end := b[len(b)-1]; *lines != p.Records || (end != '\n' && end != ',') {
		return nil, &SourceError{ErrCorrupt}
	}
	if p.Format == JSON {
		b = b[:len(b)-1]
	}
	return b, nil
}

var newline = []byte{'\n'}

// countingWriter counts the bytes written to w.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
