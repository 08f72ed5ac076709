package respond

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// lazyPair is a loopback connection whose server side is accepted through
// WrapListener (a *Conn over a deadlineConn), and its client side. small
// makes the server's send buffer and the client's receive buffer small, so
// that a write soon waits.
func lazyPair(t *testing.T, small bool) (*Conn, *deadlineConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := 0
	if small {
		rcv = 4096
	}
	sc, cc := dialPair(t, WrapListener(ln), rcv)
	c := sc.(*Conn)
	// A read or write that waits for ever (a deadline lost) fails the test
	// instead of hanging it.
	watchdog := time.AfterFunc(30*time.Second, func() { c.Close() })
	t.Cleanup(func() { watchdog.Stop() })
	dc, ok := c.Conn.(*deadlineConn)
	if !ok {
		t.Fatalf("%T, want *deadlineConn", c.Conn)
	}
	if small {
		dc.rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096) })
	}
	return c, dc, cc
}

// waitedRead sets c's read deadline, has cc send p after d and reads it
// from c: a read that waits, under that deadline.
func waitedRead(t *testing.T, c net.Conn, cc net.Conn, deadline time.Time, d time.Duration, p string) {
	t.Helper()
	c.SetReadDeadline(deadline)
	sendAfter(cc, d, p)
	readOne(t, c, p)
}

// timedOutRead sets c's read deadline d from now and reads with nothing
// sent: the read must time out, not before d, nor after most.
func timedOutRead(t *testing.T, c net.Conn, d, most time.Duration) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	_, err := c.Read(make([]byte, 64))
	isTimeout(t, err, "read")
	if took := time.Since(start); took < d || took > most {
		t.Fatalf("timed out after %v, want %v", took, d)
	}
}

// sendAfter writes p to c after d, in the background.
func sendAfter(c net.Conn, d time.Duration, p string) {
	time.AfterFunc(d, func() { io.WriteString(c, p) })
}

// putCount is the number of deadlines dc put on its socket.
func (dc *deadlineConn) putCount() int {
	dc.r.mu.Lock()
	defer dc.r.mu.Unlock()
	dc.w.mu.Lock()
	defer dc.w.mu.Unlock()
	return dc.r.puts + dc.w.puts
}

// isTimeout fails the test unless err is a timeout as the socket reports
// it: a *net.OpError of op, a net.Error with Timeout, os.ErrDeadlineExceeded.
func isTimeout(t *testing.T, err error, op string) {
	t.Helper()
	var ne net.Error
	var oe *net.OpError
	switch {
	case err == nil:
		t.Fatal("no error, want a timeout")
	case !errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("%v (%T): not os.ErrDeadlineExceeded", err, err)
	case !errors.As(err, &ne) || !ne.Timeout():
		t.Fatalf("%v: not a net.Error with Timeout", err)
	case op != "" && (!errors.As(err, &oe) || oe.Op != op):
		t.Fatalf("%v (%T): want a *net.OpError of %q", err, err, op)
	}
}

// readOne reads into a small buffer and fails the test on an error.
func readOne(t *testing.T, c net.Conn, want string) {
	t.Helper()
	p := make([]byte, 64)
	n, err := c.Read(p)
	if err != nil || string(p[:n]) != want {
		t.Fatalf("read %q, %v; want %q", p[:n], err, want)
	}
}

// A Read that waits ends at its deadline, never before, with the error the
// socket's Read gives; a later deadline then lets it read again.
func TestLazyReadTimesOut(t *testing.T) {
	c, _, cc := lazyPair(t, false)
	timedOutRead(t, c, 100*time.Millisecond, 5*time.Second)
	waitedRead(t, c, cc, time.Now().Add(5*time.Second), 20*time.Millisecond, "x")
}

// A deadline on the socket earlier than the one wanted is replaced when a
// read waits (or, when close, ends the wait only to resume it under the
// one wanted): the read succeeds.
func TestLazyEarlierOnSocketLaterWanted(t *testing.T) {
	c, _, cc := lazyPair(t, false)
	waitedRead(t, c, cc, time.Now().Add(100*time.Millisecond), 30*time.Millisecond, "a") // waited: 100ms put on the socket
	waitedRead(t, c, cc, time.Now().Add(2*time.Second), 300*time.Millisecond, "b")
}

