package respond

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf16"
	"unicode/utf8"
)

// CSV streams the records in [Start, End) of a generation file as CSV
// (RFC 4180, CRLF line ends) with a header row of Fields.
//
// This is the one output that decodes records: a CSV cell holds the value
// itself, while the file holds it JSON-escaped (\", \\, \n, \uXXXX), and CSV
// quotes by its own rules, so every value is unescaped from JSON and
// re-quoted for CSV. The decoder handles the flat object of strings that
// schema.RecordEncoder writes; anything else falls back to encoding/json.
type CSV struct {
	Fields     []string
	Src        io.ReaderAt
	Start, End int64
}

// WriteTo implements io.WriterTo. It holds one pooled ChunkSize input
// buffer, one output buffer of about ChunkSize, and the current record.
func (c CSV) WriteTo(w io.Writer) (int64, error) {
	out := make([]byte, 0, ChunkSize+4096)
	var total int64
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		n, err := w.Write(out)
		total += int64(n)
		out = out[:0]
		return err
	}
	for i, f := range c.Fields {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendCSVField(out, []byte(f))
	}
	out = append(out, '\r', '\n')

	bp := chunks.Get().(*[]byte)
	defer chunks.Put(bp)
	buf := *bp
	var (
		partial []byte // a line split across two reads
		scratch []byte
		offs    = make([]int, 2*len(c.Fields))
		pos     = c.Start
	)
	for pos < c.End {
		n := int(min(int64(len(buf)), c.End-pos))
		got, err := c.Src.ReadAt(buf[:n], pos)
		if got < n {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return total, &SourceError{fmt.Errorf("read records at %d: %w", pos+int64(got), err)}
		}
		pos += int64(n)
		chunk := buf[:n]
		for len(chunk) > 0 {
			i := bytes.IndexByte(chunk, '\n')
			if i < 0 {
				partial = append(partial, chunk...)
				break
			}
			line := chunk[:i]
			chunk = chunk[i+1:]
			if len(partial) > 0 {
				partial = append(partial, line...)
				line, partial = partial, partial[:0]
			}
			if scratch, err = decodeRecord(line, c.Fields, offs, scratch[:0]); err != nil {
				return total, &SourceError{err}
			}
			for f := range c.Fields {
				if f > 0 {
					out = append(out, ',')
				}
				out = appendCSVField(out, scratch[offs[2*f]:offs[2*f+1]])
			}
			out = append(out, '\r', '\n')
			if len(out) >= ChunkSize {
				if err := flush(); err != nil {
					return total, err
				}
			}
		}
	}
	if len(partial) > 0 {
		return total, &SourceError{ErrCorrupt}
	}
	return total, flush()
}

// appendCSVField quotes v when it holds a comma, a quote, CR or LF, or
// starts with a space or tab (as encoding/csv does), doubling its quotes.
func appendCSVField(dst, v []byte) []byte {
	quote := len(v) > 0 && (v[0] == ' ' || v[0] == '\t')
	if !quote {
		for _, c := range v {
			if c == ',' || c == '"' || c == '\r' || c == '\n' {
				quote = true
				break
			}
		}
	}
	if !quote {
		return append(dst, v...)
	}
	dst = append(dst, '"')
	for {
		i := bytes.IndexByte(v, '"')
		if i < 0 {
			break
		}
		dst = append(dst, v[:i+1]...)
		dst = append(dst, '"')
		v = v[i+1:]
	}
	dst = append(dst, v...)
	return append(dst, '"')
}

var errNotFlat = errors.New("not a flat object of strings")

// decodeRecord unescapes the values of one record into scratch; value f
// (in Fields order) is scratch[offs[2f]:offs[2f+1]]. Keys are matched by
// name (in the usual case key i is field i); a field the record lacks is
// empty.
func decodeRecord(line []byte, fields []string, offs []int, scratch []byte) ([]byte, error) {
	for i := range offs {
		offs[i] = 0
	}
	out, err := decodeFlat(line, fields, offs, scratch)
	if err == nil {
		return out, nil
	}
	if !errors.Is(err, errNotFlat) {
		return scratch, err
	}
	return decodeGeneral(line, fields, offs, scratch[:0])
}

