package respond

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lineFile writes n NDJSON records of about size bytes each after a
// 100-byte prefix and returns the open file, the range of the records and
// their bytes.
func lineFile(t *testing.T, n, size int) (*os.File, int64, int64, []byte) {
	t.Helper()
	rows := make([][]string, n)
	for i := range rows {
		rows[i] = []string{strconv.Itoa(i), strings.Repeat(string(rune('a'+i%26)), size)}
	}
	recs := records(t, []string{"id", "v"}, rows)
	path := filepath.Join(t.TempDir(), "data")
	prefix := bytes.Repeat([]byte{' '}, 99)
	if err := os.WriteFile(path, append(append(prefix, '\n'), recs...), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, 100, 100 + int64(len(recs)), recs
}

// joined is what join mode makes of recs between head and tail.
func joined(head string, recs []byte, tail string) []byte {
	out := bytes.ReplaceAll(bytes.TrimSuffix(recs, []byte{'\n'}), []byte{'\n'}, []byte{','})
	return append(append([]byte(head), out...), tail...)
}

func TestBufferIsTheBodyInOneBuffer(t *testing.T) {
	f, start, end, recs := lineFile(t, 20, 100)
	b, err := Buffer([]byte(`{"data":[`), f, start, end, nil, true, []byte(EnvelopeTail))
	if err != nil {
		t.Fatal(err)
	}
	want := joined(`{"data":[`, recs, EnvelopeTail)
	if !bytes.Equal(b.Bytes(), want) || b.Len() != len(want) || int64(b.Len()) != Size([]byte(`{"data":[`), start, end, true, []byte(EnvelopeTail)) {
		t.Fatalf("got %d bytes, want %d", b.Len(), len(want))
	}
	var done []error
	b.OnClose(func(_ int64, err error) { done = append(done, err) })
	var w bytes.Buffer
	if n, err := b.WriteTo(&w); err != nil || n != int64(len(want)) || !bytes.Equal(w.Bytes(), want) {
		t.Fatalf("WriteTo: %d %v", n, err)
	}
	b.Close()
	if len(done) != 1 || done[0] != nil {
		t.Fatalf("done: %v", done)
	}

	// The same at known line ends.
	if b, err = Buffer([]byte(`{"data":[`), f, start, end, lineEndsOf(recs, start), true, []byte(EnvelopeTail)); err != nil || !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("at known line ends: %v", err)
	}
	b.Close()

	// NDJSON: the bytes unchanged; an empty range: head and tail.
	if b, err = Buffer(nil, f, start, end, nil, false, nil); err != nil || !bytes.Equal(b.Bytes(), recs) {
		t.Fatalf("ndjson: %v", err)
	}
	b.Close()
	if b, err = Buffer([]byte("["), f, start, start, nil, true, []byte("]")); err != nil || string(b.Bytes()) != "[]" {
		t.Fatalf("empty: %v", err)
	}
	b.Close()
}

func TestBufferRefusesWhatDoesNotFitAndShortFiles(t *testing.T) {
	f, start, end, _ := lineFile(t, 40, 1000)
	if Fits(nil, start, end, nil) {
		t.Fatal("40 KB fits InlineMax")
	}
	if _, err := Buffer(nil, f, start, end, nil, false, nil); err == nil {
		t.Fatal("a body over InlineMax was buffered")
	}
	_, err := Buffer(nil, f, start, start+2000, nil, true, nil) // not whole lines
	if !IsSourceError(err) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a range cut mid-line: %v", err)
	}
	_, err = Buffer(nil, f, end-10, end+10, nil, false, nil) // past the end of the file
	if !IsSourceError(err) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a range past the end: %v", err)
	}
}

// tcpPair is a loopback connection: the server side's raw connection and
// buffered writer (as fasthttp has them), the client side to read.
func tcpPair(t *testing.T, clientRcvBuf int) (*net.TCPConn, syscall.RawConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, cc := dialPair(t, ln, clientRcvBuf)
	sc := c.(*net.TCPConn)
	if clientRcvBuf > 0 {
		sc.SetWriteBuffer(4096)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return sc, rc, cc
}

// dialPair dials ln on loopback (with a receive buffer of clientRcvBuf
// bytes when > 0) and returns the connection ln accepted and the client's.
// It closes ln, and both connections when the test ends.
func dialPair(t *testing.T, ln net.Listener, clientRcvBuf int) (net.Conn, *net.TCPConn) {
	t.Helper()
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		if clientRcvBuf > 0 {
			c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, clientRcvBuf) })
		}
		return nil
	}}
	cc, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	t.Cleanup(func() { sc.Close(); cc.Close() })
	return sc, cc.(*net.TCPConn)
}

// readAll reads everything cc receives until it is closed, and sends it
// on the channel; a slow client reads in small pieces with pauses.
func readAll(cc net.Conn, slow bool) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		var out []byte
		p := make([]byte, 1500)
		for {
			if slow {
				time.Sleep(200 * time.Microsecond)
			}
			n, err := cc.Read(p)
			out = append(out, p[:n]...)
			if err != nil {
				got <- out
				return
			}
		}
	}()
	return got
}

