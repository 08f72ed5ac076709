package deploy

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/stack/natsauth"
)

// loadCompose loads docker-compose.yml as `docker compose` does, with the
// variables of a .env made by deploy/compose/init-env.sh and nothing else
// (so every ${VAR:-default} takes its default).
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	root := repoRoot(t)
	path := filepath.Join(root, "docker-compose.yml")
	details := types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: path}},
		Environment: composeTestEnv(),
	}
	p, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SkipResolveEnvironment = true
		o.SetProjectName("rowpipe", true) // docker compose takes the folder's name
	})
	if err != nil {
		t.Fatalf("compose-spec loader refuses docker-compose.yml: %v", err)
	}
	return p
}

// composeTestEnv is what .env holds after deploy/compose/init-env.sh.
func composeTestEnv() types.Mapping {
	env := types.Mapping{"API_KEYS": "test-api-key-0123456789"}
	for _, r := range natsauth.Roles {
		env[r.PasswordVar()] = testPassword(r)
	}
	return env
}

func composeService(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml has no service %q", name)
	}
	return s
}

func composeEnv(s types.ServiceConfig, name string) string {
	if v, ok := s.Environment[name]; ok && v != nil {
		return *v
	}
	return ""
}

func TestComposeServices(t *testing.T) {
	p := loadCompose(t)
	want := []string{"api", "ingester", "nats", "writer"}
	if got := p.ServiceNames(); !slices.Equal(sortedCopy(got), want) {
		t.Errorf("services %v, want %v", got, want)
	}
	if p.Name != "rowpipe" {
		t.Errorf("project name %q, want rowpipe", p.Name)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// Every service: read-only root filesystem, a non-root user, no capabilities,
// no privilege escalation, a small memory limit and GOMEMLIMIT under it, a
// pinned image.
func TestComposeEveryServiceIsHardened(t *testing.T) {
	p := loadCompose(t)
	for name, s := range p.Services {
		where := "docker-compose.yml service " + name
		if !s.ReadOnly {
			t.Errorf("%s: read_only is not true", where)
		}
		checkNonRootUser(t, where, s.User)
		if !slices.Contains(s.CapDrop, "ALL") || len(s.CapAdd) > 0 {
			t.Errorf("%s: cap_drop %v cap_add %v, want cap_drop [ALL] and nothing added", where, s.CapDrop, s.CapAdd)
		}
		if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: security_opt %v lacks no-new-privileges:true", where, s.SecurityOpt)
		}
		if s.Privileged || s.NetworkMode == "host" || s.Pid == "host" || s.Ipc == "host" {
			t.Errorf("%s: privileged or host namespaces", where)
		}
		limit := composeMemoryLimit(s)
		if limit <= 0 || limit > 256<<20 {
			t.Errorf("%s: memory limit %d bytes, want a small one (0 < limit <= 256 MiB)", where, limit)
		} else {
			checkGoMemLimit(t, where, composeEnv(s, "GOMEMLIMIT"), limit)
		}
		if s.Image == "" {
			t.Errorf("%s: no image: name one (rowpipe/<service>:<tag> for built ones)", where)
		} else {
			checkPinned(t, where, s.Image)
		}
		if svc := rowpipeService(s.Image); svc != "" {
			if s.Build == nil || s.Build.Target != svc {
				t.Errorf("%s: image %s must be built from the Dockerfile target %q", where, s.Image, svc)
			}
		}
	}
}

func composeMemoryLimit(s types.ServiceConfig) int64 {
	if s.Deploy != nil && s.Deploy.Resources.Limits != nil && s.Deploy.Resources.Limits.MemoryBytes > 0 {
		return int64(s.Deploy.Resources.Limits.MemoryBytes)
	}
	return int64(s.MemLimit)
}

// checkNonRootUser accepts "uid" or "uid:gid" with uid > 0.
func checkNonRootUser(t *testing.T, where, user string) {
	t.Helper()
	uid, _, _ := strings.Cut(user, ":")
	n, err := strconv.Atoi(uid)
	if err != nil || n <= 0 {
		t.Errorf("%s: user %q, want a numeric non-root uid such as 65532:65532", where, user)
	}
}

func TestComposeNATS(t *testing.T) {
	p := loadCompose(t)
	nats := composeService(t, p, "nats")
	checkNATSImage(t, "docker-compose.yml service nats", nats.Image)

	// The health check asks the monitoring port whether JetStream is up.
	hc := nats.HealthCheck
	if hc == nil || hc.Disable || len(hc.Test) < 2 {
		t.Fatalf("nats has no health check; writer and api wait for it")
	}
	test := strings.Join(hc.Test, " ")
	if !strings.Contains(test, "wget") || !strings.Contains(test, ":8222/healthz?js-enabled-only=true") {
		t.Errorf("nats health check %q: want wget against :8222/healthz?js-enabled-only=true", test)
	}

	// The configuration it runs with, as the pinned nats-server reads it.
	conf := composeNATSConfig(t, p, nats)
	opts := parseNATSConfig(t, "deploy/compose/nats.conf", conf, nil)
	checkNATSAuth(t, "deploy/compose/nats.conf", conf, opts)
	if opts.HTTPPort != 8222 || opts.Port != 4222 {
		t.Errorf("nats.conf: port %d http_port %d, want 4222 and 8222", opts.Port, opts.HTTPPort)
	}
	checkNATSLimits(t, "deploy/compose/nats.conf", opts, schema.DefaultStreamMaxBytes)

	// JetStream's store is on the named volume.
	m := volumeAt(nats, opts.StoreDir)
	if m == nil || m.Type != types.VolumeTypeVolume || m.ReadOnly {
		t.Errorf("nats: store_dir %s is not on a writable named volume (mounts: %+v)", opts.StoreDir, nats.Volumes)
	}
}

// composeNATSConfig returns the configuration file that the nats service's
// command names, read from its bind mount.
func composeNATSConfig(t *testing.T, p *types.Project, s types.ServiceConfig) string {
	t.Helper()
	i := slices.Index(s.Command, "--config")
	if i < 0 || i+1 >= len(s.Command) {
		t.Fatalf("nats command %v does not name a --config", s.Command)
	}
	target := s.Command[i+1]
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && v.Target == target {
			if !v.ReadOnly {
				t.Errorf("nats: configuration mount %s is not read-only", target)
			}
			return readFile(t, v.Source)
		}
	}
	t.Fatalf("nats: nothing is mounted at %s", target)
	return ""
}