// A deadline on the socket later than the one wanted is replaced when a
// read waits: the read times out at the one wanted.
func TestLazyLaterOnSocketEarlierWanted(t *testing.T) {
	c, _, cc := lazyPair(t, false)
	waitedRead(t, c, cc, time.Now().Add(10*time.Second), 20*time.Millisecond, "a") // waited: 10s put on the socket
	timedOutRead(t, c, 100*time.Millisecond, 5*time.Second)
}

// No deadline after a deadline: a read waits past the old one.
func TestLazyZeroAfterDeadline(t *testing.T) {
	c, _, cc := lazyPair(t, false)
	waitedRead(t, c, cc, time.Now().Add(100*time.Millisecond), 20*time.Millisecond, "a")
	waitedRead(t, c, cc, time.Time{}, 300*time.Millisecond, "b")
}

// A deadline on the socket that passed while nothing waited (the socket
// fails the next operation at once) does not fail a read under a later
// wanted one, even with the data there.
func TestLazyStaleDeadlineOnSocket(t *testing.T) {
	c, dc, cc := lazyPair(t, false)
	waitedRead(t, c, cc, time.Now().Add(100*time.Millisecond), 10*time.Millisecond, "a")
	io.WriteString(cc, "b")
	time.Sleep(250 * time.Millisecond) // the 100ms on the socket passes
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	readOne(t, c, "b")
	if n := dc.putCount(); n != 2 {
		t.Errorf("%d deadlines put, want 2 (the first wait's, then the wanted one after the stale one failed the read)", n)
	}
}

// A wanted deadline that has passed fails a read at once even with the
// data there, as the socket's does; the data stays for the next read.
func TestLazyPassedDeadlineFailsWithoutWaiting(t *testing.T) {
	c, _, cc := lazyPair(t, false)
	io.WriteString(cc, "a")
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Now().Add(-time.Second))
	_, err := c.Read(make([]byte, 64))
	isTimeout(t, err, "read")
	c.SetReadDeadline(time.Time{})
	readOne(t, c, "a")
}

// A deadline earlier than wanted by less than the rule allows stays on the
// socket, and ending first it does not end the read: the read times out
// at the deadline wanted, never before.
func TestLazyTimeoutNeverEarly(t *testing.T) {
	c, _, cc := lazyPair(t, false)
	waitedRead(t, c, cc, time.Now().Add(1600*time.Millisecond), 10*time.Millisecond, "a")
	timedOutRead(t, c, 1600*time.Millisecond, 10*time.Second) // a little later than the one on the socket
}

// A deadline set while a read waits applies to that wait, as net.Conn
// promises: an earlier one ends it, a deadline in the past at once.
func TestLazyDeadlineSetWhileWaiting(t *testing.T) {
	c, _, _ := lazyPair(t, false)
	for _, tc := range []struct {
		name  string
		first time.Duration // 0: no deadline
		then  time.Duration
	}{
		{"none, then 50ms", 0, 50 * time.Millisecond},
		{"10s, then 50ms", 10 * time.Second, 50 * time.Millisecond},
		{"10s, then in the past", 10 * time.Second, -time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var first time.Time
			if tc.first > 0 {
				first = time.Now().Add(tc.first)
			}
			c.SetReadDeadline(first)
			time.AfterFunc(50*time.Millisecond, func() { c.SetReadDeadline(time.Now().Add(tc.then)) })
			start := time.Now()
			_, err := c.Read(make([]byte, 64))
			isTimeout(t, err, "read")
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("timed out after %v", took)
			}
		})
	}
}

