package schema

import (
	"encoding/json"
	"fmt"
	"time"
)

// StateBucket is the JetStream key-value bucket where writers publish each
// dataset's state (key: the dataset name, value: DatasetState as JSON). It
// is how an ingester learns, with no access to the files, whether its source
// is unchanged, whether an interrupted sync can be resumed, and when its own
// sync has been committed (--wait).
func StateBucket(stream string) string { return stream + "_STATE" }

// Outcomes of a sync as the writer saw it.
const (
	OutcomeCommitted = "committed" // the generation is visible (replace) or the rows are (append)
	OutcomeAborted   = "aborted"   // the ingester aborted it; the previous generation stays
	OutcomeFailed    = "failed"    // the writer refused it (row count, gap); the previous generation stays
	OutcomeDiscarded = "discarded" // a newer begin replaced it before its end
)

// GenerationState summarises one generation (docs/state.md).
type GenerationState struct {
	// Generation is the stream sequence of the begin that opened it.
	Generation uint64 `json:"generation"`
	// Sync is the sync that created it or last appended to it; for
	// Building, the sync an interrupted ingester may resume.
	Sync     string `json:"sync"`
	Count    uint64 `json:"count"`
	Rejected uint64 `json:"rejected"`
	// SHA256 is the source digest: for Current, of the source that made it
	// (an ingester with the same digest is "unchanged"); for Building, the
	// one its begin announced (empty when not known in advance).
	SHA256    string    `json:"sha256,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
	// Mode is the mode of Sync, so a resuming ingester can check it runs
	// the same kind of sync. Empty in states written before it existed.
	Mode Mode `json:"mode,omitempty"`
}

// SyncOutcome is how one sync ended.
type SyncOutcome struct {
	Sync       string `json:"sync"`
	Outcome    string `json:"outcome"`
	Generation uint64 `json:"generation,omitempty"`
	Rows       uint64 `json:"rows"`
	Rejected   uint64 `json:"rejected"`
	Reason     string `json:"reason,omitempty"`
}

// DatasetState is the value of a dataset's key in StateBucket. Current is
// the generation readers are served (nil before the first commit), Building
// the replace-mode generation still receiving rows (nil when none), Last the
// outcome of the latest sync to finish.
type DatasetState struct {
	Dataset string `json:"dataset"`
	// Seq is the stream sequence of the message this state reflects; a
	// writer only ever replaces a state with one of a higher Seq, so
	// replicas applying the same stream agree.
	Seq      uint64           `json:"seq"`
	Current  *GenerationState `json:"current,omitempty"`
	Building *GenerationState `json:"building,omitempty"`
	Last     *SyncOutcome     `json:"last,omitempty"`
}

// EncodeState returns s as JSON: the value a writer puts in StateBucket.
func EncodeState(s DatasetState) []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // plain data always marshals
	}
	return b
}

// DecodeState parses a state value. Unknown members are ignored, so a
// newer writer's states still decode.
func DecodeState(b []byte) (DatasetState, error) {
	var s DatasetState
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("dataset state: %w", err)
	}
	return s, nil
}
