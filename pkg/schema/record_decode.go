package schema

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrRecordShape is wrapped by the errors of RecordDecoder.Values: the
// bytes are not a record of the decoder's fields.
var ErrRecordShape = errors.New("not a record of these fields")

// RecordDecoder finds the values of records of one set of fields (the
// encoding of docs/messages.md) without decoding them: each value comes
// back as its JSON string token, quotes included, a slice of the record.
// It is safe for concurrent use.
type RecordDecoder struct {
	prefixes [][]byte // `{"f1":` then `,"f2":` ...
}

// NewRecordDecoder prepares a decoder for records with fields, in order.
func NewRecordDecoder(fields []string) (*RecordDecoder, error) {
	e, err := NewRecordEncoder(fields)
	if err != nil {
		return nil, err
	}
	return &RecordDecoder{prefixes: e.prefixes}, nil
}

// Fields is the number of fields of a record.
func (d *RecordDecoder) Fields() int { return len(d.prefixes) }

// Values appends to dst[:0] the JSON string token of each value of rec
// (one record, without its '\n'), in field order, and returns it. The
// tokens are slices of rec. The keys must be the decoder's fields in
// order; the strings are checked for their quotes and escapes, not for
// UTF-8 (the writer checked it). It does not allocate once dst has room.
func (d *RecordDecoder) Values(rec []byte, dst [][]byte) ([][]byte, error) {
	return d.walk(rec, dst[:0], len(d.prefixes), true)
}

// Leading is Values for the first n fields only: it neither reads nor
// checks the bytes after the n-th value, for a reader that trusts the
// record (the writer checked it) and needs early fields.
func (d *RecordDecoder) Leading(rec []byte, dst [][]byte, n int) ([][]byte, error) {
	return d.walk(rec, dst[:0], min(max(n, 0), len(d.prefixes)), true)
}

// Check reports whether rec (one record, without its '\n') is a record
// of the decoder's fields, as Values would, without allocating.
func (d *RecordDecoder) Check(rec []byte) error {
	_, err := d.walk(rec, nil, len(d.prefixes), false)
	return err
}

func (d *RecordDecoder) walk(rec []byte, dst [][]byte, n int, collect bool) ([][]byte, error) {
	pos := 0
	for i, p := range d.prefixes[:n] {
		if !bytes.HasPrefix(rec[pos:], p) {
			return dst, fmt.Errorf("%w: field %d is not %s at byte %d", ErrRecordShape, i+1, p[1:len(p)-1], pos)
		}
		pos += len(p)
		end, err := skipJSONString(rec, pos)
		if err != nil {
			return dst, fmt.Errorf("%w: field %d: %v", ErrRecordShape, i+1, err)
		}
		if collect {
			dst = append(dst, rec[pos:end])
		}
		pos = end
	}
	if n < len(d.prefixes) {
		return dst, nil
	}
	if pos >= len(rec) || pos != len(rec)-1 || rec[pos] != '}' {
		return dst, fmt.Errorf("%w: expected the end of the object at byte %d", ErrRecordShape, pos)
	}
	return dst, nil
}

// AppendRaw appends one record of the encoder's fields whose values are
// the JSON string tokens in raw, as RecordDecoder.Values returns them:
// a projection of another record, with no decoding and re-encoding.
func (e *RecordEncoder) AppendRaw(dst []byte, raw [][]byte) []byte {
	for i, p := range e.prefixes {
		dst = append(dst, p...)
		dst = append(dst, raw[i]...)
	}
	return append(dst, '}')
}

// AppendJSONStringValue appends the string a JSON string token (quotes
// included) stands for. A token without a backslash is copied as it is.
func AppendJSONStringValue(dst, token []byte) ([]byte, error) {
	if len(token) < 2 || token[0] != '"' || token[len(token)-1] != '"' {
		return dst, fmt.Errorf("%w: not a JSON string token", ErrRecordShape)
	}
	if bytes.IndexByte(token, '\\') < 0 {
		return append(dst, token[1:len(token)-1]...), nil
	}
	var s string
	if err := json.Unmarshal(token, &s); err != nil {
		return dst, fmt.Errorf("%w: %v", ErrRecordShape, err)
	}
	return append(dst, s...), nil
}

// JSONStringEquals reports whether the JSON string token stands for value,
// without allocating when the token has no escape.
func JSONStringEquals(token []byte, value string) bool {
	if len(token) < 2 {
		return false
	}
	if bytes.IndexByte(token, '\\') < 0 {
		return string(token[1:len(token)-1]) == value
	}
	var s string
	return json.Unmarshal(token, &s) == nil && s == value
}

// skipJSONString checks the JSON string starting at b[pos] and returns the
// offset just past its closing quote.
func skipJSONString(b []byte, pos int) (int, error) {
	if pos >= len(b) || b[pos] != '"' {
		return 0, errors.New("value is not a string")
	}
	i := pos + 1
	for i < len(b) {
		for i+8 <= len(b) && PlainInJSONString(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i >= len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(b) {
				return 0, errors.New("unterminated escape")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHexDigit(b[i+2]) || !isHexDigit(b[i+3]) || !isHexDigit(b[i+4]) || !isHexDigit(b[i+5]) {
					return 0, errors.New("bad \\u escape")
				}
				i += 6
			default:
				return 0, fmt.Errorf("bad escape \\%c", b[i+1])
			}
		case c < 0x20:
			return 0, fmt.Errorf("raw control character 0x%02x in a string", c)
		default:
			i++
		}
	}
	return 0, errors.New("unterminated string")
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