// A write the peer does not take times out at the write deadline, through
// the connection's Write (which reports what it wrote) and through its raw
// connection's Write, whose function asks to wait by returning false.
func TestLazyWriteTimesOut(t *testing.T) {
	c, _, _ := lazyPair(t, true)
	big := make([]byte, 8<<20)
	start := time.Now()
	c.SetWriteDeadline(start.Add(200 * time.Millisecond))
	n, err := c.Write(big)
	isTimeout(t, err, "write")
	if took := time.Since(start); took < 200*time.Millisecond || took > 5*time.Second {
		t.Fatalf("timed out after %v, want 200ms", took)
	}
	if n <= 0 || n >= len(big) {
		t.Fatalf("wrote %d of %d bytes", n, len(big))
	}

	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	steps := 0
	start = time.Now()
	c.SetWriteDeadline(start.Add(200 * time.Millisecond))
	err = rc.Write(func(fd uintptr) bool {
		steps++
		for { // never done: writes until the deadline
			_, err := unix.Write(int(fd), big)
			switch err {
			case nil, unix.EINTR:
			case unix.EAGAIN:
				return false
			default:
				return true
			}
		}
	})
	isTimeout(t, err, "")
	if took := time.Since(start); took < 200*time.Millisecond || took > 5*time.Second {
		t.Fatalf("raw write timed out after %v, want 200ms", took)
	}
	if steps == 0 {
		t.Fatal("the raw write's function never ran")
	}
}

// Read of a closed peer gives io.EOF; after the peer resets, Read and
// Write fail with *net.OpError around the system call's error.
func TestLazyEOFAndReset(t *testing.T) {
	c, _, cc := lazyPair(t, false)
	cc.Close()
	if n, err := c.Read(make([]byte, 64)); n != 0 || err != io.EOF {
		t.Fatalf("read %d, %v; want io.EOF", n, err)
	}

	c, _, cc = lazyPair(t, false)
	cc.SetLinger(0) // close with a reset
	cc.Close()
	time.Sleep(20 * time.Millisecond)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 64))
	var oe *net.OpError
	var se *os.SyscallError
	if !errors.As(err, &oe) || oe.Op != "read" || !errors.As(err, &se) || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v (%T), want a *net.OpError of read around ECONNRESET", err, err)
	}
	err = nil
	for i := 0; i < 10 && err == nil; i++ {
		_, err = c.Write([]byte("x"))
	}
	if !errors.As(err, &oe) || oe.Op != "write" || !errors.As(err, &se) {
		t.Fatalf("write: %v (%T), want a *net.OpError of write around a system call's error", err, err)
	}
	if oe.Net != "tcp" || oe.Source == nil || oe.Addr == nil {
		t.Fatalf("write: %+v, want its network and addresses", oe)
	}
}

