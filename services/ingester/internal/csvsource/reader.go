package csvsource

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/text/encoding"
	"golang.org/x/text/transform"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Options say how to read a source. The zero value reads UTF-8 and detects
// the delimiter.
type Options struct {
	// Encoding decodes the source to UTF-8; nil means the source is UTF-8
	// already (and invalid UTF-8 is rejected row by row, never replaced).
	Encoding encoding.Encoding
	// Delimiter separates fields; 0 detects it from the header line (see
	// DetectDelimiter).
	Delimiter byte
	// MaxRecordBytes bounds the text of one record; a longer record is
	// rejected with ErrTooLarge and skipped without being held in memory.
	// 0 means schema.MaxRecordBytes.
	MaxRecordBytes int
}

// bufSize is the read buffer: one read system call per 128 KiB of source.
const bufSize = 128 << 10

// maxHeaderFields bounds the columns of a header.
const maxHeaderFields = 1 << 16

// rawLen is how much of a rejected row's text goes into RowError.Raw.
const rawLen = schema.RejectRawMax

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// Reader reads CSV records one at a time, as RFC 4180 says, with the
// leniencies real exports need:
//
//   - records end with "\n", "\r\n" or a lone "\r" (old Mac exports);
//     inside a quoted field every byte is kept as it is, "\r\n" included;
//   - a blank line is no record;
//   - a '"' inside an unquoted field is kept literally;
//   - a UTF-8 byte order mark at the start is dropped.
//
// It holds one buffer of 128 KiB and one record (at most MaxRecordBytes), so
// memory does not grow with the source. Line numbers count physical lines of
// the (decoded) source, the header being line 1.
type Reader struct {
	src    io.Reader
	name   string
	buf    []byte
	pos    int
	end    int
	srcErr error // sticky: io.EOF or the read error, once src returned it
	read   int64 // bytes read from src (decoded bytes when an encoding is set)
	bom    bool

	comma    byte
	stop     [256]bool // bytes that end a run of an unquoted field
	line     int       // line breaks consumed so far: the current line is line+1
	lastCR   bool      // the last byte counted inside a quoted field was '\r'
	maxBytes int

	rec       []byte // the field bytes of the current record, back to back
	ends      []int  // end offset in rec of each stored field
	nfields   int    // fields in the current record (may exceed len(ends))
	maxFields int    // store the ends of at most this many fields
	oversize  bool   // rec stopped growing: the record is over maxBytes
	startLine int    // line where the current record starts

	header []string
	fields []string
}

