package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
)

// cli runs the command as a user would, with a clean environment for the
// variables it reads.
func cli(t *testing.T, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	for _, k := range []string{"NATS_URL", "NATS_CREDS", "STREAM", "DATASET", "PUBLISH_GIVE_UP", "PROGRESS", "LOG_LEVEL", "LOG_FORMAT"} {
		t.Setenv(k, env[k])
		if env[k] == "" {
			os.Unsetenv(k)
		}
	}
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func csvFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUsageErrorsExit2(t *testing.T) {
	f := csvFile(t, "u.csv", "a\n1\n")
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no arguments":    {nil, "no source"},
		"unknown flag":    {[]string{"--no-such-flag", f}, "no-such-flag"},
		"bad mode":        {[]string{"--mode", "sideways", "--dataset", "x", f}, "mode"},
		"bad dataset":     {[]string{"--dataset=Bad/Name", "--wait", f}, "dataset"},
		"upper dataset":   {[]string{"--dataset=UPPER", f}, "dataset"},
		"dash dataset":    {[]string{"--dataset=-x", f}, "dataset"},
		"two sources":     {[]string{f, f}, "one source at a time"},
		"bad encoding":    {[]string{"--encoding", "klingon", f}, "encoding"},
		"bad delimiter":   {[]string{"--delimiter", "ab", f}, "delimiter"},
		"negative every":  {[]string{"--every", "-1s", f}, "negative"},
		"every too short": {[]string{"--every", "10ms", f}, "--every"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := cli(t, nil, "", tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 mentioning %q", code, stderr, tc.want)
			}
		})
	}
}

func TestHelpExits0(t *testing.T) {
	code, _, stderr := cli(t, nil, "", "-h")
	if code != 0 || !strings.Contains(stderr, "usage: ingester") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// A missing or empty file is refused before NATS is even tried: NATS_URL
// points nowhere here.
func TestRefusedFileExits3WithoutNATS(t *testing.T) {
	env := map[string]string{"NATS_URL": "nats://127.0.0.1:1"}
	missing := filepath.Join(t.TempDir(), "no-such-file.csv")
	code, _, stderr := cli(t, env, "", "--wait", missing)
	if code != 3 || !strings.Contains(stderr, "no-such-file.csv") {
		t.Errorf("missing file: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = cli(t, env, "", csvFile(t, "empty.csv", ""))
	if code != 3 || !strings.Contains(stderr, "empty.csv: is empty") {
		t.Errorf("empty file: exit %d, stderr %q", code, stderr)
	}
}

func TestNATSUnreachableExits1(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	env := map[string]string{"NATS_URL": "nats://user:hunter2@" + addr, "PUBLISH_GIVE_UP": "300ms"}
	code, _, stderr := cli(t, env, "", csvFile(t, "f.csv", "a\n1\n"))
	if code != 1 || !strings.Contains(stderr, "unreachable") {
		t.Errorf("exit %d, stderr %q; want exit 1 saying NATS is unreachable", code, stderr)
	}
	if strings.Contains(stderr, "hunter2") {
		t.Errorf("the password of NATS_URL is in the output: %s", stderr)
	}
}

func TestIngestFileAndStdin(t *testing.T) {
	srv := jstest.Start(t)
	env := map[string]string{"NATS_URL": srv.URL(), "DATASET": "from-env"}
	f := csvFile(t, "p.csv", "Handle,Title\na,A\nb,B\n")
	// Flags may follow the source.
	code, stdout, stderr := cli(t, env, "", f, "--progress", "off")
	if code != 0 || !strings.HasPrefix(stdout, "dataset=from-env generation=1 rows=2 rejected=0 ") {
		t.Fatalf("file: exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}
	code, stdout, stderr = cli(t, env, "k,v\n1,one\n", "--dataset", "from-stdin", "-")
	if code != 0 || !strings.Contains(stdout, "dataset=from-stdin ") || !strings.Contains(stdout, " rows=1 rejected=0 ") {
		t.Fatalf("stdin: exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}
	code, stdout, stderr = cli(t, env, "", "--strict", csvFile(t, "bad.csv", "a,b\n1,2\n3\n"))
	if code != 3 || !strings.Contains(stderr, "bad.csv:3: wrong number of fields") || !strings.Contains(stdout, "rejected=1") {
		t.Fatalf("strict: exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := cli(t, nil, "", "--version")
	if code != 0 || stdout != "ingester dev\n" {
		t.Errorf("--version: exit %d, stdout %q; want 0 and \"ingester dev\"", code, stdout)
	}
	version = "v1.2.3" // as -ldflags "-X main.version=v1.2.3" does
	defer func() { version = "dev" }()
	if _, stdout, _ := cli(t, nil, "", "--version"); stdout != "ingester v1.2.3\n" {
		t.Errorf("--version with a stamped version: %q", stdout)
	}
	if code, _, stderr := cli(t, nil, "", "-h"); code != 0 || !strings.HasPrefix(stderr, "ingester v1.2.3\n") || !strings.Contains(stderr, "FOLDER") {
		t.Errorf("-h: exit %d, stderr %q; want the version first, and FOLDER in the usage", code, stderr)
	}
}

// --dataset with a folder is a usage error, found before NATS is tried
// (NATS_URL points nowhere). DATASET in the environment is not: other
// services read it too.
func TestFolderWithDatasetFlagExits2(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"NATS_URL": "nats://127.0.0.1:1"}
	for _, args := range [][]string{{"--dataset", "orders", dir}, {dir, "--dataset=orders"}, {"--every", "5m", "--dataset", "products", dir}} {
		code, _, stderr := cli(t, env, "", args...)
		if code != 2 || !strings.Contains(stderr, "--dataset cannot be used with the folder "+dir) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 about --dataset", args, code, stderr)
		}
	}
	code, _, stderr := cli(t, env, "", filepath.Join(dir, "missing"))
	if code != 3 {
		t.Errorf("a missing path: exit %d, stderr %q", code, stderr)
	}
}

func TestIngestFolder(t *testing.T) {
	srv := jstest.Start(t)
	env := map[string]string{"NATS_URL": srv.URL(), "DATASET": "from-env", "PROGRESS": "off"}
	dir := t.TempDir()
	for name, content := range map[string]string{"products.csv": "Handle,Title\na,A\nb,B\n", "Orders.CSV": "id\n1\n", "___.csv": "a\n1\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, stderr := cli(t, env, "", dir)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 3 || len(lines) != 2 || !strings.HasPrefix(lines[0], "dataset=orders ") || !strings.Contains(lines[0], " rows=1 rejected=0 ") ||
		!strings.HasPrefix(lines[1], "dataset=products ") || !strings.Contains(lines[1], " rows=2 rejected=0 ") {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit 3 (a skipped file) and a summary for orders and products", code, stdout, stderr)
	}
	for _, want := range []string{filepath.Join(dir, "___.csv") + ": skipped: the file name gives no valid dataset name", "ingester: folder " + dir + ": 1 of 3 CSV files not synced (___.csv)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	if err := os.Remove(filepath.Join(dir, "___.csv")); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = cli(t, env, "", dir)
	if code != 0 || strings.Count(stdout, "outcome=published") != 2 {
		t.Errorf("without the bad file: exit %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
