package schema

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestValidateDatasetAcceptsExactlyThePattern(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"products", true},
		{"orders_2024", true},
		{"a", true},
		{"0", true},
		{"9lives", true},
		{"a-b_c", true},
		{"a-", true},
		{"a_", true},
		{strings.Repeat("a", 64), true},
		{"a" + strings.Repeat("-", 63), true},

		{"", false},
		{strings.Repeat("a", 65), false},
		{strings.Repeat("a", 1000), false},
		{"-products", false},
		{"_products", false},
		{"Products", false},
		{"PRODUCTS", false},
		{"proDucts", false},
		{"café", false},
		{"données", false},
		{"продукты", false},
		{"a.b", false},
		{".hidden", false},
		{"..", false},
		{"a/b", false},
		{"../etc", false},
		{"a\\b", false},
		{"a b", false},
		{" a", false},
		{"a\n", false},
		{"a\x00", false},
		{"a*", false},
		{"a>", false},
		{">", false},
		{"*", false},
		{"a\xff", false},
		{"é" + strings.Repeat("a", 62), false}, // 64 bytes, but not ASCII
	}
	re := regexp.MustCompile(DatasetPattern)
	for _, tt := range tests {
		err := ValidateDataset(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateDataset(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if re.MatchString(tt.name) != tt.ok {
			t.Errorf("the table disagrees with DatasetPattern on %q", tt.name)
		}
		if err != nil && !errors.Is(err, ErrInvalidDataset) {
			t.Errorf("ValidateDataset(%q) = %v, want it to wrap ErrInvalidDataset", tt.name, err)
		}
	}
}

func TestValidateDatasetAgreesWithPatternOnEveryShortName(t *testing.T) {
	// Every name of one or two characters over an alphabet that holds each
	// class the rule cares about, plus lengths around the limit.
	re := regexp.MustCompile(DatasetPattern)
	alphabet := []string{"a", "z", "0", "9", "_", "-", "A", "Z", ".", "/", " ", "é", "\xff", "*", ">", "\x00"}
	var names []string
	for _, a := range alphabet {
		names = append(names, a)
		for _, b := range alphabet {
			names = append(names, a+b)
		}
	}
	for n := 62; n <= 66; n++ {
		names = append(names, strings.Repeat("x", n), "0"+strings.Repeat("_", n-1))
	}
	for _, name := range names {
		if got, want := ValidateDataset(name) == nil, re.MatchString(name); got != want {
			t.Errorf("ValidateDataset(%q) ok=%v, DatasetPattern says %v", name, got, want)
		}
	}
}

func TestValidateDatasetErrorSaysWhatToChange(t *testing.T) {
	tests := []struct {
		name string
		want []string // substrings of the message
	}{
		{"", []string{"empty", "lowercase letters, digits"}},
		{strings.Repeat("a", 65), []string{"65 characters", "at most 64"}},
		{"-x", []string{`"-x"`, "must start with a lowercase letter or a digit"}},
		{"Products", []string{`"Products"`, "must start with"}},
		{"my.data", []string{`'.'`, "byte 3", "use lowercase letters, digits, '_' and '-'"}},
		{"café", []string{`'é'`, "byte 4"}}, // the character, not its first byte
		{"a/b", []string{`'/'`}},
	}
	for _, tt := range tests {
		err := ValidateDataset(tt.name)
		if err == nil {
			t.Fatalf("ValidateDataset(%q) = nil", tt.name)
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ValidateDataset(%q) = %q, want it to contain %q", tt.name, err, w)
			}
		}
	}
}
