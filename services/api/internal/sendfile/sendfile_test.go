package sendfile

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// copyOver sends n bytes of f at off over a loopback TCP connection and
// returns what the other end read.
func copyOver(t *testing.T, f *os.File, off, n int64) ([]byte, int64, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		b, _ := io.ReadAll(c)
		c.Close()
		got <- b
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	written, err := Copy(c, f, off, n)
	c.Close()
	return <-got, written, err
}

func TestCopyIsTheFileRange(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: more than a socket buffer
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, r := range [][2]int64{{0, int64(len(content))}, {7, 100}, {12345, 700000}} {
		b, n, err := copyOver(t, f, r[0], r[1])
		if err != nil || n != r[1] || !bytes.Equal(b, content[r[0]:r[0]+r[1]]) {
			t.Fatalf("range %v: %d bytes written, %d read, %v", r, n, len(b), err)
		}
	}
	if pos, _ := f.Seek(0, io.SeekCurrent); pos != 0 {
		t.Fatalf("the file's offset moved to %d", pos)
	}
	// Past the end of the file.
	if b, n, err := copyOver(t, f, int64(len(content))-10, 20); !errors.Is(err, io.ErrUnexpectedEOF) || n != 10 || len(b) != 10 {
		t.Fatalf("a short file: %d written, %d read, %v", n, len(b), err)
	}
	// Not a socket.
	if _, err := Copy(io.Discard, f, 0, 1); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("not a socket: %v", err)
	}
}
