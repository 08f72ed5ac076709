package respond

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// deadlineConn is a socket whose deadlines are put on it lazily.
//
// fasthttp sets a deadline before every wait a request can make: the idle
// one before the next request, the read one after its first byte, the write
// one before the answer. Each is a runtime_pollSetDeadline (timer heap work
// under a lock), about 3% of the api's CPU under keep-alive load, although
// most requests arrive whole and most answers leave in one write: nothing
// waits that a deadline could end. A deadlineConn only records the deadline
// wanted, does the read and write system calls itself (through the raw
// connection), and puts the wanted deadline on the socket when one of them
// is about to wait (EAGAIN, just before Go's poller parks), unless the one
// already there can stand for it (see enough).
//
// No timeout is weakened: a wait never runs under a deadline later than
// the one wanted; a deadline there that ends earlier (by a little, see
// enough, or a stale one) does not end the operation but has the wanted
// one put on and the wait resumed (see run); an operation that would not
// wait still fails once the wanted deadline has passed, as net.Conn's does
// (see due). A deadline set while a Read or Write waits is put on the
// socket at once if the one there cannot stand for it, so that it applies
// to that wait too, as net.Conn promises.
type deadlineConn struct {
	net.Conn // the socket: its Read, Write and deadline setters are not used
	rc       syscall.RawConn
	r, w     side
}

// side is one direction's deadlines and the state of the Read (Write)
// running in it.
type side struct {
	c     *deadlineConn
	write bool

	// io is held through a Read (Write, or raw Read or Write): the fields
	// below it are that operation's, which the step functions (bound once
	// per connection, so that no call allocates one) reach.
	io       sync.Mutex
	p        []byte
	n        int
	errno    error                 // the error that ended the step
	f        func(fd uintptr) bool // the raw Read's (Write's) caller's function
	sysStep  func(fd uintptr) bool // c.readStep or c.writeStep
	wrapStep func(fd uintptr) bool // s.wrapped

	// The deadlines, as instants (see instant). want is set by the
	// deadline setters, from any goroutine, without a lock: they are
	// called on every request. mu orders the changes of the deadline on
	// the socket (set, put); it is never held while waiting.
	want   atomic.Int64 // the deadline wanted
	set    atomic.Int64 // the deadline on the socket
	parked atomic.Bool  // an operation waits, or is about to, under set
	mu     sync.Mutex
	puts   int // deadlines put on the socket, under mu (for the tests)
}

// instantEpoch is the origin of instants.
var instantEpoch = time.Now()

// instant is t as the nanoseconds from instantEpoch, measured on the monotonic
// clock when t has a reading of it (as time.Now().Add(d) has), without
// reading the clock; 0 is no deadline.
func instant(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	if d := t.Sub(instantEpoch); d != 0 {
		return int64(d)
	}
	return -1 // a nanosecond earlier: not to be taken for no deadline
}

// instantNow is the instant of now: one reading of the monotonic clock.
func instantNow() int64 { return int64(time.Since(instantEpoch)) }

// lazyDeadlines returns c with lazy deadlines, or c itself if it has no
// raw connection (it then keeps its own deadlines, set eagerly).
func lazyDeadlines(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	d := &deadlineConn{Conn: c, rc: rc}
	d.r = side{c: d}
	d.w = side{c: d, write: true}
	d.r.sysStep, d.w.sysStep = d.readStep, d.writeStep
	d.r.wrapStep, d.w.wrapStep = d.r.wrapped, d.w.wrapped
	return d
}

// SetDeadline records both deadlines. Like the two below it never fails:
// fasthttp panics if a deadline setter does.
func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.r.setWant(t)
	c.w.setWant(t)
	return nil
}

// SetReadDeadline records the deadline of reads.
func (c *deadlineConn) SetReadDeadline(t time.Time) error { c.r.setWant(t); return nil }

// SetWriteDeadline records the deadline of writes.
func (c *deadlineConn) SetWriteDeadline(t time.Time) error { c.w.setWant(t); return nil }