// The point of it all: over keep-alive request/response rounds with
// fasthttp's deadline calls, deadlines are almost never put on the socket,
// whether the requests are there when read or the reads wait for them.
func TestLazyDeadlinesRarelyPut(t *testing.T) {
	const rounds = 200
	for _, waits := range []bool{false, true} {
		c, dc, cc := lazyPair(t, false)
		req, resp := bytes.Repeat([]byte("q"), 100), bytes.Repeat([]byte("r"), 300)
		done := make(chan error, 1)
		go func() {
			if !waits { // all the requests at once
				if _, err := cc.Write(bytes.Repeat(req, rounds)); err != nil {
					done <- err
					return
				}
			}
			got := make([]byte, len(resp))
			for i := 0; i < rounds; i++ {
				if waits { // each request after the answer to the one before
					if _, err := cc.Write(req); err != nil {
						done <- err
						return
					}
				}
				if _, err := io.ReadFull(cc, got); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		if !waits {
			time.Sleep(50 * time.Millisecond) // all the requests are there
		}
		p := make([]byte, len(req))
		for i := 0; i < rounds; i++ {
			c.SetReadDeadline(time.Now().Add(60 * time.Second)) // idle
			if _, err := io.ReadFull(c, p[:1]); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second)) // read
			if _, err := io.ReadFull(c, p[1:]); err != nil {
				t.Fatal(err)
			}
			c.SetWriteDeadline(time.Now().Add(60 * time.Second)) // write
			if _, err := c.Write(resp); err != nil {
				t.Fatal(err)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		t.Logf("reads wait %v: %d deadlines put in %d rounds", waits, dc.putCount(), rounds)
		if n := dc.putCount(); n > 10 {
			t.Errorf("reads wait %v: %d deadlines put in %d rounds, want at most 10", waits, n, rounds)
		}
	}
}

// Holding a head works as before over lazy deadlines: what is held leaves
// first, with or before what follows.
func TestLazyHeldHead(t *testing.T) {
	c, _, cc := lazyPair(t, false)
	got := readAll(cc, false)
	var room [HeadRoom]byte
	var h heldHead
	h.start(c, room[:])
	io.WriteString(c, "head;")
	if !c.holding(&h.room) {
		t.Fatal("not holding")
	}
	body := bytes.Repeat([]byte("b"), 2*HeadRoom)
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Write(body); err != nil || n != len(body) {
		t.Fatalf("write %d, %v", n, err)
	}
	c.Close()
	if out := <-got; string(out) != "head;"+string(body) {
		t.Fatalf("got %d bytes, want %d", len(out), 5+len(body))
	}
}

// A connection without a raw connection keeps its own deadlines.
func TestLazyFallsBackWithoutRawConn(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	if got := lazyDeadlines(a); got != a {
		t.Fatalf("%T, want the pipe itself", got)
	}
	c := &Conn{Conn: lazyDeadlines(a)}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	isTimeout(t, err, "")
	go b.Write([]byte("x"))
	c.SetReadDeadline(time.Time{})
	readOne(t, c, "x")
}

// enough, transition by transition: a deadline on the socket stands for
// the one wanted only if it is not later and earlier by at most 1/16 of
// the time it has left.
func TestEnough(t *testing.T) {
	const now = int64(time.Hour)
	at := func(d time.Duration) int64 { return now + int64(d) }
	const none = 0
	for _, tc := range []struct {
		name      string
		set, want int64
		ok        bool
	}{
		{"none, none", none, none, true},
		{"none on the socket, one wanted", none, at(time.Second), false},
		{"one on the socket, none wanted", at(time.Second), none, false},
		{"the same", at(time.Second), at(time.Second), true},
		{"the same, passed", at(-time.Second), at(-time.Second), true},
		{"idle 60s, next idle a little later", at(57 * time.Second), at(60 * time.Second), true},
		{"idle 60s, next idle much later", at(30 * time.Second), at(60 * time.Second), false},
		{"idle 60s on the socket, read 10s wanted", at(60 * time.Second), at(10 * time.Second), false},
		{"read 10s on the socket, idle 60s wanted", at(10 * time.Second), at(60 * time.Second), false},
		{"later by a nanosecond", at(time.Second + 1), at(time.Second), false},
		{"passed, a later one wanted", at(-time.Millisecond), at(time.Millisecond), false},
		{"wanted passed, an earlier one on the socket", at(-2 * time.Second), at(-time.Second), false},
	} {
		if got := enough(tc.set, tc.want, now); got != tc.ok {
			t.Errorf("%s: enough %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// Instants keep the order and distance of the times they stand for, with a
// monotonic clock reading or without; no deadline is 0, and an instant goes
// back to a time that is the same deadline.
func TestInstant(t *testing.T) {
	if got := instant(time.Time{}); got != 0 {
		t.Fatalf("no deadline: %d, want 0", got)
	}
	n := time.Now()
	d := n.Add(time.Minute)
	if got := time.Duration(instant(d) - instant(n)); got != time.Minute {
		t.Errorf("a minute apart: %v", got)
	}
	if got := time.Duration(instant(d.Round(0)) - instant(d)); got < -time.Second || got > time.Second {
		t.Errorf("without the monotonic reading: %v off", got)
	}
	if back := instantEpoch.Add(time.Duration(instant(d))); !back.Equal(d) {
		t.Errorf("back: %v, want %v", back, d)
	}
	if now := instantNow(); now < instant(n) || now > instant(d) {
		t.Errorf("now %d, not between %d and %d", now, instant(n), instant(d))
	}
	if got := instant(time.Unix(1, 0)); got >= 0 {
		t.Errorf("long ago: %d, want < 0", got)
	}
	if got := instant(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)); got <= instant(d) {
		t.Errorf("far ahead: %d, want > %d", got, instant(d))
	}
	if got := instant(instantEpoch); got == 0 {
		t.Error("the epoch taken for no deadline")
	}
}
