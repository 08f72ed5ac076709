package main

import (
	"bufio"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// microModules are the repository's modules whose benchmarks the suite runs
// (those with none are skipped).
var microModules = []string{"pkg/schema", "services/ingester", "services/writer", "services/api", "services/stack"}

// microResult is the benchmark output of one module.
type microResult struct {
	module string
	lines  []string // Benchmark lines, pkg: lines, and any failure
	err    string
}

// hasBenchmarks reports whether any _test.go file under dir declares a
// benchmark.
func hasBenchmarks(dir string) bool {
	found := false
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || found {
			return filepath.SkipDir
		}
		if d.IsDir() && path != dir && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, "_test.go") {
			b, err := os.ReadFile(path)
			if err == nil && bytes.Contains(b, []byte("\nfunc Benchmark")) {
				found = true
			}
		}
		return nil
	})
	return found
}

// runMicro runs `go test -run=NONE -bench=. -benchmem ./...` in each
// module with benchmarks, one after the other, with nothing else running.
// They build as `make test` does (the repository's go.work, whatever
// GOWORK the benchmark itself runs with).
func (b *bench) runMicro(ctx context.Context) []microResult {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOWORK=") {
			env = append(env, kv)
		}
	}
	var out []microResult
	for _, m := range microModules {
		dir := filepath.Join(b.opt.repo, m)
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil || !hasBenchmarks(dir) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		args := []string{"test", "-run=NONE", "-bench=.", "-benchmem", "-count=1", "-timeout=20m"}
		if b.opt.benchtime != "" {
			args = append(args, "-benchtime="+b.opt.benchtime)
		}
		args = append(args, "./...")
		logf("micro: %s: go %s", m, strings.Join(args, " "))
		p, err := b.sup.start(spec{
			name: "go-test-" + strings.ReplaceAll(m, "/", "-"), timeout: 25 * time.Minute, captureStdout: true,
			env: env, fullEnv: true, dir: dir, bin: "go", args: args,
		})
		r := microResult{module: m}
		if err != nil {
			r.err = err.Error()
			out = append(out, r)
			continue
		}
		werr := p.wait(ctx)
		sc := bufio.NewScanner(bytes.NewReader(p.stdout.Bytes()))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), " \t")
			switch {
			case strings.HasPrefix(line, "Benchmark"), strings.HasPrefix(line, "pkg: "),
				strings.Contains(line, " ns/op"), // a result line split from its name by the benchmark's own output
				strings.HasPrefix(line, "--- FAIL"), strings.HasPrefix(line, "FAIL"),
				strings.HasPrefix(line, "panic:"):
				r.lines = append(r.lines, line)
			}
		}
		if werr != nil {
			r.err = werr.Error()
			if tail := p.logTail(); tail != "" {
				r.err += ": " + lastLines(tail, 5)
			}
		}
		out = append(out, r)
	}
	return out
}

// lastLines keeps the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
