package schema

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxDatasetLen is the longest dataset name: it is a subject token and a
// folder name, so it stays short.
const MaxDatasetLen = 64

// DatasetPattern is the rule every dataset name follows, as a regular
// expression for documents and error messages.
const DatasetPattern = `^[a-z0-9][a-z0-9_-]{0,63}$`

// ErrInvalidDataset is wrapped by every error about a dataset name.
var ErrInvalidDataset = errors.New("invalid dataset name")

// ValidateDataset reports whether name may be used as a dataset: a subject
// token and a folder name. It accepts exactly the names DatasetPattern
// matches (ASCII only, so "café" and "Products" are refused). The error wraps
// ErrInvalidDataset, quotes the name and says what to change.
func ValidateDataset(name string) error {
	if name == "" {
		return fmt.Errorf("%w: the name is empty; use lowercase letters, digits, '_' and '-' (%s)", ErrInvalidDataset, DatasetPattern)
	}
	if len(name) > MaxDatasetLen {
		return fmt.Errorf("%w: %q is %d characters long, at most %d are allowed", ErrInvalidDataset, truncate(name, 80), len(name), MaxDatasetLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		lowerOrDigit := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if i == 0 && !lowerOrDigit {
			return fmt.Errorf("%w: %q must start with a lowercase letter or a digit (%s)", ErrInvalidDataset, name, DatasetPattern)
		}
		if !lowerOrDigit && c != '_' && c != '-' {
			// Name the character, not its first byte: "café" holds 'é', not 'Ã'.
			r, _ := utf8.DecodeRuneInString(name[i:])
			return fmt.Errorf("%w: %q holds %q at byte %d; use lowercase letters, digits, '_' and '-' (%s)", ErrInvalidDataset, name, r, i+1, DatasetPattern)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
