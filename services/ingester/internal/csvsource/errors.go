package csvsource

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Reasons a data row is rejected. Each is wrapped by a *RowError, so a caller
// tests the reason with errors.Is; the message of each is the short, stable
// phrase that goes into schema.Reject.Reason.
var (
	// ErrFieldCount: the row has more or fewer fields than the header.
	ErrFieldCount = errors.New("wrong number of fields")
	// ErrQuote: a quoted field that never closes, or text right after the
	// closing quote of a field ("abc"def). A '"' inside an unquoted field
	// (12" pizza) is not an error: it is kept as it is, as spreadsheets and
	// Python's csv module do.
	ErrQuote = errors.New("broken quoting")
	// ErrInvalidUTF8: a field is not valid UTF-8 (after --encoding). It is
	// schema.ErrInvalidUTF8 itself, so either name matches.
	ErrInvalidUTF8 = schema.ErrInvalidUTF8
	// ErrTooLarge: the record is over the size limit (schema.MaxRecordBytes
	// once encoded as JSON).
	ErrTooLarge = errors.New("record too large")
)

// RowError is one rejected data row: where it is and why. The reader is
// positioned after the row, so reading goes on with the next one. It is the
// one type the ingester's output, the reject messages and the tests use.
type RowError struct {
	File   string // the source's name as the user gave it ("-" for standard input)
	Line   int    // line of the source where the row starts, 1-based (the header is line 1)
	Column int    // 1-based field number the problem is in; 0 when it is about the whole row
	Err    error  // the reason: ErrFieldCount, ErrQuote, ErrInvalidUTF8 or ErrTooLarge
	Detail string // what exactly, e.g. "3 fields, want 4"
	Raw    string // the start of the row's text, valid UTF-8, for a person to read
}

// Error reads "<file>:<line>: <reason>: <detail>", the form compilers use,
// so editors and grep find the line.
func (e *RowError) Error() string { return e.message(e.File) }

func (e *RowError) message(file string) string {
	s := fmt.Sprintf("%s:%d: %v", file, e.Line, e.Err)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Unwrap returns the reason, for errors.Is.
func (e *RowError) Unwrap() error { return e.Err }

// Reject returns the body of the reject message for e. Its Error names the
// source by its base name ("bad.csv:3: ..."): the message is kept and
// served to others, who have no business with the directories of the
// machine that ran the ingester.
func (e *RowError) Reject() schema.Reject {
	return schema.Reject{Line: e.Line, Column: e.Column, Reason: e.Err.Error(), Error: e.message(baseName(e.File)), Raw: e.Raw}
}

// baseName is the last element of a file path or of a URL's path ("-"
// stays "-").
func baseName(name string) string {
	p := filepath.ToSlash(name)
	if u, err := url.Parse(name); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		p = u.Path
	}
	if b := path.Base(p); b != "." && b != "/" {
		return b
	}
	return name
}

// Reasons a whole source is refused before anything is published. Each is
// wrapped by a *SourceError.
var (
	// ErrEmpty: the source has no bytes at all.
	ErrEmpty = errors.New("is empty (0 bytes)")
	// ErrBOMOnly: the source holds a byte order mark and nothing else.
	ErrBOMOnly = errors.New("holds only a byte order mark, no header line")
	// ErrNoHeader: the source holds only blank lines.
	ErrNoHeader = errors.New("has no header line (only blank lines)")
	// ErrBadHeader: the header line cannot be used (broken quoting,
	// invalid UTF-8, too long).
	ErrBadHeader = errors.New("has an unusable header line")
	// ErrUnreadable: the source cannot be opened or read (missing file,
	// no permission, a folder, an HTTP error status).
	ErrUnreadable = errors.New("cannot be read")
)

// SourceError is a problem with the source as a whole. Err wraps one of the
// sentinels above (or, for a read failing half-way, the I/O error).
type SourceError struct {
	Name string // the source's name as the user gave it
	Err  error
}

func (e *SourceError) Error() string { return e.Name + ": " + e.Err.Error() }

// Unwrap returns the reason, for errors.Is.
func (e *SourceError) Unwrap() error { return e.Err }

func sourceErr(name string, sentinel error, format string, args ...any) *SourceError {
	if format == "" {
		return &SourceError{Name: name, Err: sentinel}
	}
	return &SourceError{Name: name, Err: fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)}
}
