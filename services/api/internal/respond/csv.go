package respond

import (
	"bytes"
	"encoding/csv"
	"io"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// csvWriter writes records, given as the lines of a generation file, as
// CSV rows (RFC 4180, CRLF line ends) under a header row of the fields.
//
// CSV is the one output that decodes records: a cell holds the value
// itself, while the file holds it JSON-escaped.
type csvWriter struct {
	w       *csv.Writer
	dec     *schema.RecordDecoder
	vals    []string
	scratch []byte
	carry   []byte // a line cut at the end of the previous chunk
}

// newCSVWriter writes the header row of fields to w and returns the
// writer of the rows.
func newCSVWriter(w io.Writer, fields []string) (*csvWriter, error) {
	dec, err := schema.NewRecordDecoder(fields)
	if err != nil {
		return nil, &SourceError{err}
	}
	c := &csvWriter{w: csv.NewWriter(w), dec: dec, vals: make([]string, len(fields))}
	c.w.UseCRLF = true
	return c, c.w.Write(fields)
}

// lines writes a row for each complete line of chunk; a line the chunk cuts
// is kept until the next one.
func (c *csvWriter) lines(chunk []byte) error {
	for {
		i := bytes.IndexByte(chunk, '\n')
		if i < 0 {
			c.carry = append(c.carry, chunk...)
			return nil
		}
		line := chunk[:i]
		if len(c.carry) > 0 {
			c.carry = append(c.carry, line...)
			line = c.carry
		}
		if err := c.row(line); err != nil {
			return err
		}
		c.carry = c.carry[:0]
		chunk = chunk[i+1:]
	}
}

func (c *csvWriter) row(line []byte) error {
	var err error
	c.scratch, err = c.dec.Decode(line, c.scratch[:0], func(i int, v []byte) error {
		c.vals[i] = string(v)
		return nil
	})
	if err != nil {
		return &SourceError{err}
	}
	return c.w.Write(c.vals)
}

// flush writes what the csv.Writer still buffers.
func (c *csvWriter) flush() error {
	c.w.Flush()
	return c.w.Error()
}
