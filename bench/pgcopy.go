package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The PostgreSQL baseline: the same CSV loaded with `COPY ... FROM STDIN
// (FORMAT csv, HEADER)` (psql's \copy, which reads the file as our
// ingester does) into a table of text columns, in a throwaway cluster on
// a Unix socket only, started and stopped by the bench. Skipped, with a
// line in the report saying why, where Debian's postgresql is absent.

// copyResult is one COPY of a CSV.
type copyResult struct {
	elapsed   time.Duration
	diskBytes int64 // pg_total_relation_size of the table
	skipped   string
}

// pgCluster is a running throwaway cluster.
type pgCluster struct {
	bin, dir, sock string
	port           int
	asUser         []string // runuser prefix when the bench runs as root
}

// pgBinDir finds the server binaries of Debian's postgresql package.
func pgBinDir() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL is not installed (Debian: apt-get install postgresql)")
}

// startPG starts a cluster in a new folder; the server refuses to run as
// root, so then it runs as the postgres user.
func startPG(ctx context.Context) (*pgCluster, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("psql"); err != nil {
		return nil, errors.New("psql is not installed")
	}
	dir, err := os.MkdirTemp("", "rowpipe-bench-pg-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &pgCluster{bin: bin, dir: dir, sock: dir, port: port}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, errors.New("running as root and there is no postgres user to run the server")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		c.asUser = []string{"runuser", "-u", "postgres", "--"}
	}
	data := filepath.Join(dir, "data")
	if out, err := c.server(ctx, "initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	opts := fmt.Sprintf("-c listen_addresses='' -k %s -p %d -c fsync=on -c shared_buffers=128MB", c.sock, c.port)
	if out, err := c.server(ctx, "pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "start"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_ctl start: %v: %s", err, out)
	}
	return c, nil
}

func (c *pgCluster) server(ctx context.Context, name string, args ...string) ([]byte, error) {
	argv := append(append(append([]string{}, c.asUser...), filepath.Join(c.bin, name)), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = c.dir
	return cmd.CombinedOutput()
}

// psql runs one command (SQL or a psql meta-command) and returns its
// unaligned output.
func (c *pgCluster) psql(ctx context.Context, command string) (string, error) {
	cmd := exec.CommandContext(ctx, "psql", "-h", c.sock, "-p", strconv.Itoa(c.port), "-U", "postgres", "-d", "postgres",
		"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", command)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql %.60q: %v: %s", command, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// stop stops the server and removes its folder.
func (c *pgCluster) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c.server(ctx, "pg_ctl", "-D", filepath.Join(c.dir, "data"), "-m", "fast", "-w", "stop")
	os.RemoveAll(c.dir)
}

// runCopy loads csvPath with COPY into a fresh cluster and times it.
func runCopy(ctx context.Context, csvPath string) *copyResult {
	c, err := startPG(ctx)
	if err != nil {
		return &copyResult{skipped: err.Error()}
	}
	defer c.stop()
	r, err := c.copyCSV(ctx, csvPath)
	if err != nil {
		return &copyResult{skipped: err.Error()}
	}
	return r
}

func (c *pgCluster) copyCSV(ctx context.Context, csvPath string) (*copyResult, error) {
	header, err := csvHeader(csvPath)
	if err != nil {
		return nil, err
	}
	cols := make([]string, len(header))
	for i, h := range header {
		cols[i] = `"` + strings.ReplaceAll(h, `"`, `""`) + `" text`
	}
	if _, err := c.psql(ctx, "CREATE TABLE t ("+strings.Join(cols, ", ")+")"); err != nil {
		return nil, err
	}
	start := time.Now()
	path := strings.ReplaceAll(csvPath, `'`, `''`)
	if _, err := c.psql(ctx, `\copy t FROM '`+path+`' WITH (FORMAT csv, HEADER true)`); err != nil {
		return nil, err
	}
	r := &copyResult{elapsed: time.Since(start)}
	size, err := c.psql(ctx, "SELECT pg_total_relation_size('t')")
	if err != nil {
		return nil, err
	}
	r.diskBytes, _ = strconv.ParseInt(size, 10, 64)
	return r, nil
}

func csvHeader(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return csv.NewReader(bufio.NewReader(f)).Read()
}