// NewReader reads the header of r and returns a Reader positioned on the
// first data row. name is used in errors. A source that is empty, holds only
// a byte order mark or only blank lines, or whose header is broken, gives a
// *SourceError wrapping ErrEmpty, ErrBOMOnly, ErrNoHeader or ErrBadHeader;
// a failing read gives a *SourceError wrapping the read error.
func NewReader(r io.Reader, name string, o Options) (*Reader, error) {
	if o.Encoding != nil {
		r = transform.NewReader(r, o.Encoding.NewDecoder())
	}
	rd := &Reader{src: r, name: name, buf: make([]byte, bufSize), maxBytes: o.MaxRecordBytes}
	if rd.maxBytes <= 0 {
		rd.maxBytes = schema.MaxRecordBytes
	}
	// Look ahead far enough to drop a BOM and see the whole header line.
	for rd.end-rd.pos < len(utf8BOM) && rd.fillMore() {
	}
	if bytes.HasPrefix(rd.buf[rd.pos:rd.end], utf8BOM) {
		rd.pos += len(utf8BOM)
		rd.bom = true
	}
	for !headerLineComplete(rd.buf[rd.pos:rd.end]) && rd.fillMore() {
	}
	if err := rd.readErr(); err != nil {
		return nil, err
	}
	rd.setDelimiter(o.Delimiter)
	if o.Delimiter == 0 {
		rd.setDelimiter(DetectDelimiter(rd.buf[rd.pos:rd.end]))
	}

	rd.maxFields = maxHeaderFields
	err := rd.readRecord()
	switch {
	case err == io.EOF && rd.read == 0:
		return nil, sourceErr(name, ErrEmpty, "")
	case err == io.EOF && rd.bom && rd.read == int64(len(utf8BOM)):
		return nil, sourceErr(name, ErrBOMOnly, "")
	case err == io.EOF:
		return nil, sourceErr(name, ErrNoHeader, "")
	case errors.Is(err, ErrQuote):
		return nil, sourceErr(name, ErrBadHeader, "%v", err)
	case err != nil:
		return nil, err
	case rd.oversize:
		return nil, sourceErr(name, ErrBadHeader, "line %d: the header is over %d bytes", rd.startLine, rd.maxBytes)
	case rd.nfields > rd.maxFields:
		return nil, sourceErr(name, ErrBadHeader, "line %d: %d columns, at most %d are allowed", rd.startLine, rd.nfields, rd.maxFields)
	}
	rd.header = make([]string, rd.nfields)
	start := 0
	for i, end := range rd.ends {
		f := rd.rec[start:end]
		if !utf8.Valid(f) {
			return nil, sourceErr(name, ErrBadHeader, "line %d: column %d of the header is not valid UTF-8 (is the file in another encoding? try --encoding windows-1252)", rd.startLine, i+1)
		}
		rd.header[i] = string(f)
		start = end
	}
	rd.maxFields = len(rd.header) + 1
	rd.fields = make([]string, len(rd.header))
	return rd, nil
}

// Header returns the header line's fields as they are in the source (not
// yet made unique: see schema.UniqueFields).
func (r *Reader) Header() []string { return r.header }

// Delimiter returns the field delimiter in use, given or detected.
func (r *Reader) Delimiter() byte { return r.comma }

// Line returns the line where the last record read (or rejected) starts.
func (r *Reader) Line() int { return r.startLine }

// Read returns the next data row, one value per header field. The slice
// and its strings are only valid until the next call to Read: they share
// the reader's buffer, which the next record overwrites, so a caller that
// keeps a value must copy it (strings.Clone). This is what makes reading
// free of per-row allocations.
//
// A row that cannot be a record gives a *RowError (ErrFieldCount, ErrQuote,
// ErrTooLarge) and the reader moves on past it; io.EOF ends the source; any
// other error is a failing read of the source (a *SourceError) after which
// the reader is done.
func (r *Reader) Read() ([]string, error) {
	if err := r.readRecord(); err != nil {
		return nil, err
	}
	if r.oversize {
		return nil, r.RowError(ErrTooLarge, 0, fmt.Sprintf("the row's text is over %d bytes", r.maxBytes))
	}
	if r.nfields != len(r.header) {
		return nil, r.RowError(ErrFieldCount, 0, fmt.Sprintf("%d fields, want %d", r.nfields, len(r.header)))
	}
	// One string over the whole record, sliced per field. It aliases rec,
	// which is only rewritten by the next Read (see the doc comment).
	all := unsafe.String(unsafe.SliceData(r.rec), len(r.rec))
	start := 0
	for i, end := range r.ends {
		r.fields[i] = all[start:end]
		start = end
	}
	return r.fields, nil
}

// RowError returns the rejection of the row last read, for a reason found by
// the caller (ErrInvalidUTF8 or ErrTooLarge when encoding it). column is the
// 1-based field, 0 for the whole row.
func (r *Reader) RowError(reason error, column int, detail string) *RowError {
	return &RowError{File: r.name, Line: r.startLine, Column: column, Err: reason, Detail: detail, Raw: r.raw()}
}