func decodeFlat(line []byte, fields []string, offs []int, scratch []byte) ([]byte, error) {
	p := 0
	if len(line) < 2 || line[0] != '{' {
		return scratch, errNotFlat
	}
	p = 1
	if line[p] == '}' && p+1 == len(line) {
		return scratch, nil
	}
	var keyBuf [64]byte
	for i := 0; ; i++ {
		if p >= len(line) || line[p] != '"' {
			return scratch, errNotFlat
		}
		key, np, err := unquote(line, p, keyBuf[:0])
		if err != nil {
			return scratch, err
		}
		p = np
		if p >= len(line) || line[p] != ':' {
			return scratch, errNotFlat
		}
		p++
		if p >= len(line) || line[p] != '"' {
			return scratch, errNotFlat
		}
		start := len(scratch)
		scratch, p, err = unquote(line, p, scratch)
		if err != nil {
			return scratch, err
		}
		f := -1
		if i < len(fields) && fields[i] == string(key) {
			f = i
		} else {
			for j, name := range fields {
				if name == string(key) {
					f = j
					break
				}
			}
		}
		if f >= 0 {
			offs[2*f], offs[2*f+1] = start, len(scratch)
		}
		if p >= len(line) {
			return scratch, errNotFlat
		}
		switch line[p] {
		case ',':
			p++
		case '}':
			if p+1 != len(line) {
				return scratch, errNotFlat
			}
			return scratch, nil
		default:
			return scratch, errNotFlat
		}
	}
}

// unquote appends the unescaped JSON string starting at line[p] (a quote)
// to dst and returns the position after its closing quote. Escapes follow
// RFC 8259; an unpaired surrogate becomes U+FFFD, as encoding/json does.
func unquote(line []byte, p int, dst []byte) ([]byte, int, error) {
	p++ // opening quote
	for p < len(line) {
		c := line[p]
		switch {
		case c == '"':
			return dst, p + 1, nil
		case c == '\\':
			if p+1 >= len(line) {
				return dst, p, errNotFlat
			}
			e := line[p+1]
			p += 2
			switch e {
			case '"', '\\', '/':
				dst = append(dst, e)
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
				r, ok := hex4(line, p)
				if !ok {
					return dst, p, errNotFlat
				}
				p += 4
				if utf16.IsSurrogate(r) {
					if r2, ok := hex4(line, p+2); ok && p+1 < len(line) && line[p] == '\\' && line[p+1] == 'u' {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							p += 6
							dst = utf8.AppendRune(dst, dec)
							continue
						}
					}
					r = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, r)
			default:
				return dst, p, errNotFlat
			}
		case c < 0x20:
			return dst, p, errNotFlat
		default:
			start := p
			for p < len(line) && line[p] != '"' && line[p] != '\\' && line[p] >= 0x20 {
				p++
			}
			dst = append(dst, line[start:p]...)
		}
	}
	return dst, p, errNotFlat
}

func hex4(b []byte, p int) (rune, bool) {
	if p+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[p : p+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// decodeGeneral is the slow path for a record that is not a flat object of
// strings: a non-string value is written as its JSON text (null as empty).
func decodeGeneral(line []byte, fields []string, offs []int, scratch []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return scratch, fmt.Errorf("%w: a record is not a JSON object: %v", ErrCorrupt, err)
	}
	for f, name := range fields {
		raw, ok := m[name]
		start := len(scratch)
		switch {
		case !ok || string(raw) == "null":
		case len(raw) > 0 && raw[0] == '"':
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return scratch, fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
			scratch = append(scratch, s...)
		default:
			scratch = append(scratch, raw...)
		}
		offs[2*f], offs[2*f+1] = start, len(scratch)
	}
	return scratch, nil
}
