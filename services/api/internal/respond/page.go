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

// ChunkSize is the most record bytes a Stream reads at once.
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
// when Gzip is set.
type Page struct {
	Head, Tail []byte // the JSON envelope around the records; nil for NDJSON and CSV
	Src        io.ReaderAt
	Start, End int64
	Records    int
	// Ends, when set, are where each record ends (just past its '\n'), as
	// the index says: a JSON page read whole turns exactly those bytes into
	// commas instead of scanning for them.
	Ends   []int64
	Format Format
	Fields []string // CSV's header row
	Gzip   bool
	// Direct, when set, writes n bytes of Src at off to the connection
	// itself (sendfile): a Stream of an NDJSON page without gzip uses it
	// for the records, after flushing what its writer holds. An error
	// wrapping errors.ErrUnsupported, nothing written, falls back to
	// writing them.
	Direct func(off, n int64) (int64, error)
}

// Size is the exact length of the body when it is known before the body is
// produced (JSON and NDJSON without gzip), else -1.
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

// Append appends the whole body to dst.
func (p *Page) Append(dst []byte) ([]byte, error) {
	if n := p.Size(); n >= 0 {
		dst = append(dst, p.Head...)
		at := len(dst)
		dst = slices.Grow(dst, int(n))[:at+int(p.End-p.Start)]
		var lines int
		recs, err := p.records(dst[at:], p.Start, true, &lines)
		if err != nil {
			return nil, err
		}
		return append(dst[:at+len(recs)], p.Tail...), nil
	}
	s := p.Stream(nil)
	defer s.Close()
	w := bytes.NewBuffer(dst)
	if _, err := s.WriteTo(w); err != nil {
		return nil, err
	}
	return w.Bytes(), nil
}

// records reads len(b) record bytes of Src at off into b and returns what
// to write: b itself, or for JSON b with its newlines turned into commas,
// the range's last one dropped. lines counts the newlines read so far; the
// chunk that ends the range (last) checks that they are Records, the last
// one ending it.
func (p *Page) records(b []byte, off int64, last bool, lines *int) ([]byte, error) {
	if err := readFull(p.Src, b, off); err != nil {
		return nil, err
	}
	if p.Format == NDJSON {
		*lines += bytes.Count(b, newline)
	} else if p.Ends != nil && off == p.Start && last {
		for _, end := range p.Ends {
			i := end - 1 - off
			if i < 0 || i >= int64(len(b)) || b[i] != '\n' {
				return nil, &SourceError{ErrCorrupt}
			}
			b[i] = ','
		}
		*lines = len(p.Ends)
	} else {
		for rest := b; ; *lines++ {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				break
			}
			rest[i] = ','
			rest = rest[i+1:]
		}
	}
	if !last || len(b) == 0 {
		return b, nil
	}
	if *lines != p.Records || (b[len(b)-1] != '\n' && b[len(b)-1] != ',') {
		return nil, &SourceError{ErrCorrupt}
	}
	if p.Format == JSON {
		b = b[:len(b)-1]
	}
	return b, nil
}

var newline = []byte{'\n'}

// readFull reads len(b) bytes of src at off; a short read is a *SourceError.
func readFull(src io.ReaderAt, b []byte, off int64) error {
	if n, err := src.ReadAt(b, off); n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return &SourceError{fmt.Errorf("read records at %d: %w", off+int64(n), err)}
	}
	return nil
}

// Stream returns the body as a reader that produces it ChunkSize record
// bytes at a time, for a page too large to hold whole. done, if not nil,
// runs once on Close with the bytes read and the error that stopped the
// body (nil when all of it was read; io.ErrUnexpectedEOF when it was
// closed before its end).
func (p *Page) Stream(done func(int64, error)) *Stream {
	s := &Stream{p: *p, pos: p.Start, done: done}
	s.w = (*sink)(s)
	if p.Gzip {
		s.zw = gzipWriters.Get().(*gzip.Writer)
		s.zw.Reset(s.w)
		s.w = s.zw
	}
	return s
}

// Stream is a page body produced as it is read. It implements io.Reader,
// io.WriterTo (which writes each part as it is produced, with no copy) and
// io.Closer.
type Stream struct {
	p        Page
	pos      int64     // the next record byte to read
	w        io.Writer // where produced bytes go: the sink, or zw into it
	zw       *gzip.Writer
	csv      *csvWriter
	in       *[]byte   // pooled ChunkSize buffer of record bytes
	dst      io.Writer // set during WriteTo: the sink writes there
	pending  *[]byte   // pooled: produced, not yet read (Read)
	lines    int       // newlines read
	started  bool
	finished bool // everything is produced
	read     int64
	err      error
	done     func(int64, error)
	closed   bool
}

