package deploy

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY ...
	args string
}

// stage is one FROM ... AS name and what follows it.
type stage struct {
	image, name string
	body        []instruction
}

// parseDockerfile reads the Dockerfile into its global ARGs and stages. It
// knows the subset of the syntax this repository uses.
func parseDockerfile(t *testing.T) (args map[string]string, stages []*stage) {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ins []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasPrefix(line, "#") { // a comment inside a continued instruction
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, rest, _ := strings.Cut(cur.String(), " ")
		ins = append(ins, instruction{strings.ToUpper(cmd), strings.TrimSpace(rest)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	args = map[string]string{}
	for _, in := range ins {
		if in.cmd == "FROM" {
			fields := strings.Fields(in.args)
			fields = slices.DeleteFunc(fields, func(s string) bool { return strings.HasPrefix(s, "--platform=") })
			st := &stage{image: fields[0]}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				st.name = fields[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.cmd == "ARG" {
				k, v, _ := strings.Cut(in.args, "=")
				args[k] = v
			}
			continue
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	return args, stages
}

func expandArgs(s string, args map[string]string) string {
	return os.Expand(s, func(k string) string { return args[k] })
}

func findStage(stages []*stage, name string) *stage {
	for _, s := range stages {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (s *stage) all(cmd string) []string {
	var out []string
	for _, in := range s.body {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// The build: the official Go image at the workspace's Go version, static,
// trimmed and version-stamped binaries, module downloads in their own layer.
func TestDockerfileBuildStage(t *testing.T) {
	root := repoRoot(t)
	args, stages := parseDockerfile(t)
	b := findStage(stages, "build")
	if b == nil {
		t.Fatal("Dockerfile has no stage named build")
	}
	image := expandArgs(b.image, args)
	checkPinned(t, "Dockerfile build stage", image)
	goWork := readFile(t, filepath.Join(root, "go.work"))
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(goWork)
	if m == nil || !strings.HasPrefix(image, "golang:"+m[1]) {
		t.Errorf("build image %s: want the official golang image at go.work's Go %v", image, m)
	}

	run := strings.Join(b.all("RUN"), "\n")
	env := strings.Join(b.all("ENV"), " ")
	if !strings.Contains(env, "CGO_ENABLED=0") && !strings.Contains(run, "CGO_ENABLED=0") {
		t.Error("the build does not set CGO_ENABLED=0: the runtime image has no libc")
	}
	for _, want := range []string{"go build", "-trimpath", `-s -w -X main.version=${VERSION}`} {
		if !strings.Contains(run, want) {
			t.Errorf("the build does not run %q", want)
		}
	}
	for _, svc := range []string{"ingester", "writer", "api", "stack"} {
		if !strings.Contains(run, "./services/"+svc) {
			t.Errorf("the build does not build services/%s", svc)
		}
	}

	// go.work and every workspace module's go.mod are copied, and `go mod
	// download` runs, before the sources: a source change keeps the
	// download layer. The deploy module is dropped from the workspace.
	var copiedBeforeDownload, dropped []string
	downloaded := false
	for _, in := range b.body {
		switch {
		case in.cmd == "COPY" && !downloaded:
			copiedBeforeDownload = append(copiedBeforeDownload, strings.Fields(in.args)...)
		case in.cmd == "RUN" && strings.Contains(in.args, "go mod download"):
			downloaded = true
			for _, f := range strings.Fields(in.args) {
				if mod, ok := strings.CutPrefix(f, "-dropuse=./"); ok {
					dropped = append(dropped, mod)
				}
			}
			if !strings.Contains(in.args, "go work edit -dropuse=./deploy") {
				t.Error("the deploy module is not dropped from the workspace before go mod download")
			}
		case in.cmd == "COPY" && downloaded && strings.Contains(in.args, "go.mod"):
			t.Errorf("COPY %s after go mod download", in.args)
		}
	}
	if !downloaded {
		t.Fatal("the build stage does not run go mod download")
	}
	if !slices.Contains(copiedBeforeDownload, "go.work") {
		t.Error("go.work is not copied before go mod download")
	}
	for _, mod := range workspaceModules(t, goWork) {
		if slices.Contains(dropped, mod) {
			continue
		}
		if !slices.Contains(copiedBeforeDownload, mod+"/go.mod") {
			t.Errorf("workspace module %s: its go.mod is not copied before go mod download", mod)
		}
		if _, err := os.Stat(filepath.Join(root, mod, "go.sum")); err == nil && !slices.Contains(copiedBeforeDownload, mod+"/go.sum") && !slices.Contains(copiedBeforeDownload, mod+"/go.sum*") {
			t.Errorf("workspace module %s: its go.sum is not copied before go mod download", mod)
		}
	}
}

// workspaceModules lists go.work's use directives, as clean relative paths.
func workspaceModules(t *testing.T, goWork string) []string {
	t.Helper()
	var mods []string
	inUse := false
	for line := range strings.Lines(goWork) {
		line = strings.TrimSpace(line)
		switch {
		case line == "use (":
			inUse = true
		case inUse && line == ")":
			inUse = false
		case inUse && line != "" && !strings.HasPrefix(line, "//"):
			mods = append(mods, filepath.Clean(line))
		case strings.HasPrefix(line, "use "):
			mods = append(mods, filepath.Clean(strings.TrimSpace(strings.TrimPrefix(line, "use "))))
		}
	}
	if len(mods) == 0 {
		t.Fatal("go.work uses no module")
	}
	return mods
}

// The images: distroless static, non-root, one target per service with its
// binary as the entrypoint, nothing secret.
func TestDockerfileRuntimeImages(t *testing.T) {
	args, stages := parseDockerfile(t)
	rt := findStage(stages, "runtime")
	if rt == nil {
		t.Fatal("Dockerfile has no stage named runtime")
	}
	if img := expandArgs(rt.image, args); img != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("runtime image %s, want gcr.io/distroless/static-debian12:nonroot", img)
	}
	if users := rt.all("USER"); !slices.Equal(users, []string{"65532:65532"}) {
		t.Errorf("runtime USER %v, want 65532:65532", users)
	}
	for _, svc := range []string{"ingester", "writer", "api", "stack"} {
		s := findStage(stages, svc)
		if s == nil {
			t.Errorf("Dockerfile has no target %s", svc)
			continue
		}
		if s.image != "runtime" {
			t.Errorf("target %s is FROM %s, want FROM runtime", svc, s.image)
		}
		if u := s.all("USER"); len(u) > 0 {
			t.Errorf("target %s changes USER to %v", svc, u)
		}
		bin := "/usr/local/bin/" + svc
		if !slices.Contains(s.all("COPY"), "--from=build /out/"+svc+" "+bin) {
			t.Errorf("target %s does not copy its binary to %s", svc, bin)
		}
		if ep := s.all("ENTRYPOINT"); !slices.Equal(ep, []string{`["` + bin + `"]`}) {
			t.Errorf("target %s ENTRYPOINT %v, want [%q] (exec form: there is no shell)", svc, ep, bin)
		}
	}
	if last := stages[len(stages)-1]; last.name != "stack" {
		t.Errorf("the default target (last stage) is %s, want stack", last.name)
	}

	// No secret in any ARG, ENV or LABEL.
	for _, s := range stages {
		for _, in := range s.body {
			if in.cmd != "ARG" && in.cmd != "ENV" && in.cmd != "LABEL" {
				continue
			}
			for f := range strings.FieldsSeq(in.args) {
				k, _, _ := strings.Cut(f, "=")
				if secretLike(strings.ToUpper(k)) {
					t.Errorf("stage %s: %s %s: no key, token or password goes in an image", s.name, in.cmd, f)
				}
			}
		}
	}
}

// .dockerignore keeps secrets, data, binaries and user CSVs out of the build
// context, and lets in what the Dockerfile copies.
func TestDockerignore(t *testing.T) {
	root := repoRoot(t)
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	excluded := func(p string) bool {
		ok, err := pm.MatchesOrParentMatches(p)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for _, p := range []string{".git/config", ".env", "bin/writer", "data/products/CURRENT", "inbox/products.csv",
		"export.csv", "bench/big.csv", "services/ingester/testdata/big.csv", "deploy/go.mod", "writer.test"} {
		if !excluded(p) {
			t.Errorf(".dockerignore lets %s into the build context", p)
		}
	}
	for _, p := range []string{"go.work", "pkg/schema/go.mod", "pkg/schema/header.go", "services/api/go.mod",
		"services/writer/main.go", "services/stack/stack/stack.go", "samples/products.csv"} {
		if excluded(p) {
			t.Errorf(".dockerignore keeps %s out of the build context", p)
		}
	}
}
