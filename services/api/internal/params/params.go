// Package params parses and checks the query parameters of the data
// endpoints. Every refusal is an *Error naming the parameter and saying
// what to send instead; nothing here knows about HTTP.
package params

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// DefaultLimit is the page size when the request names none (the contract's).
const DefaultLimit = 10

// MaxOffset bounds offset so that offset+limit never overflows.
const MaxOffset = math.MaxInt64 / 2

// Format is a page's representation.
type Format string

// The formats a page can be served in.
const (
	JSON   Format = "json"   // the envelope with data last (default)
	NDJSON Format = "ndjson" // the raw record lines
	CSV    Format = "csv"    // a header row of the fields, then one row a record
)

// ContentType is the Content-Type of f.
func (f Format) ContentType() string {
	switch f {
	case NDJSON:
		return "application/x-ndjson"
	case CSV:
		return "text/csv; charset=utf-8"
	default:
		return "application/json"
	}
}

// Error is a refused parameter: which one, and a message that says what to
// change (it starts with the parameter's name).
type Error struct {
	Param   string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Query looks a parameter up: its value and whether it was sent at all.
type Query func(name string) (value string, present bool)

// Page is what a data request asks for.
type Page struct {
	Limit        int
	Offset       uint64
	Generation   uint64 // 0: the current one
	Format       Format
	FormatParam  bool // format came from the query string (so links repeat it)
	MetadataOnly bool
}

// ParsePage reads limit, offset, generation, format and metadata_only.
// accept is the request's Accept header: application/x-ndjson (or
// application/ndjson) selects NDJSON and text/csv selects CSV when format
// is not given. maxLimit is MAX_LIMIT.
func ParsePage(q Query, accept string, maxLimit int) (Page, *Error) {
	p := Page{Format: JSON}
	var e *Error
	if p.Limit, p.Offset, e = limitOffset(q, min(DefaultLimit, maxLimit), maxLimit, "records"); e != nil {
		return p, e
	}
	if v, ok := q("generation"); ok {
		g, err := ParseGeneration(v)
		if err != nil {
			return p, err
		}
		p.Generation = g
	}
	if v, ok := q("format"); ok {
		switch f := Format(strings.ToLower(v)); f {
		case JSON, NDJSON, CSV:
			p.Format, p.FormatParam = f, true
		default:
			return p, errorf("format", "format must be json, ndjson or csv (got %s)", quote(v))
		}
	} else {
		p.Format = FromAccept(accept)
	}
	if v, ok := q("metadata_only"); ok {
		b, err := ParseBool(v)
		if err != nil {
			return p, errorf("metadata_only", "metadata_only must be true or false (got %s)", quote(v))
		}
		p.MetadataOnly = b
	}
	return p, nil
}

// limitOffset reads limit (1..maxLimit, def when absent) and offset (the
// number of what to skip).
func limitOffset(q Query, def, maxLimit int, what string) (int, uint64, *Error) {
	limit, offset := def, uint64(0)
	if v, ok := q("limit"); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > int64(maxLimit) {
			return 0, 0, errorf("limit", "limit must be an integer between 1 and %d (got %s); omit it for %d", maxLimit, quote(v), def)
		}
		limit = int(n)
	}
	if v, ok := q("offset"); ok {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > MaxOffset {
			return 0, 0, errorf("offset", "offset must be an integer of at least 0 (got %s): the number of %s to skip", quote(v), what)
		}
		offset = n
	}
	return limit, offset, nil
}

// DefaultListLimit and MaxListLimit bound a page of GET /datasets.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// List is what GET /datasets asks for.
type List struct {
	Limit, Offset int
}

// ParseList reads limit (1..MaxListLimit, default DefaultListLimit) and
// offset of a list of datasets.
func ParseList(q Query) (List, *Error) {
	limit, offset, e := limitOffset(q, DefaultListLimit, MaxListLimit, "datasets")
	return List{Limit: limit, Offset: int(min(offset, math.MaxInt32))}, e
}

// ParseGeneration reads a generation number: a positive integer.
func ParseGeneration(v string) (uint64, *Error) {
	g, err := strconv.ParseUint(v, 10, 64)
	if err != nil || g == 0 {
		return 0, errorf("generation", "generation must be a positive integer, a generation number as metadata_only=true reports it (got %s); omit it to read the current generation", quote(v))
	}
	return g, nil
}

// ParseBool accepts true/false, 1/0, yes/no, in any case.
func ParseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "1", "yes":
		return true, nil
	case "false", "0", "no":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean: %q", v)
}

// FromAccept picks the format an Accept header asks for: the first of
// NDJSON or CSV it names with a non-zero quality, else JSON.
func FromAccept(accept string) Format {
	if accept == "" {
		return JSON
	}
	for part := range strings.SplitSeq(accept, ",") {
		media, paramsPart, _ := strings.Cut(part, ";")
		if qZero(paramsPart) {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(media)) {
		case "application/x-ndjson", "application/ndjson", "application/jsonl":
			return NDJSON
		case "text/csv":
			return CSV
		case "application/json":
			return JSON
		}
	}
	return JSON
}

func qZero(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(k, "q") {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err == nil && f == 0
		}
	}
	return false
}

// Dataset checks a dataset name from the query or the path.
func Dataset(name string) *Error {
	if err := schema.ValidateDataset(name); err != nil {
		return &Error{Param: "dataset", Message: "dataset: " + err.Error()}
	}
	return nil
}

func errorf(param, format string, args ...any) *Error {
	return &Error{Param: param, Message: fmt.Sprintf(format, args...)}
}

// quote shows a client's value in a message, shortened and escaped.
func quote(v string) string {
	if v == "" {
		return "an empty value"
	}
	if len(v) > 40 {
		v = v[:40] + "…"
	}
	return strconv.Quote(v)
}