// sink is where a Stream's output lands: its WriteTo destination, or the
// pending bytes Read hands out.
type sink Stream

func (k *sink) Write(b []byte) (int, error) {
	if k.dst != nil {
		n, err := k.dst.Write(b)
		k.read += int64(n)
		return n, err
	}
	if k.pending == nil {
		k.pending = buffers.Get().(*[]byte)
	}
	*k.pending = append(*k.pending, b...)
	return len(b), nil
}

var buffers = sync.Pool{New: func() any { b := make([]byte, 0, ChunkSize); return &b }}

// step produces the next part of the body.
func (s *Stream) step() error {
	p := &s.p
	switch {
	case !s.started:
		s.started = true
		if p.Format == CSV {
			s.csv = newCSVWriter(s.w, p.Fields)
			return s.csv.header()
		}
		_, err := s.w.Write(p.Head)
		return err
	case s.pos < p.End:
		if s.in == nil {
			s.in = buffers.Get().(*[]byte)
		}
		n := min(int64(ChunkSize), p.End-s.pos)
		chunk := (*s.in)[:n]
		last := s.pos+n == p.End
		var err error
		if p.Format == CSV {
			err = s.csvChunk(chunk, last)
		} else if chunk, err = p.records(chunk, s.pos, last, &s.lines); err == nil {
			_, err = s.w.Write(chunk)
		}
		s.pos += n
		return err
	default:
		s.finished = true
		if s.csv != nil {
			if err := s.csv.end(); err != nil {
				return err
			}
		} else if _, err := s.w.Write(p.Tail); err != nil {
			return err
		}
		if s.zw != nil {
			return s.zw.Close()
		}
		return nil
	}
}

// csvChunk writes the complete lines of chunk as CSV rows, keeping a line
// cut at the chunk's end for the next one.
func (s *Stream) csvChunk(chunk []byte, last bool) error {
	if err := readFull(s.p.Src, chunk, s.pos); err != nil {
		return err
	}
	if err := s.csv.lines(chunk); err != nil {
		return err
	}
	if last && (s.csv.cut() || s.csv.rows != s.p.Records) {
		return &SourceError{ErrCorrupt}
	}
	return nil
}

// Read implements io.Reader.
func (s *Stream) Read(b []byte) (int, error) {
	for (s.pending == nil || len(*s.pending) == 0) && !s.finished && s.err == nil {
		s.err = s.step()
	}
	if s.pending == nil || len(*s.pending) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		return 0, io.EOF
	}
	n := copy(b, *s.pending)
	*s.pending = (*s.pending)[:copy(*s.pending, (*s.pending)[n:])]
	s.read += int64(n)
	return n, nil
}

// WriteTo implements io.WriterTo.
func (s *Stream) WriteTo(w io.Writer) (int64, error) {
	start := s.read
	if s.pending != nil && len(*s.pending) > 0 {
		n, err := w.Write(*s.pending)
		s.read += int64(n)
		*s.pending = (*s.pending)[:0]
		if err != nil {
			s.err = err
			return s.read - start, err
		}
	}
	if s.p.Direct != nil && s.p.Format == NDJSON && !s.p.Gzip && !s.started {
		if n, err := s.direct(w); n > 0 || !errors.Is(err, errors.ErrUnsupported) {
			return n, err
		}
		s.started, s.err = false, nil // not a socket: write the records below
	}
	s.dst = w
	defer func() { s.dst = nil }()
	for !s.finished && s.err == nil {
		s.err = s.step()
	}
	return s.read - start, s.err
}

// direct writes the records with Page.Direct.
func (s *Stream) direct(w io.Writer) (int64, error) {
	s.started = true
	if f, ok := w.(interface{ Flush() error }); ok {
		if s.err = f.Flush(); s.err != nil {
			return 0, s.err
		}
	}
	n, err := s.p.Direct(s.pos, s.p.End-s.pos)
	s.pos += n
	s.read += n
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = &SourceError{fmt.Errorf("send records at %d: %w", s.pos, err)}
	}
	s.err, s.finished = err, err == nil
	return n, err
}

// Close gives the stream's buffers back and calls done. It is idempotent
// and returns nil.
func (s *Stream) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.err
	if err == nil && (!s.finished || (s.pending != nil && len(*s.pending) > 0)) {
		err = io.ErrUnexpectedEOF
	}
	for _, b := range []**[]byte{&s.in, &s.pending} {
		if *b != nil {
			**b = (**b)[:0]
			buffers.Put(*b)
			*b = nil
		}
	}
	if s.zw != nil {
		s.zw.Reset(io.Discard)
		gzipWriters.Put(s.zw)
		s.zw = nil
	}
	if s.done != nil {
		s.done(s.read, err)
	}
	return nil
}
