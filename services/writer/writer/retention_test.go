package writer

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// rebuildable is files (a snapshot of dir) less what a writer rebuilding
// from the stream does not bring back: the files of generations older
// than each dataset's current one, kept on disk (KEEP_GENERATIONS) but
// purged from the stream (dataset.purge).
func rebuildable(t testing.TB, dir string, files map[string][]byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for name, b := range files {
		ds, file, _ := strings.Cut(name, string(filepath.Separator))
		rest, ok := strings.CutPrefix(file, "gen-")
		if ok {
			num, _, _ := strings.Cut(rest, ".")
			if g, err := strconv.ParseUint(num, 10, 64); err == nil && g < currentOrZero(dir, ds) {
				continue
			}
		}
		out[name] = b
	}
	return out
}

func currentOrZero(dir, ds string) uint64 {
	b, err := os.ReadFile(filepath.Join(dir, ds, schema.CurrentFile))
	if err != nil {
		return 0
	}
	g, _ := schema.ParseCurrent(b)
	return g
}
