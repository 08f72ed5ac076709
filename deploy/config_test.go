package deploy

import (
	"bufio"
	"sort"
	"strings"
	"testing"

	"github.com/kelseyhightower/envconfig"
	"github.com/rowpipe/rowpipe/services/api/api"
	"github.com/rowpipe/rowpipe/services/ingester/ingester"
	"github.com/rowpipe/rowpipe/services/writer/writer"
)

// envVar is one variable a service's Config reads.
type envVar struct {
	Required bool
}

// goRuntimeEnv are read by the Go runtime, not by a Config struct.
var goRuntimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GOGC": true, "GODEBUG": true}

// configs are the services' Config structs, which each main fills with
// envconfig.Process("", &cfg).
var configs = map[string]func() any{
	"ingester": func() any { return &ingester.Config{} },
	"writer":   func() any { return &writer.Config{} },
	"api":      func() any { return &api.Config{} },
}

// serviceEnv returns the environment variables service svc reads, as
// envconfig itself lists them (tags, nesting, ignored fields and all).
func serviceEnv(t *testing.T, svc string) map[string]envVar {
	t.Helper()
	newCfg, ok := configs[svc]
	if !ok {
		t.Fatalf("no Config known for service %q: add it to configs", svc)
	}
	var out strings.Builder
	format := "{{range .}}{{.Key}}\t{{.Tags.Get \"required\"}}\n{{end}}"
	if err := envconfig.Usagef("", newCfg(), &out, format); err != nil {
		t.Fatalf("%s Config: %v", svc, err)
	}
	vars := map[string]envVar{}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		key, req, _ := strings.Cut(sc.Text(), "\t")
		if key != "" {
			vars[key] = envVar{Required: req == "true"}
		}
	}
	if len(vars) == 0 {
		t.Fatalf("%s Config reads no environment variable", svc)
	}
	return vars
}

// contractEnv: the names of CONTRACT.md's configuration table (and the
// writer's METRICS_ADDR) that the deployment files rely on, per service.
var contractEnv = map[string][]string{
	"ingester": {"NATS_URL", "NATS_CREDS", "STREAM", "DATASET", "STREAM_REPLICAS"},
	"writer":   {"NATS_URL", "NATS_CREDS", "STREAM", "DATA_DIR", "KEEP_GENERATIONS", "STREAM_REPLICAS", "METRICS_ADDR"},
	"api":      {"DATASET", "DATA_DIR", "API_ADDR", "API_KEYS", "API_KEYS_FILE", "MAX_LIMIT"},
}

// Each service's Config reads the contract's names for it.
func TestConfigsReadTheContractNames(t *testing.T) {
	for svc, names := range contractEnv {
		vars := serviceEnv(t, svc)
		for _, n := range names {
			if _, ok := vars[n]; !ok {
				t.Errorf("%s Config does not read %s (CONTRACT.md's configuration table)", svc, n)
			}
		}
	}
}

// checkEnv checks one container of service svc: every variable it sets is
// read by the service's Config (or by the Go runtime, or only feeds a $(VAR)
// in its arguments), and every required one is set.
func checkEnv(t *testing.T, where, svc string, set []string, argsRefs map[string]bool) {
	t.Helper()
	vars := serviceEnv(t, svc)
	have := map[string]bool{}
	for _, name := range set {
		have[name] = true
		if _, ok := vars[name]; ok || goRuntimeEnv[name] || argsRefs[name] {
			continue
		}
		t.Errorf("%s: sets %s, which %s's Config does not read (it reads %s)", where, name, svc, strings.Join(sortedKeys(vars), ", "))
	}
	for name, v := range vars {
		if v.Required && !have[name] {
			t.Errorf("%s: %s requires %s, which is not set", where, svc, name)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
