// Package record checks that a row message's body is a record of its
// generation before the writer appends it: one compact JSON object whose
// keys are the generation's fields, in order, and whose values are JSON
// strings, in valid UTF-8, on one line. That is exactly what
// schema.RecordEncoder produces, so a body that passes is served as is and
// a body that fails (garbage, another shape, a line break) is never
// written.
//
// The check is one pass over the bytes with no allocation: the keys are
// compared with precomputed byte prefixes and the values are scanned for
// their closing quote.
package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// ErrShape is wrapped by every error from Shape.Check.
var ErrShape = errors.New("row body is not a record of this generation")

// Shape is the expected shape of the records of one generation. It is safe
// for concurrent use.
type Shape struct {
	prefixes [][]byte // `{"f1":` then `,"f2":` ...
}

// NewShape prepares the check for records with fields, in order.
func NewShape(fields []string) (*Shape, error) {
	if len(fields) == 0 {
		return nil, errors.New("a record needs at least one field")
	}
	s := &Shape{prefixes: make([][]byte, len(fields))}
	for i, f := range fields {
		p := []byte{','}
		if i == 0 {
			p[0] = '{'
		}
		var err error
		if p, err = schema.AppendJSONString(p, f); err != nil {
			return nil, fmt.Errorf("field %d: %w", i+1, err)
		}
		s.prefixes[i] = append(p, ':')
	}
	return s, nil
}

// Check reports whether body is one record of this shape.
func (s *Shape) Check(body []byte) error {
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: invalid UTF-8", ErrShape)
	}
	pos := 0
	for i, p := range s.prefixes {
		if len(body)-pos < len(p) || string(body[pos:pos+len(p)]) != string(p) {
			if i == 0 && (len(body) == 0 || body[0] != '{') {
				return fmt.Errorf("%w: not a JSON object", ErrShape)
			}
			return fmt.Errorf("%w: field %d is not %s at byte %d", ErrShape, i+1, p[1:len(p)-1], pos)
		}
		pos += len(p)
		end, err := skipString(body, pos)
		if err != nil {
			return fmt.Errorf("%w: field %d: %v", ErrShape, i+1, err)
		}
		pos = end
	}
	if pos != len(body)-1 || body[pos] != '}' {
		return fmt.Errorf("%w: expected the end of the object at byte %d", ErrShape, pos)
	}
	return nil
}

// class of each byte inside a JSON string: 0 plain, 1 quote, 2 backslash,
// 3 control character (never allowed raw).
var class = func() (t [256]byte) {
	for c := 0; c < 0x20; c++ {
		t[c] = 3
	}
	t['"'] = 1
	t['\\'] = 2
	return t
}()

// skipString checks the JSON string starting at b[pos] and returns the
// offset just past its closing quote.
func skipString(b []byte, pos int) (int, error) {
	if pos >= len(b) || b[pos] != '"' {
		return 0, errors.New("value is not a string")
	}
	i := pos + 1
	for i < len(b) {
		// Skip 8 plain bytes at a time: no quote, backslash or control
		// character among them.
		for i+8 <= len(b) && schema.PlainInJSONString(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i >= len(b) {
			break
		}
		switch class[b[i]] {
		case 0:
			i++
		case 1:
			return i + 1, nil
		case 2:
			if i+1 >= len(b) {
				return 0, errors.New("unterminated escape")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return 0, errors.New("bad \\u escape")
				}
				i += 6
			default:
				return 0, fmt.Errorf("bad escape \\%c", b[i+1])
			}
		default:
			return 0, fmt.Errorf("raw control character 0x%02x in a string", b[i])
		}
	}
	return 0, errors.New("unterminated string")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
