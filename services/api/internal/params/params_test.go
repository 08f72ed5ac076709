package params

import (
	"net/url"
	"strings"
	"testing"
)

func q(raw string) Query {
	v, _ := url.ParseQuery(raw)
	return func(name string) (string, bool) {
		if _, ok := v[name]; !ok {
			return "", false
		}
		return v.Get(name), true
	}
}

func TestParsePageAcceptsEveryValidEdge(t *testing.T) {
	for _, tc := range []struct {
		query  string
		accept string
		want   Page
	}{
		{"", "", Page{Limit: 10, Format: JSON}},
		{"limit=1&offset=0", "", Page{Limit: 1, Format: JSON}},
		{"limit=1000&offset=999999999", "", Page{Limit: 1000, Offset: 999999999, Format: JSON}},
		{"generation=42", "", Page{Limit: 10, Generation: 42, Format: JSON}},
		{"format=ndjson", "", Page{Limit: 10, Format: NDJSON, FormatParam: true}},
		{"format=CSV", "", Page{Limit: 10, Format: CSV, FormatParam: true}},
		{"", "application/x-ndjson", Page{Limit: 10, Format: NDJSON}},
		{"", "text/csv;q=0.9, application/json;q=0.1", Page{Limit: 10, Format: CSV}},
		{"", "application/x-ndjson;q=0, application/json", Page{Limit: 10, Format: JSON}},
		{"", "text/html,*/*", Page{Limit: 10, Format: JSON}},
		{"format=json", "application/x-ndjson", Page{Limit: 10, Format: JSON, FormatParam: true}},
		{"metadata_only=true", "", Page{Limit: 10, Format: JSON, MetadataOnly: true}},
		{"metadata_only=0", "", Page{Limit: 10, Format: JSON}},
	} {
		got, err := ParsePage(q(tc.query), tc.accept, 1000)
		if err != nil || got != tc.want {
			t.Errorf("%q (Accept %q): %+v %v, want %+v", tc.query, tc.accept, got, err, tc.want)
		}
	}
	if p, _ := ParsePage(q(""), "", 5); p.Limit != 5 {
		t.Errorf("MAX_LIMIT 5: default limit %d, want 5", p.Limit)
	}
}

func TestParsePageNamesTheParameterToChange(t *testing.T) {
	for _, tc := range []struct{ query, param string }{
		{"limit=0", "limit"}, {"limit=-1", "limit"}, {"limit=abc", "limit"}, {"limit=1001", "limit"},
		{"limit=", "limit"}, {"limit=1.5", "limit"}, {"limit=99999999999999999999", "limit"}, {"limit=+5", ""},
		{"offset=-5", "offset"}, {"offset=abc", "offset"}, {"offset=1e3", "offset"}, {"offset=", "offset"},
		{"offset=18446744073709551616", "offset"},
		{"generation=0", "generation"}, {"generation=abc", "generation"}, {"generation=-1", "generation"}, {"generation=", "generation"},
		{"format=xml", "format"}, {"format=", "format"},
		{"metadata_only=maybe", "metadata_only"},
	} {
		_, err := ParsePage(q(tc.query), "", 1000)
		if tc.param == "" {
			continue // accepted or not, it is not what this test is about
		}
		if err == nil {
			t.Errorf("%q accepted", tc.query)
			continue
		}
		if err.Param != tc.param || !strings.HasPrefix(err.Message, tc.param+" ") {
			t.Errorf("%q: param %q, message %q; want it to start with %q", tc.query, err.Param, err.Message, tc.param)
		}
	}
	_, err := ParsePage(q("limit=2000"), "", 1000)
	if !strings.Contains(err.Message, "between 1 and 1000") {
		t.Errorf("limit message does not give the range: %q", err.Message)
	}
}

func TestDatasetNames(t *testing.T) {
	for _, ok := range []string{"products", "a", "0-x_y", strings.Repeat("x", 64)} {
		if err := Dataset(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "UPPER", "a b", "-lead", "_lead", "a.b", "../etc", "..", strings.Repeat("x", 65), "été", "a/b"} {
		err := Dataset(bad)
		if err == nil || !strings.Contains(err.Message, "dataset") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
