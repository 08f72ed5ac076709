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

// GenerationState summarises one generation.
type GenerationState struct {
	Generation uint64    `json:"generation"`
	Sync       string    `json:"sync"`
	Count      uint64    `json:"count"`
	Rejected   uint64    `json:"rejected"`
	SHA256     string    `json:"sha256,omitempty"`
	UpdatedAt  time.Time `json:"updated_at"`
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

// DatasetState is the value of a dataset's key in StateBucket.
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

// EncodeState returns s as JSON.
func EncodeState(s DatasetState) []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // plain data always marshals
	}
	return b
}

// DecodeState parses a state value.
func DecodeState(b []byte) (DatasetState, error) {
	var s DatasetState
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("dataset state: %w", err)
	}
	return s, nil
}
