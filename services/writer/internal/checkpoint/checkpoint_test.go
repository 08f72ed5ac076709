package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
)

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := Load(disk.OS{}, dir); ok || err != nil {
		t.Fatalf("empty dir: ok=%v err=%v", ok, err)
	}
	want := Checkpoint{Stream: "ROWS", StreamCreated: time.Unix(1700000000, 5).UTC(), Seq: 42}
	if err := Save(disk.OS{}, dir, want, true); err != nil {
		t.Fatal(err)
	}
	got, ok, err := Load(disk.OS{}, dir)
	if err != nil || !ok || got != want {
		t.Fatalf("Load = %+v %v %v, want %+v", got, ok, err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, File+".tmp")); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
	os.WriteFile(filepath.Join(dir, File), []byte("{torn"), 0o644)
	if _, ok, err := Load(disk.OS{}, dir); ok || err == nil {
		t.Errorf("damaged checkpoint: ok=%v err=%v", ok, err)
	}
}

func TestLockRefusesASecondWriter(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Acquire = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "one writer per DATA_DIR") || !strings.Contains(err.Error(), "pid") {
		t.Errorf("message does not say what to do: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(dir)
	if err != nil {
		t.Fatalf("after Release: %v", err)
	}
	l2.Release()
}
