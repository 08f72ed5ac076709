package dataset

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
)

// StateDir is the folder under DATA_DIR holding the writer's own record of
// each dataset, StateDir/<dataset>.json. It is kept out of the dataset
// folders, which hold only what readers use (generations and CURRENT), and
// its name starts with '.', so it is never taken for a dataset.
//
// A record holds the dataset as of the last framing message the writer
// applied (begin, end, abort, or a failure): the current generation's
// header, the sync being built or appended with the header to fall back to,
// and the state last published to the key-value bucket. It is replaced
// atomically (write, sync, rename, sync directory) after each such
// message's effects on the files, and before its state is published, so
// that after a crash the writer knows which framing message to apply again,
// can rebuild a torn header, and can publish a state it had not published
// yet.
const StateDir = ".writer-state"

// StatePath is the writer's record of dataset name under dataDir.
func StatePath(dataDir, name string) string {
	return filepath.Join(dataDir, StateDir, name+".json")
}

const stateVersion = 1

type persisted struct {
	Version int    `json:"version"`
	Dataset string `json:"dataset"`
	// Seq is the stream sequence of the last framing message applied.
	Seq uint64 `json:"seq"`
	// Current is the header of the current generation as of Seq.
	Current *schema.Header `json:"current,omitempty"`
	// Building is the replace sync building a new generation.
	Building *openSync `json:"building,omitempty"`
	// Append is the append sync growing the current generation.
	Append *openSync `json:"append,omitempty"`
	// Ignore is the last sync that ended (committed, failed or
	// abandoned): its late messages, copies of ones published again past
	// the broker's de-duplication window, are dropped without counting
	// them as hostile.
	Ignore string `json:"ignore,omitempty"`
	// State is what was (or is about to be) published for Seq.
	State schema.DatasetState `json:"state"`
}

// openSync is a sync between its begin and its end.
type openSync struct {
	Sync string `json:"sync"`
	// Begin is the stream sequence of its (first) begin.
	Begin  uint64        `json:"begin"`
	Source schema.Source `json:"source"`
	// Index names the fields the begin asked lookup indexes of.
	Index []string `json:"index,omitempty"`
	// Header is, for a replace sync, its generation's header at creation;
	// for an append sync, the current generation's header at the begin,
	// which an abort rolls back to.
	Header schema.Header `json:"header"`
}

func loadState(fsys disk.FS, path string) (persisted, bool, error) {
	var p persisted
	b, err := fsys.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, false, nil
	}
	if err != nil {
		return p, false, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, false, fmt.Errorf("%s: %w", path, err)
	}
	if p.Version != stateVersion {
		return p, false, fmt.Errorf("%s: version %d, this writer reads %d", path, p.Version, stateVersion)
	}
	return p, true, nil
}

func saveState(fsys disk.FS, path string, p persisted, durable bool) error {
	p.Version = stateVersion
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := fsys.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return disk.WriteFileAtomic(fsys, path, append(b, '\n'), durable)
}