// volumeAt returns the mount that holds path (the longest mount target that
// is path or a parent of it).
func volumeAt(s types.ServiceConfig, path string) *types.ServiceVolumeConfig {
	var best *types.ServiceVolumeConfig
	for i, v := range s.Volumes {
		if path == v.Target || strings.HasPrefix(path, strings.TrimSuffix(v.Target, "/")+"/") {
			if best == nil || len(v.Target) > len(best.Target) {
				best = &s.Volumes[i]
			}
		}
	}
	return best
}

// checkNATSLimits: the server accepts the largest message the stream does,
// and has room on file for the stream at its size limit.
func checkNATSLimits(t *testing.T, where string, o *server.Options, streamMaxBytes int64) {
	t.Helper()
	if o.MaxPayload < schema.MaxMessageBytes {
		t.Errorf("%s: max_payload %d < %d (pkg/schema.MaxMessageBytes): the stream's largest message would be refused", where, o.MaxPayload, schema.MaxMessageBytes)
	}
	if o.JetStreamMaxStore < streamMaxBytes {
		t.Errorf("%s: max_file_store %d < the stream's max bytes %d: JetStream could not reserve the stream", where, o.JetStreamMaxStore, streamMaxBytes)
	}
	if o.JetStreamMaxMemory <= 0 || o.JetStreamMaxMemory > 64<<20 {
		t.Errorf("%s: max_memory_store %d: rowpipe keeps everything on file; bound the memory store (<= 64 MiB)", where, o.JetStreamMaxMemory)
	}
	if o.StreamMaxBufferedMsgs <= 0 || o.StreamMaxBufferedSize <= 0 {
		t.Errorf("%s: set jetstream max_buffered_msgs and max_buffered_size: they bound the server's memory on a big ingest", where)
	}
}

