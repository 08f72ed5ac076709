package stack

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/rowpipe/rowpipe/services/api/api"
)

// The sample ingested with --index is served by lookups from the indexes
// the writer built, and by scans on the other fields: the same records a
// reading of the CSV finds.
func TestStackLooksUpTheSampleByItsIndexedFields(t *testing.T) {
	const key = "test-key-0123456789abcdef"
	cfg := testConfig(t)
	cfg.API.Keys = api.Keys{key}
	cfg.Ingest = sample
	cfg.Ingester.Index = []string{"Handle", "Variant SKU"}
	s, _, _ := start(t, cfg)
	base := "http://" + s.APIAddr().String()
	want := sampleRecords(t)
	waitForCount(t, base, key, "products", len(want))

	code, body := get(t, base+"/datasets/products", key)
	var meta struct {
		Indexes []struct {
			Field    string `json:"field"`
			Distinct int    `json:"distinct"`
		} `json:"indexes"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &meta) != nil || len(meta.Indexes) != 2 || meta.Indexes[1].Field != "Variant SKU" || meta.Indexes[1].Distinct != len(want) {
		t.Fatalf("metadata: %d %s", code, body)
	}
	for _, field := range []string{"Handle", "Variant SKU", "Vendor"} {
		for _, value := range []string{want[0][field], want[len(want)/2][field], want[len(want)-1][field]} {
			var matches []map[string]string
			for _, r := range want {
				if r[field] == value {
					matches = append(matches, r)
				}
			}
			q := url.Values{"eq." + field: {value}, "limit": {"1000"}}
			code, body := get(t, base+"/fetch-data?"+q.Encode(), key)
			var page struct {
				Count *int                `json:"count"`
				Scan  *json.RawMessage    `json:"scan"`
				Data  []map[string]string `json:"data"`
			}
			if code != http.StatusOK || json.Unmarshal(body, &page) != nil {
				t.Fatalf("%s=%q: %d %s", field, value, code, body)
			}
			if page.Count == nil || *page.Count != len(matches) || len(page.Data) != len(matches) {
				t.Fatalf("%s=%q: %d records (count %v), the CSV has %d", field, value, len(page.Data), page.Count, len(matches))
			}
			if indexed := field != "Vendor"; indexed != (page.Scan == nil) {
				t.Fatalf("%s=%q: indexed %v, but the answer is %.300s", field, value, indexed, body)
			}
			for i := range matches {
				if page.Data[i]["Variant SKU"] != matches[i]["Variant SKU"] {
					t.Fatalf("%s=%q: record %d is %q, want %q", field, value, i, page.Data[i]["Variant SKU"], matches[i]["Variant SKU"])
				}
			}
		}
	}
}
