// Package record checks that a row message's body is a record of its
// generation before the writer appends it: one compact JSON object whose
// keys are the generation's fields, in order, and whose values are JSON
// strings, in valid UTF-8, on one line. That is exactly what
// schema.RecordEncoder produces, so a body that passes is served as is and
// a body that fails (garbage, another shape, a line break) is never
// written.
//
// The check is one pass over the bytes with no allocation
// (schema.RecordDecoder.Check), after a UTF-8 check.
package record

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// ErrShape is wrapped by every error from Shape.Check.
var ErrShape = errors.New("row body is not a record of this generation")

// Shape is the expected shape of the records of one generation. It is safe
// for concurrent use.
type Shape struct {
	dec *schema.RecordDecoder
}

// NewShape prepares the check for records with fields, in order.
func NewShape(fields []string) (*Shape, error) {
	dec, err := schema.NewRecordDecoder(fields)
	if err != nil {
		return nil, err
	}
	return &Shape{dec: dec}, nil
}

// Check reports whether body is one record of this shape.
func (s *Shape) Check(body []byte) error {
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: invalid UTF-8", ErrShape)
	}
	if err := s.dec.Check(body); err != nil {
		return fmt.Errorf("%w: %s", ErrShape, strings.TrimPrefix(err.Error(), schema.ErrRecordShape.Error()+": "))
	}
	return nil
}
