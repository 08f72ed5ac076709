package schema

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrRecordShape is wrapped by every error of RecordDecoder: the line is not
// one record of the decoder's fields.
var ErrRecordShape = errors.New("not a record of these fields")

// RecordDecoder reads records of one field list: one compact JSON object
// whose keys are the fields, in order, and whose values are JSON strings in
// valid UTF-8, on one line (docs/files.md). That is exactly what
// RecordEncoder writes, and it is the only reader of those bytes: the writer
// checks row bodies with Check, and readers that need the values (CSV
// output, projections, lookups) take them from Decode. A RecordDecoder is
// safe for concurrent use.
type RecordDecoder struct {
	fields   []string
	prefixes [][]byte // `{"f1":` then `,"f2":` ...
}

// NewRecordDecoder prepares a decoder for records with fields, in order.
func NewRecordDecoder(fields []string) (*RecordDecoder, error) {
	enc, err := NewRecordEncoder(fields)
	if err != nil {
		return nil, err
	}
	return &RecordDecoder{fields: enc.fields, prefixes: enc.prefixes}, nil
}

// Fields returns the field names, in order. The caller must not modify them.
func (d *RecordDecoder) Fields() []string { return d.fields }

// Check reports whether line (without its '\n') is one record of d's
// fields. An error wraps ErrRecordShape and says where the line departs
// from the shape. Check does not allocate on success.
func (d *RecordDecoder) Check(line []byte) error {
	_, err := d.Decode(line, nil, nil)
	return err
}

// Decode checks line as Check does and calls fn with each field's 0-based
// position and its value, unescaped, in field order. value is valid only
// during the call: it points into line or into scratch. Decode returns
// scratch, grown as needed, for the caller to pass again; fn may be nil.
// An error from fn stops Decode and is returned as is; line is never
// modified.
func (d *RecordDecoder) Decode(line, scratch []byte, fn func(i int, value []byte) error) ([]byte, error) {
	if !utf8.Valid(line) {
		return scratch, fmt.Errorf("%w: invalid UTF-8", ErrRecordShape)
	}
	pos := 0
	for i, p := range d.prefixes {
		if len(line)-pos < len(p) || string(line[pos:pos+len(p)]) != string(p) {
			if i == 0 && (len(line) == 0 || line[0] != '{') {
				return scratch, fmt.Errorf("%w: not a JSON object", ErrRecordShape)
			}
			return scratch, fmt.Errorf("%w: field %d is not %s at byte %d", ErrRecordShape, i+1, p[1:len(p)-1], pos)
		}
		pos += len(p)
		end, escaped, err := scanString(line, pos)
		if err != nil {
			return scratch, fmt.Errorf("%w: field %d: %v", ErrRecordShape, i+1, err)
		}
		if fn != nil {
			value := line[pos+1 : end-1]
			if escaped {
				scratch = appendUnescaped(scratch[:0], value)
				value = scratch
			}
			if err := fn(i, value); err != nil {
				return scratch, err
			}
		}
		pos = end
	}
	if pos != len(line)-1 || line[pos] != '}' {
		return scratch, fmt.Errorf("%w: expected the end of the object at byte %d", ErrRecordShape, pos)
	}
	return scratch, nil
}

// stringClass of each byte inside a JSON string: 0 plain, 1 quote,
// 2 backslash, 3 control character (never allowed raw).
var stringClass = func() (t [256]byte) {
	for c := 0; c < 0x20; c++ {
		t[c] = 3
	}
	t['"'] = 1
	t['\\'] = 2
	return t
}()

// scanString checks the JSON string starting at b[pos] and returns the
// offset just past its closing quote, and whether it holds an escape.
func scanString(b []byte, pos int) (end int, escaped bool, err error) {
	if pos >= len(b) || b[pos] != '"' {
		return 0, false, errors.New("value is not a string")
	}
	i := pos + 1
	for i < len(b) {
		for i+8 <= len(b) && PlainInJSONString(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i >= len(b) {
			break
		}
		switch stringClass[b[i]] {
		case 0:
			i++
		case 1:
			return i + 1, escaped, nil
		case 2:
			n, err := escapeLen(b[i:])
			if err != nil {
				return 0, false, err
			}
			i += n
			escaped = true
		default:
			return 0, false, fmt.Errorf("raw control character 0x%02x in a string", b[i])
		}
	}
	return 0, false, errors.New("unterminated string")
}

// escapeLen is the length of the valid escape at the start of b (b[0] is
// '\\').
func escapeLen(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, errors.New("unterminated escape")
	}
	switch b[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, nil
	case 'u':
		if _, ok := hex4(b[2:]); !ok {
			return 0, errors.New(`bad \u escape`)
		}
		return 6, nil
	}
	return 0, fmt.Errorf(`bad escape \%c`, b[1])
}

// hex4 is the value of the four hex digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// appendUnescaped appends the value of the JSON string body s (between its
// quotes, already checked by scanString) to dst. A lone surrogate becomes
// U+FFFD, as encoding/json decodes it.
func appendUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch s[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(s[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				r2, ok := lowSurrogate(s[i:])
				if r = utf16.DecodeRune(r, r2); ok && r != utf8.RuneError {
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, s[i+1])
		}
		i += 2
	}
	return dst
}

// lowSurrogate reads a `\uXXXX` escape at the start of s.
func lowSurrogate(s []byte) (rune, bool) {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return utf8.RuneError, false
	}
	return hex4(s[2:])
}
