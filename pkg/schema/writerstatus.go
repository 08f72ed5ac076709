package schema

import (
	"encoding/json"
	"fmt"
	"time"
)

// WriterStatusFile is the writer's report in DATA_DIR: whether the files
// hold everything the stream held when the writer started. The api's
// /readyz reads it, so that a pod is ready only once its writer has caught
// up, without NATS credentials and whether NATS is up or not. Its leading
// dot keeps it out of the dataset namespace. docs/writer-status.md.
const WriterStatusFile = ".writer-status.json"

// WriterStatus is the content of WriterStatusFile.
type WriterStatus struct {
	// CaughtUp is true once the writer has applied the stream up to
	// TargetSeq (or found nothing to apply); it stays true while the
	// writer runs, NATS outages included, and is false from the moment a
	// writer starts until it has caught up.
	CaughtUp bool `json:"caught_up"`
	// Stream is the rows stream (STREAM).
	Stream string `json:"stream"`
	// TargetSeq is the stream's last sequence when the writer started
	// consuming; AppliedSeq the last sequence applied when the status was
	// written (0 before the writer knows the stream).
	TargetSeq  uint64    `json:"target_seq"`
	AppliedSeq uint64    `json:"applied_seq"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// EncodeWriterStatus is the file's bytes: one JSON object and a newline.
func EncodeWriterStatus(s WriterStatus) []byte {
	b, _ := json.Marshal(s) // a struct of plain fields always marshals
	return append(b, '\n')
}

// DecodeWriterStatus parses the file's bytes. A torn or foreign file is an
// error, never a status.
func DecodeWriterStatus(b []byte) (WriterStatus, error) {
	var s WriterStatus
	if err := json.Unmarshal(b, &s); err != nil {
		return WriterStatus{}, fmt.Errorf("writer status: %w", err)
	}
	if s.Stream == "" || s.UpdatedAt.IsZero() {
		return WriterStatus{}, fmt.Errorf("writer status: no stream or time in %q", b)
	}
	return s, nil
}
