package respond

import (
	"bufio"
	"io"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func corkOf(t *testing.T, rc syscall.RawConn) int {
	t.Helper()
	v := -1
	rc.Control(func(fd uintptr) { v, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK) })
	return v
}

// Every body corks the connection only until its first write, and Close
// uncorks whatever happened: a response is never left held back.
func TestCorkIsReleasedByTheFirstWriteOrClose(t *testing.T) {
	f, start, end, _ := lineFile(t, 150, 1000)
	small, sStart, sEnd, _ := lineFile(t, 5, 100)
	for _, tc := range []struct {
		name  string
		write bool
		make  func(rc syscall.RawConn) io.WriterTo
	}{
		{"buffered", true, func(rc syscall.RawConn) io.WriterTo {
			b, err := Buffer(nil, small, sStart, sEnd, nil, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			b.Cork(rc)
			return b
		}},
		{"offered whole", true, func(rc syscall.RawConn) io.WriterTo {
			b := NewBody([]byte("["), f, start, end, true, []byte("]"), nil)
			b.SetDirect(rc, -1)
			b.Cork(rc)
			return b
		}},
		{"sendfile", true, func(rc syscall.RawConn) io.WriterTo {
			b := NewBody(nil, f, start, end, false, nil, nil)
			b.SetDirect(rc, int(f.Fd()))
			b.Cork(rc)
			return b
		}},
		{"streamed", true, func(rc syscall.RawConn) io.WriterTo {
			b := NewBody(nil, f, start, end, false, nil, nil)
			b.Cork(rc)
			return b
		}},
		{"closed unwritten", false, func(rc syscall.RawConn) io.WriterTo {
			b := NewBody(nil, f, start, end, false, nil, nil)
			b.Cork(rc)
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, rc, cc := tcpPair(t, 0)
			go io.Copy(io.Discard, cc)
			body := tc.make(rc)
			if got := corkOf(t, rc); got != 1 {
				t.Fatalf("TCP_CORK %d after Cork, want 1", got)
			}
			if tc.write {
				w := bufio.NewWriter(sc)
				w.WriteString("HTTP/1.1 200 OK\r\n\r\n")
				if _, err := body.WriteTo(w); err != nil {
					t.Fatal(err)
				}
				if got := corkOf(t, rc); got != 0 {
					t.Fatalf("TCP_CORK %d after the body was written, want 0", got)
				}
			}
			body.(io.Closer).Close()
			if got := corkOf(t, rc); got != 0 {
				t.Fatalf("TCP_CORK %d after Close, want 0", got)
			}
		})
	}
}
