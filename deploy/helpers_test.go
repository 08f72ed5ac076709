package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/stack/natsauth"
)

// repoRoot is the repository's top folder (this module lives in deploy/).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root %s has no go.work: %v", root, err)
	}
	return root
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Rowpipe's own images are rowpipe/<service>; the service is what the env
// cross-check looks up.
var rowpipeImage = regexp.MustCompile(`(?:^|/)rowpipe/(ingester|writer|api|stack)(?::|@|$)`)

// rowpipeService returns the rowpipe service an image runs, or "".
func rowpipeService(image string) string {
	m := rowpipeImage.FindStringSubmatch(image)
	if m == nil {
		return ""
	}
	return m[1]
}

// checkPinned fails unless image names an explicit tag other than latest (or
// a digest).
func checkPinned(t *testing.T, where, image string) {
	t.Helper()
	if strings.Contains(image, "@sha256:") {
		return
	}
	name := image[strings.LastIndex(image, "/")+1:]
	i := strings.LastIndex(name, ":")
	if i < 0 || name[i+1:] == "" {
		t.Errorf("%s: image %q has no tag: pin one", where, image)
		return
	}
	if tag := name[i+1:]; tag == "latest" || strings.Contains(tag, "$") {
		t.Errorf("%s: image %q is not pinned: name a release tag", where, image)
	}
}

// natsServerVersion is the nats-server version that pkg/schema (and so every
// test against a real broker) pins; the deployed NATS image must match it.
func natsServerVersion(t *testing.T) string {
	t.Helper()
	gomod := readFile(t, filepath.Join(repoRoot(t), "pkg", "schema", "go.mod"))
	m := regexp.MustCompile(`(?m)github\.com/nats-io/nats-server/v2 v(\d+\.\d+\.\d+)\s`).FindStringSubmatch(gomod)
	if m == nil {
		t.Fatal("pkg/schema/go.mod does not require github.com/nats-io/nats-server/v2")
	}
	return m[1]
}

// checkNATSImage checks the official nats image, alpine variant (its health
// check uses the image's wget), at the version the tests run.
func checkNATSImage(t *testing.T, where, image string) {
	t.Helper()
	want := "nats:" + natsServerVersion(t) + "-alpine"
	if image != want && !strings.HasPrefix(image, want) {
		t.Errorf("%s: NATS image %q, want %q: the nats-server that pkg/schema pins and the tests run", where, image, want)
	}
}

// parseNATSConfig parses a NATS configuration exactly as the pinned
// nats-server does (unknown fields are errors), with env set for $VAR
// references.
func parseNATSConfig(t *testing.T, name, conf string, env map[string]string) *server.Options {
	t.Helper()
	for _, r := range natsauth.Roles {
		t.Setenv(r.PasswordVar(), testPassword(r))
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%s: nats-server %s refuses the configuration: %v", name, server.VERSION, err)
	}
	if !opts.JetStream {
		t.Errorf("%s: JetStream is not enabled", name)
	}
	return opts
}

// parseGoMemLimit parses a GOMEMLIMIT value as the Go runtime does (a number
// of bytes with an optional B, KiB, MiB, GiB or TiB suffix).
func parseGoMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("GOMEMLIMIT %q: want a positive size such as 48MiB", s)
	}
	return n * mult, nil
}

// checkGoMemLimit: Go's soft limit leaves the runtime room under the hard
// limit (so the GC works harder before the kernel kills) without wasting it.
func checkGoMemLimit(t *testing.T, where, value string, limit int64) {
	t.Helper()
	if value == "" {
		t.Errorf("%s: no GOMEMLIMIT: set it to about 75%% of the memory limit (%d MiB)", where, limit>>20)
		return
	}
	n, err := parseGoMemLimit(value)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	if n < limit/2 || n > limit*9/10 {
		t.Errorf("%s: GOMEMLIMIT %s is not between 50%% and 90%% of the memory limit %d MiB", where, value, limit>>20)
	}
}

// testPassword is the password a test gives role in a NATS configuration.
func testPassword(r natsauth.Role) string { return "test-password-of-the-" + string(r) }

// checkNATSAuth: the server refuses clients without credentials, and its
// users are rowpipe's roles with exactly natsauth's permissions, their
// passwords from the environment (never in the file).
func checkNATSAuth(t *testing.T, where, conf string, o *server.Options) {
	t.Helper()
	if o.NoAuthUser != "" || o.Authorization != "" || o.Username != "" || len(o.Nkeys) > 0 || o.TrustedOperators != nil {
		t.Errorf("%s: authentication other than the role users (no_auth_user %q, token set %v, user %q, %d nkeys)", where, o.NoAuthUser, o.Authorization != "", o.Username, len(o.Nkeys))
	}
	if len(o.Users) != len(natsauth.Roles) {
		t.Fatalf("%s: %d users, want one per role %v: a NATS without users lets anyone in", where, len(o.Users), natsauth.Roles)
	}
	for _, u := range o.Users {
		r := natsauth.Role(u.Username)
		if !slices.Contains(natsauth.Roles, r) {
			t.Errorf("%s: user %q is not a rowpipe role", where, u.Username)
			continue
		}
		if u.Password != testPassword(r) {
			t.Errorf("%s: user %s's password is not $%s", where, r, r.PasswordVar())
		}
		if u.Account != nil && u.Account.Name != server.DEFAULT_GLOBAL_ACCOUNT {
			t.Errorf("%s: user %s is in account %s, want the global account (where the stream is)", where, r, u.Account.Name)
		}
		want := natsauth.Permissions(r, schema.DefaultStream)
		if !samePermissions(u.Permissions, want) {
			t.Errorf("%s: user %s's permissions differ from services/stack/natsauth:\n got %s\nwant %s", where, r, permString(u.Permissions), permString(want))
		}
	}
	if strings.Contains(conf, "password: \"") || regexp.MustCompile(`password:\s*[^$\s]`).MatchString(conf) {
		t.Errorf("%s: a password is written in the file; it must come from the environment", where)
	}
}

func samePermissions(a, b *server.Permissions) bool {
	return a != nil && b != nil && sameSubjects(a.Publish, b.Publish) && sameSubjects(a.Subscribe, b.Subscribe) && a.Response == nil
}

func sameSubjects(a, b *server.SubjectPermission) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(sortedCopy(a.Allow), sortedCopy(b.Allow)) && slices.Equal(sortedCopy(a.Deny), sortedCopy(b.Deny))
}

func permString(p *server.Permissions) string {
	if p == nil {
		return "none (everything)"
	}
	return fmt.Sprintf("publish %+v subscribe %+v", *p.Publish, *p.Subscribe)
}