func TestComposeWriterAndAPIShareData(t *testing.T) {
	p := loadCompose(t)
	writer := composeService(t, p, "writer")
	api := composeService(t, p, "api")

	if dep, ok := writer.DependsOn["nats"]; !ok || dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("writer: depends_on nats %+v, want condition service_healthy", dep)
	}
	// The api does not talk to NATS: it neither waits for it nor holds a
	// credential for it; it serves what the writer wrote, NATS up or not.
	if _, ok := api.DependsOn["nats"]; ok {
		t.Errorf("api depends on nats; it reads the files only")
	}
	for k := range api.Environment {
		if strings.HasPrefix(k, "NATS_") {
			t.Errorf("api has %s: it must hold no NATS setting or credential", k)
		}
	}
	// Each of the services checks itself (distroless: the binary probes).
	for name, path := range map[string]string{"writer": "/healthz", "api": "/readyz"} {
		hc := composeService(t, p, name).HealthCheck
		if hc == nil || hc.Disable || !slices.Equal(hc.Test, []string{"CMD", "/usr/local/bin/" + name, "--probe", path}) {
			t.Errorf("%s: health check %+v, want [CMD /usr/local/bin/%s --probe %s]", name, hc, name, path)
		}
	}

	wDir, aDir := composeEnv(writer, "DATA_DIR"), composeEnv(api, "DATA_DIR")
	wm, am := volumeAt(writer, wDir), volumeAt(api, aDir)
	if wm == nil || am == nil || wDir == "" || aDir == "" {
		t.Fatalf("writer DATA_DIR %q and api DATA_DIR %q must each be on a mounted volume", wDir, aDir)
	}
	if wm.Type != types.VolumeTypeVolume || wm.Source == "" || wm.Source != am.Source || am.Type != types.VolumeTypeVolume {
		t.Errorf("writer (%s %s) and api (%s %s) must share one named volume", wm.Type, wm.Source, am.Type, am.Source)
	}
	if _, ok := p.Volumes[wm.Source]; !ok {
		t.Errorf("volume %q is not declared under volumes:", wm.Source)
	}
	if wm.ReadOnly {
		t.Errorf("writer's data volume is read-only")
	}
	if !am.ReadOnly {
		t.Errorf("api's data volume is writable: the api only reads, mount it read_only")
	}
	if wm.Target != wDir || am.Target != aDir {
		t.Errorf("DATA_DIR must be the volume's mount point (writer %s on %s, api %s on %s)", wDir, wm.Target, aDir, am.Target)
	}
}

func TestComposeSecretsComeFromEnvFile(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t)
	if !slices.Contains(strings.Fields(readFile(t, filepath.Join(root, ".gitignore"))), ".env") {
		t.Errorf(".gitignore does not ignore .env")
	}
	// Each service gets only its own secret, interpolated from .env.
	want := map[string]map[string]string{
		"api":      {"API_KEYS": "test-api-key-0123456789"},
		"nats":     {"NATS_INGESTER_PASSWORD": testPassword(natsauth.Ingester), "NATS_WRITER_PASSWORD": testPassword(natsauth.Writer), "NATS_ADMIN_PASSWORD": testPassword(natsauth.Admin)},
		"writer":   {"NATS_PASSWORD": testPassword(natsauth.Writer)},
		"ingester": {"NATS_PASSWORD": testPassword(natsauth.Ingester)},
	}
	for name, s := range p.Services {
		if len(s.EnvFiles) > 0 {
			t.Errorf("service %s reads env_file %v: it would get every secret of .env; interpolate only its own", name, s.EnvFiles)
		}
		for k, v := range s.Environment {
			if secretLike(k) && (v == nil || want[name][k] != *v) {
				t.Errorf("service %s: %s is not its own secret from .env", name, k)
			}
		}
		for k, v := range want[name] {
			if composeEnv(s, k) != v {
				t.Errorf("service %s: %s does not come from .env", name, k)
			}
		}
	}
	if u := composeEnv(composeService(t, p, "writer"), "NATS_USER"); u != "writer" {
		t.Errorf("writer NATS_USER %q, want writer", u)
	}
	if u := composeEnv(composeService(t, p, "ingester"), "NATS_USER"); u != "ingester" {
		t.Errorf("ingester NATS_USER %q, want ingester", u)
	}

	// Without .env nothing starts: there is no default secret.
	path := filepath.Join(root, "docker-compose.yml")
	_, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir: root, ConfigFiles: []types.ConfigFile{{Filename: path}}, Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SkipResolveEnvironment = true; o.SetProjectName("rowpipe", true) })
	if err == nil || !strings.Contains(err.Error(), "init-env.sh") {
		t.Errorf("docker-compose.yml loads without .env (%v); want a refusal that says to run deploy/compose/init-env.sh", err)
	}

	// .env.example: placeholders that cannot work, and the command.
	example := readFile(t, filepath.Join(root, ".env.example"))
	vars, err := dotenv.ParseWithLookup(strings.NewReader(example), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf(".env.example: %v", err)
	}
	for _, k := range []string{"API_KEYS", "NATS_INGESTER_PASSWORD", "NATS_WRITER_PASSWORD", "NATS_ADMIN_PASSWORD"} {
		if v, ok := vars[k]; !ok || v != "" {
			t.Errorf(".env.example: %s missing or with a value %q; a copied example must not work", k, v)
		}
	}
	if !strings.Contains(example, "deploy/compose/init-env.sh") {
		t.Errorf(".env.example does not name deploy/compose/init-env.sh")
	}
}

