package schema

import (
	"strconv"
	"strings"
)

// Files of one dataset, under DATA_DIR/<dataset>/ (docs/files.md).
const (
	// CurrentFile names the generation served by default: its decimal
	// number and '\n'. It is replaced by rename, so readers see the old
	// name or the new one, never a mix.
	CurrentFile = "CURRENT"

	dataSuffix    = ".ndjson"
	indexSuffix   = ".idx"
	rejectsSuffix = ".rejects.ndjson"
	genPrefix     = "gen-"
)

// DataFile is the NDJSON file of generation gen: the metadata header, then
// one record a line.
func DataFile(gen uint64) string { return genPrefix + strconv.FormatUint(gen, 10) + dataSuffix }

// IndexFile is the offset index of generation gen.
func IndexFile(gen uint64) string { return genPrefix + strconv.FormatUint(gen, 10) + indexSuffix }

// RejectsFile holds, one JSON Reject a line, the rows refused while building
// generation gen.
func RejectsFile(gen uint64) string {
	return genPrefix + strconv.FormatUint(gen, 10) + rejectsSuffix
}

// GenerationOf returns the generation a file of a dataset folder belongs
// to: its data file, offset index, rejects file or one of its lookup
// indexes (LookupFile).
func GenerationOf(name string) (uint64, bool) {
	if g, _, ok := LookupFileOf(name); ok {
		return g, true
	}
	rest, ok := strings.CutPrefix(name, genPrefix)
	if !ok {
		return 0, false
	}
	for _, suffix := range []string{rejectsSuffix, dataSuffix, indexSuffix} {
		if num, ok := strings.CutSuffix(rest, suffix); ok {
			g, err := strconv.ParseUint(num, 10, 64)
			return g, err == nil && g > 0 && strconv.FormatUint(g, 10) == num
		}
	}
	return 0, false
}

// FormatCurrent is the content of CurrentFile naming gen.
func FormatCurrent(gen uint64) []byte { return []byte(strconv.FormatUint(gen, 10) + "\n") }

// ParseCurrent reads the content of CurrentFile.
func ParseCurrent(b []byte) (uint64, bool) {
	s, ok := strings.CutSuffix(string(b), "\n")
	if !ok {
		return 0, false
	}
	g, err := strconv.ParseUint(s, 10, 64)
	return g, err == nil && g > 0
}
