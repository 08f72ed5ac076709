package schema

import (
	"slices"
	"testing"
)

func TestParseFieldList(t *testing.T) {
	for in, want := range map[string][]string{
		"Handle,Variant SKU":              {"Handle", "Variant SKU"},
		`"Weight, kg",Body (HTML),a/b`:    {"Weight, kg", "Body (HTML)", "a/b"},
		`"Say ""hi""",limit`:              {`Say "hi"`, "limit"},
		" Title":                          {" Title"},
		"\"line\nbreak\",x":               {"line\nbreak", "x"},
		"Google Shopping / Gender,Status": {"Google Shopping / Gender", "Status"},
	} {
		if got, err := ParseFieldList(in); err != nil || !slices.Equal(got, want) {
			t.Errorf("%q = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a,,b", `"open`, "a\nb", `a"b`} {
		if got, err := ParseFieldList(bad); err == nil {
			t.Errorf("%q accepted as %q", bad, got)
		}
	}
}