// The script writes every secret compose needs, random, and never
// overwrites an existing .env.
func TestComposeInitEnv(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, ".env")
	script := filepath.Join(repoRoot(t), "deploy", "compose", "init-env.sh")
	run := func() ([]byte, error) { return exec.Command("sh", script, env).CombinedOutput() }
	if out, err := run(); err != nil {
		t.Fatalf("init-env.sh: %v\n%s", err, out)
	}
	first := readFile(t, env)
	vars, err := dotenv.ParseWithLookup(strings.NewReader(first), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	for k := range composeTestEnv() {
		if len(vars[k]) != 48 {
			t.Errorf("%s = %q, want 48 random hex characters", k, vars[k])
		}
	}
	if fi, err := os.Stat(env); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf(".env mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if out, err := run(); err == nil || readFile(t, env) != first {
		t.Errorf("a second run overwrote .env or succeeded: %v\n%s", err, out)
	}
	os.Remove(env)
	run()
	if second := readFile(t, env); second == first {
		t.Error("two runs made the same secrets")
	}
}

// secretLike names variables that hold secrets (a *_FILE variable holds a path).
func secretLike(name string) bool {
	if strings.HasSuffix(name, "_FILE") {
		return false
	}
	for _, w := range []string{"KEY", "TOKEN", "PASSWORD", "SECRET", "CREDS"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

func TestComposeAPIPublishes5000(t *testing.T) {
	p := loadCompose(t)
	api := composeService(t, p, "api")
	_, port, err := net.SplitHostPort(composeEnv(api, "API_ADDR"))
	if err != nil {
		t.Fatalf("api API_ADDR %q: %v", composeEnv(api, "API_ADDR"), err)
	}
	ok := slices.ContainsFunc(api.Ports, func(pc types.ServicePortConfig) bool {
		return pc.Published == "5000" && strconv.Itoa(int(pc.Target)) == port
	})
	if !ok || port != "5000" {
		t.Errorf("api must publish 5000 to its API_ADDR port (ports %+v, API_ADDR port %s)", api.Ports, port)
	}
	// Nothing is published beyond loopback by default (API_PUBLISH widens
	// the api's).
	for name, s := range p.Services {
		for _, pc := range s.Ports {
			if pc.HostIP != "127.0.0.1" {
				t.Errorf("service %s publishes %s on every interface; bind it to 127.0.0.1", name, pc.Published)
			}
		}
	}
}

func TestComposeIngesterWatchesInbox(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t)
	ing := composeService(t, p, "ingester")
	if dep, ok := ing.DependsOn["nats"]; !ok || dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("ingester: depends_on nats %+v, want condition service_healthy", dep)
	}
	cmd := []string(ing.Command)
	i := slices.Index(cmd, "--every")
	if i < 0 || i+1 >= len(cmd) || cmd[i+1] != "5m" {
		t.Errorf("ingester command %v: want --every 5m", cmd)
	}
	folder := cmd[len(cmd)-1]
	m := volumeAt(ing, folder)
	if m == nil || m.Type != types.VolumeTypeBind || m.Target != folder {
		t.Fatalf("ingester: its folder %s is not a bind mount (mounts %+v)", folder, ing.Volumes)
	}
	if m.Source != filepath.Join(root, "inbox") || !m.ReadOnly {
		t.Errorf("ingester: %s is %s (read-only %v), want ./inbox read-only", folder, m.Source, m.ReadOnly)
	}
	if m.Bind == nil || !m.Bind.CreateHostPath {
		t.Errorf("ingester: ./inbox is not created when missing (bind.create_host_path)")
	}
}

// Every variable a rowpipe service is given exists in its Config, and every
// required one is given.
func TestComposeEnvMatchesConfig(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t)
	for name, s := range p.Services {
		svc := rowpipeService(s.Image)
		if svc == "" {
			continue
		}
		var set []string
		for k := range s.Environment {
			set = append(set, k)
		}
		for _, f := range s.EnvFiles {
			// The user's .env is shaped by .env.example.
			path := f.Path
			if filepath.Clean(path) == filepath.Join(root, ".env") {
				path = filepath.Join(root, ".env.example")
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("service %s env_file: %v", name, err)
			}
			vars, err := dotenv.ParseWithLookup(strings.NewReader(string(b)), func(string) (string, bool) { return "", false })
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			for k := range vars {
				if k == "ROWPIPE_VERSION" { // compose's own interpolation
					continue
				}
				set = append(set, k)
			}
		}
		checkEnv(t, "docker-compose.yml service "+name, svc, set, nil)
	}
}
