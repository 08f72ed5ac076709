package disk

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestFaultySpaceGivesShortWritesAndENOSPC(t *testing.T) {
	f := NewFaulty(OS{})
	path := filepath.Join(t.TempDir(), "f")
	file, err := f.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if _, err := file.WriteAt([]byte("0123456789"), 0); err != nil {
		t.Fatal(err)
	}
	f.SetSpace(3)
	n, err := file.WriteAt([]byte("abcdef"), 8) // 2 bytes overwrite, 4 grow, 3 fit
	if n != 5 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("WriteAt = %d, %v; want 5 and ENOSPC", n, err)
	}
	if _, err := file.WriteAt([]byte("XY"), 0); err != nil {
		t.Fatalf("rewriting in place needs no space: %v", err)
	}
	b, _ := os.ReadFile(path)
	if string(b) != "XY234567abcde" {
		t.Fatalf("file = %q", b)
	}
	f.SetSpace(-1)
	f.Fail(syscall.EIO)
	if err := file.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Sync = %v, want EIO", err)
	}
	f.Fail(nil)
	f.Hook(func(op, name string, off int64) error {
		if op == "write" && off == 0 {
			return syscall.EIO
		}
		return nil
	})
	if _, err := file.WriteAt([]byte("z"), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("hooked write = %v", err)
	}
	if _, err := file.WriteAt([]byte("z"), 1); err != nil {
		t.Fatalf("other write = %v", err)
	}
}

func TestWriteFileAtomicLeavesOldOrNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "CURRENT")
	if err := WriteFileAtomic(OS{}, path, []byte("1\n"), true); err != nil {
		t.Fatal(err)
	}
	f := NewFaulty(OS{})
	f.Hook(func(op, name string, off int64) error {
		if op == "rename" {
			return syscall.ENOSPC
		}
		return nil
	})
	if err := WriteFileAtomic(f, path, []byte("2\n"), true); err == nil {
		t.Fatal("no error")
	}
	if b, _ := os.ReadFile(path); string(b) != "1\n" {
		t.Fatalf("CURRENT = %q after a failed replace", b)
	}
}
