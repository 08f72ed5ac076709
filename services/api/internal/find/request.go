// Package find answers the filtered and projected requests of the data
// endpoints from one open generation: equality filters on any field,
// answered from a lookup index (pkg/schema/docs/lookup.md) in O(1) when
// the field has one and by a bounded scan that says where to continue
// when it has not; and a projection of the fields. It reads one record
// at a time and hands each answer to its caller, so a request holds one
// record and its page, whatever the generation's size. Nothing here knows
// about HTTP.
//
// The query syntax works for every header name, spaces, parentheses, '/',
// '.', '=' and names such as "limit" included:
//
//	eq.<field>=<value>     records whose <field> is exactly <value>; several AND
//	fields=<f1>,<f2>,...   only these fields, in this order (one CSV record:
//	                       a name holding ',' or '"' is quoted, "" for a quote)
//	cursor=<token>         continue a scan where the previous page stopped
//
// Names and values are percent-decoded first, as every query parameter
// is (so '+' is a space: send %2B for a plus sign).
package find

import (
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Parameter names.
const (
	FilterPrefix = "eq."
	FieldsParam  = "fields"
	CursorParam  = "cursor"
)

// Filter is one equality: records whose field (0-based) is Value.
type Filter struct {
	Field int
	Value string
}

// Request is the filtering and projection a request asks for.
type Request struct {
	Filters []Filter // in the order given; all must hold
	// Fields is the projection, in the order asked; nil means every field.
	Fields []int
	// Cursor continues a scan; nil starts at the beginning.
	Cursor *Cursor
}

// Cursor is where a scan stopped: generation G, and the position among
// the candidates the scan walks (docs in the README).
type Cursor struct {
	Generation uint64
	Position   uint64
}

// String is the token a client passes back: "<generation>.<position>".
func (c Cursor) String() string {
	return strconv.FormatUint(c.Generation, 10) + "." + strconv.FormatUint(c.Position, 10)
}

// ParseCursor reads a Cursor token.
func ParseCursor(s string) (Cursor, error) {
	g, p, ok := strings.Cut(s, ".")
	gen, err1 := strconv.ParseUint(g, 10, 64)
	pos, err2 := strconv.ParseUint(p, 10, 64)
	if !ok || err1 != nil || err2 != nil || gen == 0 {
		return Cursor{}, errors.New("not a cursor")
	}
	return Cursor{Generation: gen, Position: pos}, nil
}

// Error is a refused parameter: its name, a message that says what to
// send instead, and for an unknown field the fields there are.
type Error struct {
	Param   string
	Message string
	Fields  []string // set when a field name is unknown
}

func (e *Error) Error() string { return e.Message }

// Shape is what a generation's fields give once for all its requests:
// their positions by name and a decoder of its records. It is safe for
// concurrent use.
type Shape struct {
	fields []string
	pos    map[string]int
	dec    *schema.RecordDecoder
}

// NewShape prepares the Shape of records with fields.
func NewShape(fields []string) (*Shape, error) {
	dec, err := schema.NewRecordDecoder(fields)
	if err != nil {
		return nil, err
	}
	pos := make(map[string]int, len(fields))
	for i, f := range fields {
		pos[f] = i
	}
	return &Shape{fields: fields, pos: pos, dec: dec}, nil
}

// Parse reads the filters, the projection and the cursor from args, the
// query string's (name, value) pairs in order, already percent-decoded,
// for records of shape. Other parameters are not its business.
func Parse(shape *Shape, args iter.Seq2[string, string]) (Request, *Error) {
	var req Request
	fields, pos := shape.fields, shape.pos
	unknown := func(param, name string) *Error {
		return &Error{Param: param, Fields: fields, Message: fmt.Sprintf("%s: no field %q; the fields are %s", param, name, quoteAll(fields))}
	}
	seenFields := false
	for name, value := range args {
		switch {
		case strings.HasPrefix(name, FilterPrefix):
			field := name[len(FilterPrefix):]
			i, ok := pos[field]
			if !ok {
				return req, unknown(name, field)
			}
			req.Filters = append(req.Filters, Filter{Field: i, Value: value})
		case name == FieldsParam:
			if seenFields {
				return req, &Error{Param: name, Message: "fields: send it once, the names separated by commas"}
			}
			seenFields = true
			names, err := schema.ParseFieldList(value)
			if err != nil {
				return req, &Error{Param: name, Message: "fields: " + err.Error()}
			}
			seen := make(map[int]bool, len(names))
			for _, n := range names {
				i, ok := pos[n]
				if !ok {
					return req, unknown(name, n)
				}
				if seen[i] {
					return req, &Error{Param: name, Message: fmt.Sprintf("fields: %q is named twice", n)}
				}
				seen[i] = true
				req.Fields = append(req.Fields, i)
			}
		case name == CursorParam:
			c, err := ParseCursor(value)
			if err != nil {
				return req, &Error{Param: name, Message: fmt.Sprintf("cursor: %q is not a cursor; pass back the next_cursor of the previous page as it is", value)}
			}
			req.Cursor = &c
		}
	}
	return req, nil
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}
