package schema

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// ErrInvalidUTF8 is the reason for a field that is not valid UTF-8: it is
// reported, never silently replaced.
var ErrInvalidUTF8 = errors.New("invalid UTF-8")

// FieldError says which field of a record could not be encoded. Err is the
// reason (it wraps ErrInvalidUTF8 for a value that is not UTF-8, with the
// byte offset inside the value); errors.Is and errors.As see through it.
type FieldError struct {
	Column int    // 1-based position of the field in the record
	Field  string // the field's name
	Err    error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("column %d (%s): %v", e.Column, e.Field, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// RecordEncoder encodes CSV records as compact JSON objects whose keys are
// the fields in order. It holds the escaped keys, so encoding a record costs
// one pass over its values and no allocation once dst has grown. A
// RecordEncoder is safe for concurrent use: Append only reads it.
type RecordEncoder struct {
	fields   []string
	prefixes [][]byte // `{"f1":` then `,"f2":` ...
}

// NewRecordEncoder prepares an encoder for fields, which must be unique
// (see UniqueFields) and valid UTF-8.
func NewRecordEncoder(fields []string) (*RecordEncoder, error) {
	if len(fields) == 0 {
		return nil, errors.New("a record needs at least one field")
	}
	e := &RecordEncoder{fields: append([]string(nil), fields...), prefixes: make([][]byte, len(fields))}
	for i, f := range fields {
		p := []byte{','}
		if i == 0 {
			p[0] = '{'
		}
		var err error
		if p, err = AppendJSONString(p, f); err != nil {
			return nil, &FieldError{Column: i + 1, Field: f, Err: fmt.Errorf("header name: %w", err)}
		}
		e.prefixes[i] = append(p, ':')
	}
	return e, nil
}

// Fields returns the field names, in order. The caller must not modify them.
func (e *RecordEncoder) Fields() []string { return e.fields }

// Append appends values as one JSON object to dst: the fields as keys, in
// order, each with its value as a JSON string (see AppendJSONString), with no
// space anywhere. values must have exactly one value per field. A value that
// is not valid UTF-8 gives a *FieldError (naming the 1-based column and
// wrapping ErrInvalidUTF8); a wrong number of values gives a plain error. On
// any error dst is returned with its length on entry, so the bytes it held
// are unchanged. Append does not allocate once dst has room for the record.
func (e *RecordEncoder) Append(dst []byte, values []string) ([]byte, error) {
	if len(values) != len(e.prefixes) {
		return dst, fmt.Errorf("record has %d fields, want %d", len(values), len(e.prefixes))
	}
	start := len(dst)
	for i, v := range values {
		dst = append(dst, e.prefixes[i]...)
		var err error
		if dst, err = AppendJSONString(dst, v); err != nil {
			return dst[:start], &FieldError{Column: i + 1, Field: e.fields[i], Err: err}
		}
	}
	return append(dst, '}'), nil
}

// safeASCII[b] is true for the ASCII bytes that appear in a JSON string as
// themselves.
var safeASCII = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string, byte for byte what an
// encoding/json Encoder with SetEscapeHTML(false) writes: '"' and '\\' are
// backslash-escaped, control characters use \b, \f, \n, \r, \t or \u00XX,
// U+2028 and U+2029 are escaped as \u2028 and \u2029 (so the output is also
// valid JavaScript), and everything else, '<', '>' and '&' included, is
// copied as is. Invalid UTF-8 is an error wrapping ErrInvalidUTF8 naming the
// byte offset (encoding/json would silently write U+FFFD); dst is then
// returned with its length unchanged.
//
// It is one pass: runs of eight plain ASCII bytes, the bulk of product
// text, are skipped a word at a time, and the rest is checked and escaped
// byte by byte or rune by rune.
func AppendJSONString(dst []byte, s string) ([]byte, error) {
	orig := len(dst)
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		for i+8 <= len(s) {
			if w := load64(s, i); !PlainInJSONString(w) || w&highBits != 0 {
				break
			}
			i += 8
		}
		if i >= len(s) {
			break
		}
		b := s[i]
		if b < utf8.RuneSelf {
			if safeASCII[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return dst[:orig], fmt.Errorf("%w: byte 0x%02x at offset %d", ErrInvalidUTF8, b, i)
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			start = i + size
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"'), nil
}

const (
	oneBits  = 0x0101010101010101
	highBits = 0x8080808080808080
)

// PlainInJSONString reports whether none of the 8 bytes of w (as loaded
// little-endian) must be escaped in a JSON string: no '"', no '\\', no
// control character. Bytes from 0x80 up are not judged (they are UTF-8,
// checked on its own). The zero-byte test is exact: a false answer only
// means "look at these bytes one by one".
func PlainInJSONString(w uint64) bool {
	q := w ^ (oneBits * '"')
	bs := w ^ (oneBits * '\\')
	quote := (q - oneBits) &^ q
	backslash := (bs - oneBits) &^ bs
	control := (w - oneBits*0x20) &^ w
	return (quote|backslash|control)&highBits == 0
}

// load64 is s[i:i+8] as a little-endian word (the compiler makes it one
// load).
func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// UniqueFields turns a CSV header into field names that are all different
// and never empty: an empty name becomes column_<position> (1-based), and the
// second and later uses of a name get _2, _3, ... appended. Every change is
// returned in renamed so it can be reported.
func UniqueFields(header []string) (fields []string, renamed []Rename) {
	fields = make([]string, len(header))
	seen := make(map[string]int, len(header))
	taken := make(map[string]bool, len(header))
	for i, h := range header {
		name := h
		if name == "" {
			name = "column_" + strconv.Itoa(i+1)
		}
		seen[name]++
		if n := seen[name]; n > 1 || taken[name] {
			base := name
			for n := max(n, 2); ; n++ {
				if name = base + "_" + strconv.Itoa(n); !taken[name] {
					break
				}
			}
		}
		taken[name] = true
		fields[i] = name
		if name != h {
			renamed = append(renamed, Rename{Column: i + 1, From: h, To: name})
		}
	}
	return fields, renamed
}
