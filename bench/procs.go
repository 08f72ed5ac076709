package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// supervisor starts every child process of the benchmark and ends them all
// on the way out: each child runs in its own process group (so a Ctrl-C in
// the terminal reaches only the benchmark, which then stops the children in
// order), dies with the benchmark (Pdeathsig), and is killed when its own
// timeout runs out.
type supervisor struct {
	logDir string

	mu    sync.Mutex
	procs []*proc
}

// proc is one child process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	stdout  *bytes.Buffer // only when captured
	done    chan struct{}
	err     error // Wait's error, valid after done
	timer   *time.Timer
	hwm     atomic.Int64 // VmHWM as last sampled while it ran
}

// clkTck is the unit of utime/stime in /proc/<pid>/stat on Linux.
const clkTck = 100

// start runs sp.bin with sp.args, its stderr (and stdout unless
// captureStdout) in a log file, killed after sp.timeout.
// spec says how to run one child.
type spec struct {
	name          string
	timeout       time.Duration
	captureStdout bool     // keep stdout in proc.stdout instead of the log
	env           []string // added to baseEnv, or the whole environment with fullEnv
	fullEnv       bool
	dir           string
	bin           string
	args          []string
}

func (s *supervisor) start(sp spec) (*proc, error) {
	name, timeout := sp.name, sp.timeout
	logPath := filepath.Join(s.logDir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(sp.bin, sp.args...)
	cmd.Dir = sp.dir
	if sp.fullEnv {
		cmd.Env = sp.env
	} else {
		cmd.Env = append(baseEnv(), sp.env...)
	}
	cmd.Stderr = lf
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	if sp.captureStdout {
		p.stdout = new(bytes.Buffer)
		cmd.Stdout = p.stdout
	} else {
		cmd.Stdout = lf
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.timer = time.AfterFunc(timeout, func() {
		fmt.Fprintf(os.Stderr, "bench: %s ran past its %s timeout; killing it\n", name, timeout)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	go p.sampleHWM()
	go func() {
		p.err = cmd.Wait()
		p.timer.Stop()
		lf.Close()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, nil
}

// baseEnv is the environment every child gets: PATH, HOME and the Go
// variables, nothing from the rowpipe configuration of the caller's shell.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH", k == "HOME", k == "TMPDIR", k == "LANG", strings.HasPrefix(k, "GO"):
			env = append(env, kv)
		}
	}
	return env
}

// pid is the child's process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to end by itself, or for ctx.
func (p *proc) wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop ends the process: SIGTERM, then SIGKILL after grace. It returns once
// the process is reaped.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM) // the group: `go run` and `go test` have children
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// peakRSS is the process's peak resident set size in bytes: VmHWM while it
// runs, its last sample (every 50 ms) once it has exited.
func (p *proc) peakRSS() int64 {
	if p.exited() {
		return p.hwm.Load()
	}
	v, _ := vmHWM(p.pid())
	return v
}

// sampleHWM keeps p.hwm at the process's VmHWM until it exits. The rusage
// maximum of a child cannot stand in for it: Go starts children with
// CLONE_VM|CLONE_VFORK, and Linux records the high-water RSS of the mm an
// exec replaces (here the benchmark's own) in the child's ru_maxrss.
func (p *proc) sampleHWM() {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if v, err := vmHWM(p.pid()); err == nil && v > 0 {
			p.hwm.Store(v)
		}
		select {
		case <-p.done:
			return
		case <-t.C:
		}
	}
}

// cpu is the CPU time (user+system) the process has used so far.
func (p *proc) cpu() time.Duration {
	if p.exited() {
		return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
	}
	d, _ := procCPU(p.pid())
	return d
}

// logTail is the end of the process's log, for error messages.
func (p *proc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// stopAll ends every process still running, newest first.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	procs := append([]*proc(nil), s.procs...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for i := len(procs) - 1; i >= 0; i-- {
		wg.Add(1)
		go func(p *proc) {
			defer wg.Done()
			p.stop(5 * time.Second)
		}(procs[i])
	}
	wg.Wait()
}

// vmHWM reads the peak resident set size (VmHWM) of pid, in bytes.
func vmHWM(pid int) (int64, error) { return procStatus(pid, "VmHWM") }

// procStatus reads a size field of /proc/<pid>/status (VmHWM, RssFile ...),
// in bytes.
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			fields := strings.Fields(rest)
			if len(fields) < 1 {
				break
			}
			kb, err := strconv.ParseInt(fields[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no %s line", field)
}

// procCPU reads utime+stime of a running pid from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the rest follows ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')': state is field 3, utime field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("short stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed stat times")
	}
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// selfCPU is the CPU time the benchmark process itself has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitTCP waits until something accepts connections on addr.
func waitTCP(ctx context.Context, p *proc, addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited before listening on %s: %v\n%s", p.name, addr, p.err, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listening on %s after %s", addr, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
