package csvsource

import (
	"fmt"
	"strings"
)

// Candidates are the delimiters DetectDelimiter chooses from, in the order
// that breaks ties: ',' then ';' (European exports, where ',' is the decimal
// comma), tab, '|'.
const Candidates = ",;\t|"

// DetectDelimiter picks the delimiter of a CSV from the start of its text
// (the first non-blank line, the header): the candidate that occurs most
// often outside quotes, ',' when none occurs. Only the first line counts,
// because a data row may quote any of them.
func DetectDelimiter(b []byte) byte {
	var counts [len(Candidates)]int
	inQuotes, text := false, false
	for _, c := range b {
		if c == '"' {
			inQuotes, text = !inQuotes, true
			continue
		}
		if inQuotes {
			continue
		}
		if c == '\n' || c == '\r' {
			if text {
				break
			}
			continue
		}
		text = true
		if i := strings.IndexByte(Candidates, c); i >= 0 {
			counts[i]++
		}
	}
	best := 0
	for i, n := range counts {
		if n > counts[best] {
			best = i
		}
	}
	return Candidates[best]
}

// ParseDelimiter reads the --delimiter flag: "" or "auto" (0: detect), one
// of the candidates, or "tab", "\t", "comma", "semicolon", "pipe". Any other
// single ASCII punctuation character is accepted too; quotes, letters,
// digits and line breaks are not.
func ParseDelimiter(s string) (byte, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return 0, nil
	case "tab", `\t`:
		return '\t', nil
	case "comma":
		return ',', nil
	case "semicolon":
		return ';', nil
	case "pipe":
		return '|', nil
	}
	if len(s) == 1 {
		c := s[0]
		punct := c > ' ' && c < 0x7f && !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z')
		if c == '\t' || punct && c != '"' {
			return c, nil
		}
	}
	return 0, fmt.Errorf("delimiter %q: want auto, one of , ; | or tab (or another single punctuation character other than '\"')", s)
}
