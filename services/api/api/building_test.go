package api

import (
	"encoding/json"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/datadirtest"
)

func TestDatasetsShowTheSyncInProgress(t *testing.T) {
	h := start(t, nil)
	proto(h) // generation 7, current
	datadirtest.Write(t, h.dataDir, datadirtest.Gen{Dataset: "proto", Generation: 40, Rows: 12, State: schema.StateBuilding})
	var body struct {
		Datasets []struct {
			Dataset    string `json:"dataset"`
			Generation uint64 `json:"generation"`
			Count      uint64 `json:"count"`
			Building   *struct {
				Generation uint64 `json:"generation"`
				Count      uint64 `json:"count"`
			} `json:"building"`
		} `json:"datasets"`
	}
	a := h.get("/datasets")
	if err := json.Unmarshal(a.body, &body); err != nil || len(body.Datasets) != 1 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	d := body.Datasets[0]
	if d.Generation != 7 || d.Count != 25 || d.Building == nil || d.Building.Generation != 40 || d.Building.Count != 12 {
		t.Errorf("want generation 7 served and 40 building with 12 rows so far: %s", a.body)
	}

	// Committed: no sync in progress any more.
	datadirtest.Remove(t, h.dataDir, "proto", 40)
	var after struct {
		Datasets []map[string]any `json:"datasets"`
	}
	if a := h.get("/datasets"); json.Unmarshal(a.body, &after) != nil || len(after.Datasets) != 1 || after.Datasets[0]["building"] != nil {
		t.Errorf("a sync in progress after its files went: %s", a.body)
	}
}
