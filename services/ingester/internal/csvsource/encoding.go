package csvsource

import (
	"fmt"
	"strings"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/htmlindex"
)

// LookupEncoding reads the --encoding flag. "", "utf-8" and "utf8" give nil:
// the source is read as UTF-8, and invalid bytes reject their row.
// "windows-1252"/"cp1252" and "latin-1"/"latin1"/"iso-8859-1" (true ISO
// 8859-1) are named explicitly; any other name of the WHATWG encoding
// standard (utf-16le, windows-1250, shift_jis, ...) is accepted too.
// Decoding to UTF-8 never fails: a byte with no character becomes U+FFFD.
func LookupEncoding(name string) (encoding.Encoding, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "", "utf-8", "utf8":
		return nil, nil
	case "windows-1252", "cp1252":
		return charmap.Windows1252, nil
	case "latin-1", "latin1", "iso-8859-1", "iso8859-1":
		return charmap.ISO8859_1, nil
	}
	e, err := htmlindex.Get(name)
	if err != nil {
		return nil, fmt.Errorf("encoding %q: unknown; use utf-8 (the default), windows-1252, latin-1 or another WHATWG encoding name", name)
	}
	if n, _ := htmlindex.Name(e); n == "utf-8" {
		return nil, nil
	}
	return e, nil
}
