package schema

import (
	"errors"
	"testing"
)

func TestSubjectIsRowsDotDataset(t *testing.T) {
	if got := Subject("products"); got != "rows.products" {
		t.Errorf("Subject(products) = %q", got)
	}
	if AllSubjects != "rows.>" {
		t.Errorf("AllSubjects = %q, want rows.>", AllSubjects)
	}
}

func TestDatasetOfInvertsSubject(t *testing.T) {
	for _, ds := range []string{"products", "orders", "a", "0-9_x", "nats"} {
		got, err := DatasetOf(Subject(ds))
		if err != nil || got != ds {
			t.Errorf("DatasetOf(Subject(%q)) = %q, %v", ds, got, err)
		}
	}
}

func TestDatasetOfRefusesSubjectsThatAreNotOurs(t *testing.T) {
	tests := []struct {
		subject     string
		badDataset  bool // the error wraps ErrInvalidDataset
		description string
	}{
		{"products", false, "no prefix"},
		{"row.products", false, "another prefix"},
		{"ROWS.products", false, "prefix case"},
		{"", false, "empty"},
		{"rows", false, "prefix without dot"},
		{"rows.", true, "empty dataset"},
		{"rows.a.b", true, "one token too many"},
		{"rows.products.", true, "trailing dot"},
		{"rows.>", true, "wildcard"},
		{"rows.*", true, "wildcard"},
		{"rows.Products", true, "uppercase"},
		{"rows.-x", true, "leading dash"},
		{"rows.café", true, "non-ASCII"},
	}
	for _, tt := range tests {
		got, err := DatasetOf(tt.subject)
		if err == nil {
			t.Errorf("DatasetOf(%q) = %q, nil; want an error (%s)", tt.subject, got, tt.description)
			continue
		}
		if got != "" {
			t.Errorf("DatasetOf(%q) returned %q with its error", tt.subject, got)
		}
		if errors.Is(err, ErrInvalidDataset) != tt.badDataset {
			t.Errorf("DatasetOf(%q) = %v; wraps ErrInvalidDataset=%v, want %v", tt.subject, err, !tt.badDataset, tt.badDataset)
		}
	}
}
