package respond

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
)

// csvWriter writes records, given as the lines of a generation file, as
// CSV rows (RFC 4180, CRLF line ends) under a header row of the fields.
//
// CSV is the one output that decodes records: a cell holds the value
// itself, while the file holds it JSON-escaped.
type csvWriter struct {
	w      *csv.Writer
	fields []string
	vals   []string
	carry  []byte // a line cut at the end of the previous chunk
	rows   int    // records written
}

func newCSVWriter(w io.Writer, fields []string) *csvWriter {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	return &csvWriter{w: cw, fields: fields, vals: make([]string, len(fields))}
}

func (c *csvWriter) header() error { return c.w.Write(c.fields) }

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

// cut reports whether a line was left without its newline.
func (c *csvWriter) cut() bool { return len(c.carry) > 0 }

func (c *csvWriter) row(line []byte) error {
	vals, err := decodeRecord(line, c.fields, c.vals)
	if err != nil {
		return &SourceError{err}
	}
	c.rows++
	return c.w.Write(vals)
}

// end writes what the csv.Writer still buffers.
func (c *csvWriter) end() error {
	c.w.Flush()
	return c.w.Error()
}

// decodeRecord returns the values of a record line in the order of fields.
func decodeRecord(line []byte, fields, vals []string) ([]string, error) {
	var m map[string]string
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, fmt.Errorf("record %.40q: %w", line, err)
	}
	for i, f := range fields {
		vals[i] = m[f]
	}
	return vals, nil
}
