package api

import (
	"path/filepath"

	"github.com/rowpipe/rowpipe/services/api/internal/building"
)

// datasetItem is one dataset of GET /datasets: its current generation's
// metadata and, while the files show one, the sync in progress.
type datasetItem struct {
	metadataBody
	Building *building.Progress `json:"building,omitempty"`
}

func (s *Server) datasetItem(name string, m metadataBody) datasetItem {
	p, err := building.Find(filepath.Join(s.cfg.DataDir, name), m.Generation)
	if err != nil {
		s.log.Warn("sync in progress not shown", "dataset", name, "err", err)
	}
	return datasetItem{metadataBody: m, Building: p}
}
