package devkey

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLoadOrCreateKeepsTheKeyAcrossRuns(t *testing.T) {
	dir := t.TempDir()
	first, created, err := LoadOrCreate(dir)
	if err != nil || !created {
		t.Fatalf("first call: key %q created %v err %v", first, created, err)
	}
	if len(first) < 32 {
		t.Fatalf("key %q is too short to be a secret", first)
	}
	second, created, err := LoadOrCreate(dir)
	if err != nil || created || second != first {
		t.Fatalf("second call: key %q created %v err %v, want %q reused", second, created, err, first)
	}
	info, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Fatalf("key file mode %o, want 600", perm)
	}
}

func TestLoadOrCreateGivesEachDataDirItsOwnKey(t *testing.T) {
	a, _, errA := LoadOrCreate(t.TempDir())
	b, _, errB := LoadOrCreate(t.TempDir())
	if errA != nil || errB != nil || a == b {
		t.Fatalf("two data dirs got %q and %q (errors %v, %v)", a, b, errA, errB)
	}
}