// Read implements net.Conn with the same results as the socket's: io.EOF
// at the end, other errors as *net.OpError.
func (c *deadlineConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil // as the socket's: a read of nothing would look like EOF
	}
	n, err, errno := c.r.do(p)
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != nil:
		return 0, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write implements net.Conn: it writes all of p or returns an error (a
// *net.OpError), as the socket's does.
func (c *deadlineConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err, errno := c.w.do(p)
	if err == nil {
		err = errno
	}
	if err != nil {
		return n, c.opError("write", err)
	}
	return n, nil
}

// do runs the direction's system call step on p: the bytes done, the
// raw connection's error and the system call's.
func (s *side) do(p []byte) (n int, err, errno error) {
	s.io.Lock()
	defer s.io.Unlock()
	s.p = p
	err = s.run(s.sysStep)
	n, errno = s.n, s.errno
	s.p, s.n, s.errno = nil, 0, nil
	return n, err, errno
}

// readStep is Read's raw read function: one read, or a wait for data.
func (c *deadlineConn) readStep(fd uintptr) bool {
	s := &c.r
	for {
		n, err := unix.Read(int(fd), s.p)
		switch err {
		case nil:
			s.n = n
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return s.park()
		default:
			s.errno = err
		}
		return true
	}
}

// writeStep is Write's raw write function: it writes until all of p is
// written, waiting whenever the socket takes no more.
func (c *deadlineConn) writeStep(fd uintptr) bool {
	s := &c.w
	for s.n < len(s.p) {
		n, err := unix.Write(int(fd), s.p[s.n:])
		if n > 0 {
			s.n += n
		}
		switch {
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return s.park()
		case err != nil:
			s.errno = err
			return true
		case n == 0:
			s.errno = io.ErrUnexpectedEOF // as the socket's Write
			return true
		}
	}
	return true
}

// opError makes err what the socket's Read or Write returns: a
// *net.OpError of op whose Err is os.ErrDeadlineExceeded after a timeout
// and an *os.SyscallError after a failed system call. (fasthttp looks for
// a *net.OpError with Timeout.)
func (c *deadlineConn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok { // the raw connection's: "raw-read", "raw-write"
		oe.Op = op // made for this call alone
		return oe
	}
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError(op, errno)
	}
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// SyscallConn gives the raw connection, whose Read and Write wait under
// the wanted deadlines like the connection's.
func (c *deadlineConn) SyscallConn() (syscall.RawConn, error) { return rawConn{c}, nil }

// rawConn is a deadlineConn's raw connection.
type rawConn struct{ c *deadlineConn }

func (r rawConn) Control(f func(fd uintptr)) error { return r.c.rc.Control(f) }

func (r rawConn) Read(f func(fd uintptr) bool) error { return r.c.r.runRaw(f) }

func (r rawConn) Write(f func(fd uintptr) bool) error { return r.c.w.runRaw(f) }

// runRaw runs the raw connection caller's f like the raw connection does,
// the wanted deadline put on the socket before f's waits.
func (s *side) runRaw(f func(fd uintptr) bool) error {
	s.io.Lock()
	s.f = f
	err := s.run(s.wrapStep)
	s.f = nil
	s.io.Unlock()
	return err
}

// wrapped is runRaw's step: the caller's f, and before a wait it asks
// for (by returning false), the wanted deadline.
func (s *side) wrapped(fd uintptr) bool {
	if s.f(fd) {
		return true
	}
	return s.park()
}

// run runs step in the direction's raw I/O until step is done (true) or
// the operation fails. It is called with s.io held.
func (s *side) run(step func(fd uintptr) bool) error {
	s.due()
	for {
		var err error
		if s.write {
			err = s.c.rc.Write(step)
		} else {
			err = s.c.rc.Read(step)
		}
		if s.parked.Load() {
			s.parked.Store(false)
		}
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || !s.resume() {
			return err
		}
	}
}

// due puts the wanted deadline on the socket if it has passed and the one
// there has not (being later, or none): then the operation fails at once,
// without trying, as the socket's does. When the one there is earlier, it
// has passed too, and the socket fails the operation itself (see resume).
// So it reads the clock only when the one there is later or none: for the
// write deadline, which is put on the socket only when a write waits,
// that is once an answer.
func (s *side) due() {
	w, set := s.want.Load(), s.set.Load()
	if w == 0 || set == w || set != 0 && set < w || instantNow() < w {
		return
	}
	s.mu.Lock()
	s.put()
	s.mu.Unlock()
}

// resume reports whether a timeout came from a deadline on the socket
// other than the one wanted (earlier, or stale), and if so puts the wanted
// one on, for run to try again: under it the operation goes on, or fails
// at once if it has passed.
func (s *side) resume() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set.Load() == s.want.Load() {
		return false
	}
	s.put()
	return true
}

// park is what a step does instead of returning false (to wait): it puts
// the wanted deadline on the socket unless the one there can stand for it.
func (s *side) park() bool {
	s.mu.Lock()
	// Stored before want is read, as setWant stores want before it reads
	// parked: of a setter and a step that cross, one sees the other's.
	s.parked.Store(true)
	if !enough(s.set.Load(), s.want.Load(), instantNow()) {
		s.put()
	}
	s.mu.Unlock()
	return false
}

// setWant records the wanted deadline, and puts it on the socket at once
// if an operation waits (or is about to) under one that cannot stand for
// it.
func (s *side) setWant(t time.Time) {
	s.want.Store(instant(t))
	if s.parked.Load() {
		s.mu.Lock()
		if !enough(s.set.Load(), s.want.Load(), instantNow()) {
			s.put()
		}
		s.mu.Unlock()
	}
}

// put puts the wanted deadline on the socket. s.mu is held. Calling the
// socket's deadline setter from a step (inside the raw connection's Read or
// Write, which hold the descriptor's read or write lock) is safe: it only
// takes a reference on the descriptor (internal/poll setDeadlineImpl).
func (s *side) put() {
	w := s.want.Load()
	var t time.Time
	if w != 0 {
		t = instantEpoch.Add(time.Duration(w))
	}
	if s.write {
		s.c.Conn.SetWriteDeadline(t)
	} else {
		s.c.Conn.SetReadDeadline(t)
	}
	// Even if it failed (the socket is closed, which the operation will
	// report): resume must not try again for ever.
	s.set.Store(w)
	s.puts++
}

// enough reports whether deadline set, on the socket, can stand for want
// at now: it is not later (a wait it ends is never longer than wanted; 0
// is no deadline, later than any), and earlier by at most 1/16 of the time
// it has left. A deadline that ends before the one wanted only makes run
// put the wanted one on and wait again (see resume); in exchange the idle
// deadline, a little later each request, is put on the socket once in a
// few seconds rather than every request. A set that has passed can stand
// only for itself.
func enough(set, want, now int64) bool {
	switch {
	case set == want:
		return true
	case want == 0, set == 0, set > want, set <= now:
		return false
	}
	return want-set <= (set-now)/16
}