// sendDirect writes b over a fresh loopback connection the way fasthttp
// does (headers flushed, then the body's WriteTo on the buffered writer)
// and returns what the client read; a slow client reads in small pieces
// with pauses.
func sendDirect(t *testing.T, b *Body, slow bool) ([]byte, error) {
	t.Helper()
	rcv := 0
	if slow {
		rcv = 4096
	}
	sc, rc, cc := tcpPair(t, rcv)
	b.SetDirect(rc, b.srcFd)
	got := readAll(cc, slow)
	w := bufio.NewWriterSize(sc, 4096)
	w.WriteString("HTTP/1.1 200 OK\r\n\r\n")
	_, err := b.WriteTo(w)
	if err == nil {
		err = w.Flush()
	}
	sc.Close()
	out := <-got
	if !bytes.HasPrefix(out, []byte("HTTP/1.1 200 OK\r\n\r\n")) {
		t.Fatalf("the headers did not come first: %.40q", out)
	}
	return out[len("HTTP/1.1 200 OK\r\n\r\n"):], err
}

func TestDirectBodiesAreTheBytesOverARealConnection(t *testing.T) {
	f, start, end, recs := lineFile(t, 150, 1000) // ~150 KB: offered whole
	bigF, bigStart, bigEnd, bigRecs := lineFile(t, 400, 1000)
	for _, tc := range []struct {
		name string
		body func() *Body
		want []byte
	}{
		{"json offered whole", func() *Body {
			return NewBody([]byte(`{"data":[`), f, start, end, true, []byte(EnvelopeTail), nil)
		}, joined(`{"data":[`, recs, EnvelopeTail)},
		{"json offered whole, at known line ends", func() *Body {
			b := NewBody([]byte(`{"data":[`), f, start, end, true, []byte(EnvelopeTail), nil)
			b.SetEnds(lineEndsOf(recs, start))
			return b
		}, joined(`{"data":[`, recs, EnvelopeTail)},
		{"json over BigMax, streamed at known line ends", func() *Body {
			b := NewBody([]byte(`{"data":[`), bigF, bigStart, bigEnd, true, []byte(EnvelopeTail), nil)
			b.SetEnds(lineEndsOf(bigRecs, bigStart))
			return b
		}, joined(`{"data":[`, bigRecs, EnvelopeTail)},
		{"json over BigMax, streamed", func() *Body {
			return NewBody([]byte(`{"data":[`), bigF, bigStart, bigEnd, true, []byte(EnvelopeTail), nil)
		}, joined(`{"data":[`, bigRecs, EnvelopeTail)},
		{"ndjson by sendfile", func() *Body {
			b := NewBody(nil, bigF, bigStart, bigEnd, false, nil, nil)
			b.srcFd = int(bigF.Fd())
			return b
		}, bigRecs},
		{"ndjson without a file descriptor", func() *Body {
			return NewBody(nil, f, start, end, false, nil, nil)
		}, recs},
	} {
		for _, slow := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{false: "", true: " to a slow client"}[slow], func(t *testing.T) {
				var done []error
				b := tc.body()
				b.OnClose(func(_ int64, err error) { done = append(done, err) })
				got, err := sendDirect(t, b, slow)
				if err != nil {
					t.Fatal(err)
				}
				b.Close()
				if !bytes.Equal(got, tc.want) {
					t.Fatalf("got %d bytes, want %d (first difference at %d)", len(got), len(tc.want), firstDiff(got, tc.want))
				}
				if len(done) != 1 || done[0] != nil {
					t.Fatalf("done: %v", done)
				}
			})
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// sendfile from a file shorter than the range is a source error (the
// server then cuts the connection), never a quietly short answer.
func TestSendfileOfAShortFileIsASourceError(t *testing.T) {
	f, start, end, _ := lineFile(t, 100, 1000)
	b := NewBody(nil, f, start, end+5000, false, nil, nil)
	b.srcFd = int(f.Fd())
	_, err := sendDirect(t, b, false)
	if !IsSourceError(err) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("sendfile past the end of the file: %v, want a SourceError", err)
	}
	b.Close()
}

// A client that is gone: a client-side error, not a source error.
func TestDirectBodyToAClientThatIsGone(t *testing.T) {
	f, start, end, _ := lineFile(t, 400, 1000)
	for _, ndjson := range []bool{false, true} {
		sc, rc, cc := tcpPair(t, 0)
		cc.SetLinger(0)
		cc.Close()
		time.Sleep(10 * time.Millisecond)
		b := NewBody(nil, f, start, end, !ndjson, nil, nil)
		if ndjson {
			b.srcFd = int(f.Fd())
		}
		b.SetDirect(rc, b.srcFd)
		_, err := b.WriteTo(bufio.NewWriter(sc))
		if err == nil || IsSourceError(err) {
			t.Fatalf("ndjson=%v: %v, want a client-side error", ndjson, err)
		}
		b.Close()
	}
}
