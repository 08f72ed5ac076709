package respond

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
)

// countingConn counts the writes that reach the connection.
type countingConn struct {
	net.Conn
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes++
	return c.Conn.Write(p)
}

// heldPair is tcpPair with the server side as a *Conn over a counting
// connection, and a reader of everything the client gets.
func heldPair(t *testing.T, slow bool) (*Conn, *countingConn, syscall.RawConn, func() []byte) {
	t.Helper()
	rcv := 0
	if slow {
		rcv = 4096
	}
	sc, rc, cc := tcpPair(t, rcv)
	counted := &countingConn{Conn: sc}
	got := readAll(cc, slow)
	c := &Conn{Conn: counted}
	return c, counted, rc, func() []byte { sc.Close(); return <-got }
}

// A buffered body holding the head sends head and body in one write,
// whether the server flushed the head before the body (a body over 8 KiB,
// as fasthttp does) or left it in its buffer; a head too large for the room
// and a body closed before it was written still send every byte in order.
func TestHeldHeadLeavesWithTheBufferedBody(t *testing.T) {
	f, start, end, recs := lineFile(t, 20, 1000) // ~20 KB
	want := joined(`{"data":[`, recs, EnvelopeTail)
	for _, tc := range []struct {
		name     string
		head     string
		flush    bool // the server flushes the head before the body
		write    bool // the body is written (else only closed)
		oneWrite bool
	}{
		{"head in the server's buffer", "HTTP/1.1 200 OK\r\n\r\n", false, true, true},
		{"head flushed first", "HTTP/1.1 200 OK\r\n\r\n", true, true, true},
		{"head over HeadRoom", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("x", HeadRoom) + "\r\n\r\n", true, true, false},
		{"closed without being written", "HTTP/1.1 500 Oops\r\n\r\n", true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, counted, _, read := heldPair(t, false)
			b, err := Buffer([]byte(`{"data":[`), f, start, end, lineEndsOf(recs, start), true, []byte(EnvelopeTail))
			if err != nil {
				t.Fatal(err)
			}
			b.Hold(c)
			w := bufio.NewWriterSize(c, 4096)
			w.WriteString(tc.head)
			if tc.flush {
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			wantAll := tc.head
			if tc.write {
				if n, err := b.WriteTo(w); err != nil || n != int64(len(want)) {
					t.Fatalf("WriteTo: %d, %v", n, err)
				}
				wantAll += string(want)
			}
			b.Close()
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			writes := counted.writes
			if got := read(); string(got) != wantAll {
				t.Fatalf("got %d bytes, want %d (first difference at %d)", len(got), len(wantAll), firstDiff(got, []byte(wantAll)))
			}
			if tc.oneWrite && writes != 1 {
				t.Errorf("%d writes, want 1", writes)
			}
		})
	}
}

// A body offered whole holding the head sends both in one write to a fast
// client; to a slow one what the connection does not take at once follows,
// after the whole head, in order.
func TestHeldHeadLeavesWithTheBodyOfferedWhole(t *testing.T) {
	f, start, end, recs := lineFile(t, 150, 1000) // ~150 KB
	want := joined(`{"data":[`, recs, EnvelopeTail)
	head := "HTTP/1.1 200 OK\r\nContent-Length: " + strings.Repeat("9", 300) + "\r\n\r\n"
	for _, slow := range []bool{false, true} {
		c, counted, rc, read := heldPair(t, slow)
		var done []error
		b := NewBody([]byte(`{"data":[`), f, start, end, true, []byte(EnvelopeTail), func(_ int64, err error) { done = append(done, err) })
		b.SetEnds(lineEndsOf(recs, start))
		b.SetDirect(rc, -1)
		var room [HeadRoom]byte
		b.Hold(c, room[:])
		w := bufio.NewWriterSize(c, 4096)
		w.WriteString(head)
		w.Flush() // fasthttp flushes the head before a body over 8 KiB
		if n, err := b.WriteTo(w); err != nil || n != int64(len(want)) {
			t.Fatalf("slow %v: WriteTo: %d, %v", slow, n, err)
		}
		b.Close()
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := read(); string(got) != head+string(want) {
			t.Fatalf("slow %v: got %d bytes, want %d (first difference at %d)", slow, len(got), len(head)+len(want), firstDiff(got, []byte(head+string(want))))
		}
		if !slow && counted.writes != 0 {
			// The offer goes to the raw connection: nothing through Write.
			t.Errorf("%d writes through the connection, want 0", counted.writes)
		}
		if len(done) != 1 || done[0] != nil {
			t.Fatalf("slow %v: done %v", slow, done)
		}
	}
}

// The wrapped listener hands out *Conn, whose raw connection is the
// socket's.
func TestWrapListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wl := WrapListener(ln)
	defer wl.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			io.WriteString(c, "x")
			c.Close()
		}
	}()
	c, err := wl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hc, ok := c.(*Conn)
	if !ok {
		t.Fatalf("%T, want *Conn", c)
	}
	if _, err := hc.SyscallConn(); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || !bytes.Equal(b[:], []byte("x")) {
		t.Fatalf("read %q, %v", b, err)
	}
}
