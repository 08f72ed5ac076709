package schema

import (
	"encoding/csv"
	"errors"
	"fmt"
	"strings"
)

// ParseFieldList reads a list of field names as people type them, for
// `ingester --index` and the api's fields= parameter: one CSV record, so
// names are separated by commas, and a name holding a comma, a quote or a
// line break is quoted ("Weight, kg"; "" for a quote inside quotes).
// Spaces are part of the names. An empty list, an empty name or bad
// quoting is an error.
func ParseFieldList(s string) ([]string, error) {
	if s == "" {
		return nil, errors.New("name at least one field, e.g. Handle,Title")
	}
	r := csv.NewReader(strings.NewReader(s))
	r.FieldsPerRecord = -1
	names, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%q is not a comma-separated list of names (quote a name holding a comma as in CSV): %v", s, err)
	}
	if _, err := r.Read(); err == nil {
		return nil, fmt.Errorf("%q holds a line break outside quotes", s)
	}
	for _, n := range names {
		if n == "" {
			return nil, fmt.Errorf("%q names an empty field", s)
		}
	}
	return names, nil
}
