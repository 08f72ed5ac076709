package schema

import (
	"fmt"
	"strings"
)

// DefaultStream is the JetStream stream that holds every sync.
const DefaultStream = "ROWS"

// SubjectPrefix starts the subject of every message of a sync: rows.<dataset>.
const SubjectPrefix = "rows."

// AllSubjects is the stream's subject filter: every dataset.
const AllSubjects = SubjectPrefix + ">"

// Subject is the subject that carries the syncs of dataset. The name must
// have passed ValidateDataset.
func Subject(dataset string) string { return SubjectPrefix + dataset }

// DatasetOf returns the dataset a subject belongs to. The error says why a
// subject is not one of ours (another prefix, more tokens, a bad name), which
// is how the writer recognises hostile publishes.
func DatasetOf(subject string) (string, error) {
	name, ok := strings.CutPrefix(subject, SubjectPrefix)
	if !ok {
		return "", fmt.Errorf("subject %q does not start with %q", subject, SubjectPrefix)
	}
	if err := ValidateDataset(name); err != nil {
		return "", fmt.Errorf("subject %q: %w", subject, err)
	}
	return name, nil
}
