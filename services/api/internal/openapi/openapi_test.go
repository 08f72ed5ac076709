package openapi

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

func decode(t *testing.T, o Options) map[string]any {
	t.Helper()
	b, err := Document(o)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// at returns the value ptr, a JSON Pointer, names in doc, or nil.
func at(doc any, ptr string) any {
	for _, k := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		switch v := doc.(type) {
		case map[string]any:
			doc = v[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(v) {
				return nil
			}
			doc = v[i]
		default:
			return nil
		}
	}
	return doc
}

func TestTheConfiguredFiguresAreWhereClientsReadThem(t *testing.T) {
	doc := decode(t, Options{MaxLimit: 77, DefaultLimit: 7, DefaultDataset: "shop", ScanLimit: 555})
	for ptr, want := range map[string]any{
		"/components/parameters/limit/schema/maximum":         77.0,
		"/components/parameters/limit/schema/default":         7.0,
		"/components/parameters/dataset/schema/default":       "shop",
		"/components/schemas/Scan/properties/scanned/maximum": 555.0,
		"/security/0/apiKey":                                  []any{},
		"/security/1/bearer":                                  []any{},
	} {
		if got := at(doc, ptr); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", ptr, got, want)
		}
	}
	for _, p := range []string{"/fetch-data", "/datasets/{name}/records", "/datasets/{name}/rejects"} {
		params := jsonOf(t, at(doc, "/paths").(map[string]any)[p].(map[string]any)["parameters"])
		if !strings.Contains(params, `"#/components/parameters/limit"`) {
			t.Errorf("%s does not take the configured limit: %s", p, params)
		}
	}
	if sec := at(decode(t, Options{AuthOff: true}), "/security"); !reflect.DeepEqual(sec, []any{}) {
		t.Errorf("API_AUTH=off: security = %v, want []", sec)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTheDocumentStatesTheFormatsOfPkgSchema(t *testing.T) {
	doc := decode(t, Options{})
	for ptr, want := range map[string]any{
		"/components/parameters/dataset/schema/pattern":         schema.DatasetPattern,
		"/components/parameters/name/schema/pattern":            schema.DatasetPattern,
		"/components/schemas/Reject/properties/error/maxLength": float64(schema.RejectErrorMax),
		"/components/schemas/Reject/properties/raw/maxLength":   float64(schema.RejectRawMax),
		"/components/schemas/Metadata/properties/state/enum":    []any{schema.StateComplete},
		"/components/schemas/Metadata/properties/mode/enum":     []any{string(schema.ModeReplace), string(schema.ModeAppend)},
	} {
		if got := at(doc, ptr); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v (pkg/schema)", ptr, got, want)
		}
	}
}

func TestEveryRefResolves(t *testing.T) {
	doc := decode(t, Options{})
	var walk func(v any)
	n := 0
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				n++
				if !strings.HasPrefix(ref, "#/") || at(doc, ref[1:]) == nil {
					t.Errorf("$ref %s names nothing", ref)
				}
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(doc)
	if n < 50 {
		t.Errorf("only %d $refs", n)
	}
}

// A member the code fills that the document lost is an error, not a
// document without the figure.
func TestSetRefusesAMemberTheDocumentLacks(t *testing.T) {
	doc := map[string]any{"a": map[string]any{"b": 1.0}, "s": "x"}
	if err := set(doc, "/a/b", 2); err != nil || at(doc, "/a/b") != 2 {
		t.Fatalf("set /a/b: %v, %v", err, doc)
	}
	for _, ptr := range []string{"/a/c", "/x/b", "/s/b"} {
		if err := set(doc, ptr, 3); err == nil {
			t.Errorf("set %s: no error, %v", ptr, doc)
		}
	}
}