// raw rebuilds the start of the row's text from its fields, for a person
// to recognise the row.
func (r *Reader) raw() string {
	var b strings.Builder
	start := 0
	for i, end := range r.ends {
		if i > 0 {
			b.WriteByte(r.comma)
		}
		b.Write(r.rec[start:end])
		start = end
		if b.Len() >= rawLen {
			break
		}
	}
	s := b.String()
	if len(s) > rawLen {
		s = s[:rawLen]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// BytesRead returns how many bytes the reader has taken from its source so
// far (decoded bytes when an encoding is set).
func (r *Reader) BytesRead() int64 { return r.read }

func (r *Reader) setDelimiter(c byte) {
	r.comma = c
	r.stop = [256]bool{}
	r.stop[c], r.stop['\n'], r.stop['\r'] = true, true, true
}

// fill makes sure at least one unread byte is buffered, reading when the
// buffer is used up. It reports false at the end of the source or on a read
// error (kept in srcErr).
func (r *Reader) fill() bool {
	if r.pos < r.end {
		return true
	}
	r.pos, r.end = 0, 0
	return r.fillMore()
}

// fillMore reads more bytes after the buffered ones, moving those to the
// start of the buffer first. It reports false when nothing more could be
// read: the end of the source, a read error, or a full buffer.
func (r *Reader) fillMore() bool {
	if r.srcErr != nil {
		return false
	}
	if r.pos > 0 {
		r.end = copy(r.buf, r.buf[r.pos:r.end])
		r.pos = 0
	}
	if r.end == len(r.buf) {
		return false
	}
	for empty := 0; ; empty++ {
		n, err := r.src.Read(r.buf[r.end:])
		r.end += n
		r.read += int64(n)
		if err != nil {
			r.srcErr = err
			return n > 0
		}
		if n > 0 {
			return true
		}
		if empty == 100 {
			r.srcErr = io.ErrNoProgress
			return false
		}
	}
}

// readErr is the error that ended reading, nil for none or for io.EOF.
func (r *Reader) readErr() error {
	if r.srcErr == nil || r.srcErr == io.EOF {
		return nil
	}
	return &SourceError{Name: r.name, Err: fmt.Errorf("read failed after %d bytes: %w", r.read, r.srcErr)}
}

// How a field ended.
const (
	endField  = iota // at a delimiter: another field follows
	endRecord        // at a line break
	endSource        // at the end of the source
)

// readRecord reads the next non-blank record into rec and ends. It returns
// io.EOF when no record is left, a *RowError for broken quoting (the record
// consumed), or a *SourceError for a failing read.
func (r *Reader) readRecord() error {
	r.rec = r.rec[:0]
	r.ends = r.ends[:0]
	r.nfields = 0
	r.oversize = false
	for { // blank lines are no record
		if !r.fill() {
			if err := r.readErr(); err != nil {
				return err
			}
			return io.EOF
		}
		c := r.buf[r.pos]
		if c != '\n' && c != '\r' {
			break
		}
		r.pos++
		r.line++
		if c == '\r' {
			r.skipLF()
		}
	}
	r.startLine = r.line + 1
	for {
		var how int
		var qerr error
		if r.fill() && r.buf[r.pos] == '"' {
			r.pos++
			how, qerr = r.quotedField()
		} else {
			how = r.unquotedField()
		}
		if err := r.readErr(); err != nil {
			return err
		}
		if qerr != nil {
			return r.RowError(ErrQuote, r.nfields, qerr.Error())
		}
		if how != endField {
			return nil
		}
	}
}

// unquotedField reads a field that does not start with a quote, up to a
// delimiter, a line break or the end of the source.
func (r *Reader) unquotedField() int {
	for {
		if !r.fill() {
			r.endField()
			return endSource
		}
		b := r.buf[r.pos:r.end]
		i := 0
		for i < len(b) && !r.stop[b[i]] {
			i++
		}
		r.appendBytes(b[:i])
		r.pos += i
		if i == len(b) {
			continue
		}
		r.pos++
		r.endField()
		if b[i] == r.comma {
			return endField
		}
		r.line++
		if b[i] == '\r' {
			r.skipLF()
		}
		return endRecord
	}
}

var (
	lfBytes, crBytes = []byte{'\n'}, []byte{'\r'}
	crlfBytes        = []byte("\r\n")
	quoteBytes       = []byte{'"'}
)

// quoteContext is how much text after a misplaced closing quote an error shows.
const quoteContext = 40

// quotedField reads a quoted field whose opening quote has been consumed.
// On broken quoting it skips the rest of the physical line and returns an
// error describing the problem.
func (r *Reader) quotedField() (int, error) {
	field := r.nfields + 1
	r.lastCR = false
	for {
		if !r.fill() {
			r.endField()
			return endSource, fmt.Errorf("field %d opens a quote on line %d that never closes", field, r.startLine)
		}
		b := r.buf[r.pos:r.end]
		i := bytes.IndexByte(b, '"')
		if i < 0 {
			r.countBreaks(b)
			r.appendBytes(b)
			r.pos = r.end
			continue
		}
		r.countBreaks(b[:i])
		r.lastCR = false
		r.appendBytes(b[:i])
		r.pos += i + 1
		if !r.fill() {
			r.endField()
			return endSource, nil
		}
		switch c := r.buf[r.pos]; {
		case c == '"': // "" is one quote
			r.appendBytes(quoteBytes)
			r.pos++
		case c == r.comma:
			r.pos++
			r.endField()
			return endField, nil
		case c == '\n' || c == '\r':
			r.pos++
			r.line++
			if c == '\r' {
				r.skipLF()
			}
			r.endField()
			return endRecord, nil
		default:
			r.endField()
			after := r.buf[r.pos:min(r.end, r.pos+quoteContext)]
			if j := bytes.IndexAny(after, "\r\n"); j >= 0 {
				after = after[:j]
			}
			how := r.skipLine()
			return how, fmt.Errorf("field %d has text after its closing quote (%q...); a quote inside a quoted field must be doubled (\"\")",
				field, strings.ToValidUTF8(string(after), "\uFFFD"))
		}
	}
}

// skipLine drops the rest of the physical line after broken quoting, so the
// next record starts on the next line.
func (r *Reader) skipLine() int {
	for {
		if !r.fill() {
			return endSource
		}
		b := r.buf[r.pos:r.end]
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			r.pos = r.end
			continue
		}
		r.pos += i + 1
		r.line++
		if b[i] == '\r' {
			r.skipLF()
		}
		return endRecord
	}
}

// skipLF consumes the '\n' of a "\r\n" whose '\r' was just consumed.
func (r *Reader) skipLF() {
	if r.fill() && r.buf[r.pos] == '\n' {
		r.pos++
	}
}

// countBreaks counts the line breaks inside a quoted field: "\r\n", "\n"
// and a lone "\r" are one each, also when "\r\n" is split across reads.
func (r *Reader) countBreaks(b []byte) {
	if len(b) == 0 {
		return
	}
	n := bytes.Count(b, lfBytes)
	if bytes.IndexByte(b, '\r') >= 0 {
		n += bytes.Count(b, crBytes) - bytes.Count(b, crlfBytes)
	}
	if r.lastCR && b[0] == '\n' {
		n--
	}
	r.lastCR = b[len(b)-1] == '\r'
	r.line += n
}

func (r *Reader) appendBytes(b []byte) {
	if r.oversize {
		return
	}
	if len(r.rec)+len(b) > r.maxBytes {
		r.oversize = true
		return
	}
	r.rec = append(r.rec, b...)
}

func (r *Reader) endField() {
	r.nfields++
	if len(r.ends) < r.maxFields {
		r.ends = append(r.ends, len(r.rec))
	}
}

// headerLineComplete reports whether b holds a whole non-blank line (a line
// break outside quotes after some text), so the delimiter can be detected.
func headerLineComplete(b []byte) bool {
	inQuotes, text := false, false
	for _, c := range b {
		switch {
		case c == '"':
			inQuotes, text = !inQuotes, true
		case inQuotes:
		case c == '\n' || c == '\r':
			if text {
				return true
			}
		default:
			text = true
		}
	}
	return false
}
