package deploy

import (
	"fmt"
	"net"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/stack/natsauth"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// The kustomizations users apply: `kubectl apply -k deploy/k8s` and
// `kubectl apply -k deploy/k8s/overlays/cluster`.
const (
	baseDir    = "k8s"
	clusterDir = "k8s/overlays/cluster"
)

// manifests is one kustomize build, every object decoded strictly.
type manifests struct {
	dir          string
	deployments  []*appsv1.Deployment
	statefulSets []*appsv1.StatefulSet
	cronJobs     []*batchv1.CronJob
	services     []*corev1.Service
	configMaps   []*corev1.ConfigMap
	secrets      []*corev1.Secret
	pdbs         []*policyv1.PodDisruptionBudget
	netpols      []*networkingv1.NetworkPolicy
}

// build runs kustomize in-process (as `kubectl kustomize dir` does) and
// decodes every object into its typed Kubernetes API struct, strictly:
// an unknown or duplicated field is an error, as is an unexpected kind.
func build(t *testing.T, dir string) *manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	rm, err := k.Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := &manifests{dir: dir}
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		where := fmt.Sprintf("%s: %s %s", dir, r.GetKind(), r.GetName())
		gvk := r.GetApiVersion() + "/" + r.GetKind()
		switch gvk {
		case "apps/v1/Deployment":
			m.deployments = append(m.deployments, decodeStrict[appsv1.Deployment](t, where, y))
		case "apps/v1/StatefulSet":
			m.statefulSets = append(m.statefulSets, decodeStrict[appsv1.StatefulSet](t, where, y))
		case "batch/v1/CronJob":
			m.cronJobs = append(m.cronJobs, decodeStrict[batchv1.CronJob](t, where, y))
		case "v1/Service":
			m.services = append(m.services, decodeStrict[corev1.Service](t, where, y))
		case "v1/ConfigMap":
			m.configMaps = append(m.configMaps, decodeStrict[corev1.ConfigMap](t, where, y))
		case "v1/Secret":
			m.secrets = append(m.secrets, decodeStrict[corev1.Secret](t, where, y))
		case "policy/v1/PodDisruptionBudget":
			m.pdbs = append(m.pdbs, decodeStrict[policyv1.PodDisruptionBudget](t, where, y))
		case "networking.k8s.io/v1/NetworkPolicy":
			m.netpols = append(m.netpols, decodeStrict[networkingv1.NetworkPolicy](t, where, y))
		default:
			t.Errorf("%s: kind %s is not checked by these tests: add it to build()", where, gvk)
		}
	}
	return m
}

func decodeStrict[T any](t *testing.T, where string, y []byte) *T {
	t.Helper()
	var obj T
	if err := yaml.UnmarshalStrict(y, &obj); err != nil {
		t.Fatalf("%s does not decode strictly: %v", where, err)
	}
	return &obj
}

// podTemplate is a pod spec with where it comes from.
type podTemplate struct {
	where       string
	labels      map[string]string
	spec        *corev1.PodSpec
	longRunning bool     // Deployment, StatefulSet (a CronJob's pods run to completion)
	claims      []string // a StatefulSet's volumeClaimTemplates
}

func (m *manifests) pods() []podTemplate {
	var out []podTemplate
	for _, d := range m.deployments {
		out = append(out, podTemplate{"Deployment " + d.Name, d.Spec.Template.Labels, &d.Spec.Template.Spec, true, nil})
	}
	for _, s := range m.statefulSets {
		var claims []string
		for _, c := range s.Spec.VolumeClaimTemplates {
			claims = append(claims, c.Name)
		}
		out = append(out, podTemplate{"StatefulSet " + s.Name, s.Spec.Template.Labels, &s.Spec.Template.Spec, true, claims})
	}
	for _, c := range m.cronJobs {
		tpl := c.Spec.JobTemplate.Spec.Template
		out = append(out, podTemplate{"CronJob " + c.Name, tpl.Labels, &tpl.Spec, false, nil})
	}
	return out
}

func (m *manifests) deployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range m.deployments {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("%s: no Deployment %s", m.dir, name)
	return nil
}

func (m *manifests) statefulSet(t *testing.T, name string) *appsv1.StatefulSet {
	t.Helper()
	for _, s := range m.statefulSets {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("%s: no StatefulSet %s", m.dir, name)
	return nil
}

func (m *manifests) cronJob(t *testing.T, name string) *batchv1.CronJob {
	t.Helper()
	for _, c := range m.cronJobs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("%s: no CronJob %s", m.dir, name)
	return nil
}

func (m *manifests) configMap(name string) *corev1.ConfigMap {
	for _, c := range m.configMaps {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (m *manifests) service(name string) *corev1.Service {
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func container(t *testing.T, where string, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	t.Fatalf("%s: no container %s", where, name)
	return nil
}

func envValue(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func bothBuilds(t *testing.T) []*manifests {
	return []*manifests{build(t, baseDir), build(t, clusterDir)}
}

// Both kustomizations build, and the base builds on its own too.
func TestKustomizationsBuild(t *testing.T) {
	for _, dir := range []string{baseDir, "k8s/base", clusterDir} {
		m := build(t, dir)
		if len(m.deployments) != 1 || len(m.statefulSets) != 1 || len(m.cronJobs) != 1 {
			t.Errorf("%s: %d Deployments, %d StatefulSets, %d CronJobs; want one of each", dir, len(m.deployments), len(m.statefulSets), len(m.cronJobs))
		}
	}
}

// The restricted profile on every pod and container, and small, fixed
// resources (requests == limits) with GOMEMLIMIT under the memory limit.
func TestK8sPodsAreRestricted(t *testing.T) {
	for _, m := range bothBuilds(t) {
		for _, p := range m.pods() {
			where := m.dir + ": " + p.where
			ps := p.spec
			if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
				t.Errorf("%s: pod securityContext.runAsNonRoot is not true", where)
			}
			if ps.SecurityContext == nil || ps.SecurityContext.SeccompProfile == nil || ps.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: pod seccompProfile is not RuntimeDefault", where)
			}
			if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
				t.Errorf("%s: automountServiceAccountToken is not false (rowpipe never calls the Kubernetes API)", where)
			}
			if ps.HostNetwork || ps.HostPID || ps.HostIPC {
				t.Errorf("%s: host namespaces", where)
			}
			if len(ps.InitContainers) > 0 || len(ps.EphemeralContainers) > 0 {
				t.Errorf("%s: init or ephemeral containers are not checked here", where)
			}
			for i := range ps.Containers {
				c := &ps.Containers[i]
				cw := where + " container " + c.Name
				// The writer has no readiness probe of its own: the api's says
				// whether it has caught up (TestK8sRowpipeDeployment).
				if p.longRunning && (c.LivenessProbe == nil || c.ReadinessProbe == nil && c.Name != "writer") {
					t.Errorf("%s: a long-running container needs liveness and readiness probes", cw)
				}
				checkContainerSecurity(t, cw, c.SecurityContext)
				checkResources(t, cw, c)
				checkPinned(t, cw, c.Image)
				checkMounts(t, cw, ps, c, p.claims)
			}
		}
	}
}

func checkContainerSecurity(t *testing.T, where string, sc *corev1.SecurityContext) {
	t.Helper()
	switch {
	case sc == nil:
		t.Errorf("%s: no securityContext", where)
		return
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("%s: runAsNonRoot is not true", where)
	case sc.RunAsUser == nil || *sc.RunAsUser != 65532:
		t.Errorf("%s: runAsUser is not 65532 (the distroless nonroot user)", where)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s: readOnlyRootFilesystem is not true", where)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s: allowPrivilegeEscalation is not false", where)
	case sc.Privileged != nil && *sc.Privileged:
		t.Errorf("%s: privileged", where)
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("%s: capabilities %+v, want drop [ALL] and nothing added", where, sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("%s: seccompProfile is not RuntimeDefault", where)
	}
}

func checkResources(t *testing.T, where string, c *corev1.Container) {
	t.Helper()
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[name]
		lim, okLim := c.Resources.Limits[name]
		if !okReq || !okLim || req.Cmp(lim) != 0 {
			t.Errorf("%s: %s requests %v limits %v: set both, equal (Guaranteed QoS on a small node)", where, name, req.String(), lim.String())
		}
	}
	mem := c.Resources.Limits[corev1.ResourceMemory]
	if mem.Value() <= 0 || mem.Value() > 512<<20 {
		t.Errorf("%s: memory limit %s, want a small one (<= 512Mi)", where, mem.String())
		return
	}
	v, _ := envValue(c, "GOMEMLIMIT")
	checkGoMemLimit(t, where, v, mem.Value())
}

// checkMounts: every mount names a volume of the pod; every writable path is
// a volume (the root filesystem is read-only).
func checkMounts(t *testing.T, where string, ps *corev1.PodSpec, c *corev1.Container, claims []string) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		i := slices.IndexFunc(ps.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
		if i < 0 && slices.Contains(claims, vm.Name) {
			continue
		}
		if i < 0 {
			t.Errorf("%s: mounts %s, which the pod does not declare", where, vm.Name)
			continue
		}
		v := ps.Volumes[i]
		if (v.Secret != nil || v.ConfigMap != nil) && !vm.ReadOnly {
			t.Errorf("%s: %s (a Secret or ConfigMap) is not mounted read-only", where, vm.Name)
		}
		if v.EmptyDir != nil && v.EmptyDir.SizeLimit == nil {
			t.Errorf("%s: emptyDir %s has no sizeLimit", where, v.Name)
		}
	}
}

// mountAt returns the mount holding p, and its volume.
func mountAt(ps *corev1.PodSpec, c *corev1.Container, p string) (*corev1.VolumeMount, *corev1.Volume) {
	var best *corev1.VolumeMount
	for i, vm := range c.VolumeMounts {
		if p == vm.MountPath || strings.HasPrefix(p, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			if best == nil || len(vm.MountPath) > len(best.MountPath) {
				best = &c.VolumeMounts[i]
			}
		}
	}
	if best == nil {
		return nil, nil
	}
	for i := range ps.Volumes {
		if ps.Volumes[i].Name == best.Name {
			return best, &ps.Volumes[i]
		}
	}
	return best, nil
}

// portNumber resolves a probe's or Service's port (a name or a number) in c.
func portNumber(c *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		for _, cp := range c.Ports {
			if cp.ContainerPort == p.IntVal {
				return p.IntVal
			}
		}
		return 0
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

func addrPort(t *testing.T, where, addr string) int32 {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	n, err2 := strconv.Atoi(port)
	if err != nil || err2 != nil {
		t.Fatalf("%s: address %q has no port", where, addr)
	}
	return int32(n)
}

func checkHTTPProbe(t *testing.T, where, kind string, pr *corev1.Probe, c *corev1.Container, wantPath string, wantPort int32) {
	t.Helper()
	if pr == nil || pr.HTTPGet == nil {
		t.Errorf("%s: no HTTP %s probe", where, kind)
		return
	}
	if p, _, _ := strings.Cut(pr.HTTPGet.Path, "?"); p != wantPath {
		t.Errorf("%s: %s probe path %s, want %s", where, kind, pr.HTTPGet.Path, wantPath)
	}
	if got := portNumber(c, pr.HTTPGet.Port); got == 0 || got != wantPort {
		t.Errorf("%s: %s probe port %s is %d, want the declared port %d", where, kind, pr.HTTPGet.Port.String(), got, wantPort)
	}
}

// The writer and the api side by side on one emptyDir; the api reads it
// read-only; probes on the ports their configuration opens.
func TestK8sRowpipeDeployment(t *testing.T) {
	for _, m := range bothBuilds(t) {
		d := m.deployment(t, "rowpipe")
		where := m.dir + ": Deployment rowpipe"
		ps := &d.Spec.Template.Spec
		if n := ptrValue(d.Spec.Replicas, 1); n < 2 {
			t.Errorf("%s: replicas %d, want >= 2 (the read side scales by replicas; a drain keeps one)", where, n)
		}
		if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: selector does not match its pod labels", where)
		}
		if got := len(ps.Containers); got != 2 {
			t.Fatalf("%s: %d containers, want writer and api", where, got)
		}
		w := container(t, where, ps, "writer")
		a := container(t, where, ps, "api")
		if rowpipeService(w.Image) != "writer" || rowpipeService(a.Image) != "api" {
			t.Errorf("%s: images %s and %s, want rowpipe/writer and rowpipe/api", where, w.Image, a.Image)
		}

		// Shared data.
		wDir, _ := envValue(w, "DATA_DIR")
		aDir, _ := envValue(a, "DATA_DIR")
		wm, wv := mountAt(ps, w, wDir)
		am, av := mountAt(ps, a, aDir)
		if wm == nil || am == nil || wv == nil || av == nil || wv.Name != av.Name || wv.EmptyDir == nil {
			t.Fatalf("%s: writer DATA_DIR %q and api DATA_DIR %q must be one shared emptyDir", where, wDir, aDir)
		}
		if wm.ReadOnly || !am.ReadOnly {
			t.Errorf("%s: the writer mounts the data read-write (%v), the api read-only (%v)", where, !wm.ReadOnly, am.ReadOnly)
		}
		if wm.MountPath != wDir || am.MountPath != aDir {
			t.Errorf("%s: DATA_DIR must be the mount point", where)
		}

		// Probes.
		metrics, _ := envValue(w, "METRICS_ADDR")
		wp := addrPort(t, where+" writer METRICS_ADDR", metrics)
		checkHTTPProbe(t, where+" writer", "liveness", w.LivenessProbe, w, "/healthz", wp)
		if w.ReadinessProbe != nil || w.StartupProbe != nil {
			t.Errorf("%s: the writer has a readiness or startup probe: a NATS outage would take the pod out of service; the api's /readyz says whether the writer has caught up", where)
		}
		apiAddr, _ := envValue(a, "API_ADDR")
		ap := addrPort(t, where+" api API_ADDR", apiAddr)
		if ap != 5000 {
			t.Errorf("%s: api listens on %d, want 5000", where, ap)
		}
		checkHTTPProbe(t, where+" api", "liveness", a.LivenessProbe, a, "/healthz", ap)
		checkHTTPProbe(t, where+" api", "readiness", a.ReadinessProbe, a, "/readyz", ap)

		// A Service in front of the api.
		svc := m.service("rowpipe-api")
		if svc == nil {
			t.Fatalf("%s: no Service rowpipe-api", m.dir)
		}
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) || len(svc.Spec.Selector) == 0 {
			t.Errorf("%s: Service rowpipe-api does not select the rowpipe pods", m.dir)
		}
		if len(svc.Spec.Ports) != 1 || portNumber(a, svc.Spec.Ports[0].TargetPort) != ap {
			t.Errorf("%s: Service rowpipe-api does not target the api's port %d", m.dir, ap)
		}
	}
}

// API keys come from a Secret mounted read-only at API_KEYS_FILE. The
// kustomization ships no Secret (re-applying it would overwrite the real
// keys); api-keys.example.yaml shows its shape with a placeholder that
// cannot work.
func TestK8sAPIKeysFromSecret(t *testing.T) {
	example := decodeStrict[corev1.Secret](t, "k8s/base/api-keys.example.yaml", []byte(readFile(t, "k8s/base/api-keys.example.yaml")))
	exampleText := readFile(t, "k8s/base/api-keys.example.yaml")
	if !strings.Contains(exampleText, "openssl rand -hex") || !strings.Contains(exampleText, "kubectl create secret generic "+example.Name) {
		t.Errorf("api-keys.example.yaml does not say how to create the real Secret (kubectl create secret generic %s ... openssl rand -hex 24)", example.Name)
	}
	if len(example.Data) > 0 {
		t.Errorf("api-keys.example.yaml: use stringData only, with no key")
	}
	for k, v := range example.StringData {
		for line := range strings.SplitSeq(v, "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				t.Errorf("api-keys.example.yaml: %s holds a usable key %q: the placeholder must not work", k, l)
			}
		}
	}

	for _, m := range bothBuilds(t) {
		if len(m.secrets) > 0 {
			t.Errorf("%s: the build holds Secret %s: no key ships with rowpipe, and apply -k would overwrite the real one", m.dir, m.secrets[0].Name)
		}
		d := m.deployment(t, "rowpipe")
		where := m.dir + ": Deployment rowpipe api"
		ps := &d.Spec.Template.Spec
		a := container(t, where, ps, "api")
		if v, ok := envValue(a, "API_KEYS"); ok {
			t.Errorf("%s: API_KEYS is set in the manifest (%q): keys come from the Secret file", where, v)
		}
		file, _ := envValue(a, "API_KEYS_FILE")
		vm, v := mountAt(ps, a, file)
		if vm == nil || v == nil || v.Secret == nil {
			t.Fatalf("%s: API_KEYS_FILE %q is not in a mounted Secret", where, file)
		}
		if v.Secret.SecretName != example.Name {
			t.Errorf("%s: mounts Secret %s, the example is %s", where, v.Secret.SecretName, example.Name)
		}
		if !vm.ReadOnly || vm.SubPath != "" {
			t.Errorf("%s: the Secret must be mounted read-only and whole (no subPath, so a rotation reaches the pod)", where)
		}
		rel := strings.TrimPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/")
		found := false
		for _, it := range v.Secret.Items {
			if it.Path == rel {
				found = true
				if _, ok := example.StringData[it.Key]; !ok {
					t.Errorf("%s: Secret key %s is not in the example", where, it.Key)
				}
			}
		}
		if !found {
			t.Errorf("%s: no item of Secret %s lands at %s", where, v.Secret.SecretName, file)
		}
		if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o227 != 0 {
			t.Errorf("%s: the keys file is writable or readable by others; defaultMode 0440", where)
		}
	}
}

// NATS: a StatefulSet on the official image the tests run, JetStream on a
// PVC, its configuration parsed by that nats-server, probes on the
// monitoring port, headless and client Services.
func TestK8sNATS(t *testing.T) {
	for _, m := range bothBuilds(t) {
		s := m.statefulSet(t, "nats")
		where := m.dir + ": StatefulSet nats"
		ps := &s.Spec.Template.Spec
		c := container(t, where, ps, "nats")
		checkNATSImage(t, where, c.Image)

		opts, conf := natsConfigOf(t, m, ps, c)
		checkNATSAuth(t, m.dir+" nats.conf", conf, opts)
		if opts.Port != 4222 || portNumber(c, intstr.FromString("client")) != 4222 {
			t.Errorf("%s: client port %d, want 4222 declared as 'client'", where, opts.Port)
		}
		if int32(opts.HTTPPort) != portNumber(c, intstr.FromString("monitor")) || opts.HTTPPort == 0 {
			t.Errorf("%s: http_port %d is not the declared 'monitor' port", where, opts.HTTPPort)
		}
		for _, p := range []struct {
			kind string
			pr   *corev1.Probe
		}{{"startup", c.StartupProbe}, {"liveness", c.LivenessProbe}, {"readiness", c.ReadinessProbe}} {
			checkHTTPProbe(t, where, p.kind, p.pr, c, "/healthz", int32(opts.HTTPPort))
		}

		// The store is on the PVC.
		vm, _ := mountAt(ps, c, opts.StoreDir)
		if vm == nil || vm.ReadOnly {
			t.Fatalf("%s: store_dir %s is not on a writable mount", where, opts.StoreDir)
		}
		var pvc *corev1.PersistentVolumeClaim
		for i := range s.Spec.VolumeClaimTemplates {
			if s.Spec.VolumeClaimTemplates[i].Name == vm.Name {
				pvc = &s.Spec.VolumeClaimTemplates[i]
			}
		}
		if pvc == nil {
			t.Fatalf("%s: store_dir %s is on %s, which is not a volumeClaimTemplate", where, opts.StoreDir, vm.Name)
		}
		size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
		if opts.JetStreamMaxStore <= 0 || opts.JetStreamMaxStore > size.Value()*9/10 {
			t.Errorf("%s: max_file_store %d does not fit the %s PVC with 10%% spare", where, opts.JetStreamMaxStore, size.String())
		}
		checkNATSLimits(t, where+" nats.conf", opts, streamMaxBytes(t, m))

		// pid_file (for lame duck mode) is on a writable volume.
		if opts.PidFile != "" {
			if vm, v := mountAt(ps, c, opts.PidFile); vm == nil || vm.ReadOnly || v == nil {
				t.Errorf("%s: pid_file %s is not on a writable volume", where, opts.PidFile)
			}
		}
		// Lame duck mode (preStop) ends before Kubernetes kills the pod.
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil ||
			!slices.Contains(c.Lifecycle.PreStop.Exec.Command, "ldm="+opts.PidFile) {
			t.Errorf("%s: no preStop sending lame duck mode to the pid_file %s", where, opts.PidFile)
		} else if grace := time.Duration(*ps.TerminationGracePeriodSeconds) * time.Second; opts.LameDuckDuration+opts.LameDuckGracePeriod >= grace {
			t.Errorf("%s: lame duck %v + %v does not end within terminationGracePeriodSeconds %v", where, opts.LameDuckDuration, opts.LameDuckGracePeriod, grace)
		}
		if !strings.Contains(conf, "$POD_NAME") {
			t.Errorf("%s: server_name is not the pod's name", where)
		}
		if _, ok := envValue(c, "GOMEMLIMIT"); !ok {
			t.Errorf("%s: no GOMEMLIMIT", where)
		}

		// Services: headless (the pods' names, routes) and client.
		hl := m.service(s.Spec.ServiceName)
		if hl == nil || hl.Spec.ClusterIP != corev1.ClusterIPNone || !hl.Spec.PublishNotReadyAddresses {
			t.Errorf("%s: serviceName %s must be a headless Service publishing not-ready addresses", where, s.Spec.ServiceName)
		}
		client := m.service("nats")
		if client == nil || !labels.SelectorFromSet(client.Spec.Selector).Matches(labels.Set(s.Spec.Template.Labels)) || len(client.Spec.Selector) == 0 {
			t.Errorf("%s: no client Service nats selecting the NATS pods", m.dir)
		} else if len(client.Spec.Ports) == 0 || portNumber(c, client.Spec.Ports[0].TargetPort) != 4222 || client.Spec.Ports[0].Port != 4222 {
			t.Errorf("%s: Service nats does not serve 4222", m.dir)
		}
	}
}

// natsConfigOf returns the configuration the NATS container runs with: the
// file its command names, from the ConfigMap mounted there.
func natsConfigOf(t *testing.T, m *manifests, ps *corev1.PodSpec, c *corev1.Container) (*server.Options, string) {
	t.Helper()
	args := append(slices.Clone(c.Command), c.Args...)
	i := slices.Index(args, "--config")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("%s: nats command %v names no --config", m.dir, args)
	}
	file := args[i+1]
	vm, v := mountAt(ps, c, file)
	if vm == nil || v == nil || v.ConfigMap == nil {
		t.Fatalf("%s: %s is not in a mounted ConfigMap", m.dir, file)
	}
	cm := m.configMap(v.ConfigMap.Name)
	if cm == nil {
		t.Fatalf("%s: ConfigMap %s is not in the build", m.dir, v.ConfigMap.Name)
	}
	conf, ok := cm.Data[path.Base(file)]
	if !ok || path.Dir(file) != vm.MountPath {
		t.Fatalf("%s: ConfigMap %s has no %s", m.dir, cm.Name, path.Base(file))
	}
	return parseNATSConfig(t, m.dir+" nats.conf", conf, map[string]string{"POD_NAME": "nats-0"}), conf
}

// streamMaxBytes is the stream size the rowpipe containers ask for.
func streamMaxBytes(t *testing.T, m *manifests) int64 {
	t.Helper()
	n := int64(schema.DefaultStreamMaxBytes)
	for _, p := range m.pods() {
		for i := range p.spec.Containers {
			if v, ok := envValue(&p.spec.Containers[i], "STREAM_MAX_BYTES"); ok {
				b, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatalf("%s: STREAM_MAX_BYTES %q", p.where, v)
				}
				n = max(n, b)
			}
		}
	}
	return n
}

// Only rowpipe pods reach NATS's client port; only NATS pods its route port.
func TestK8sNetworkPolicy(t *testing.T) {
	for _, m := range bothBuilds(t) {
		s := m.statefulSet(t, "nats")
		var np *networkingv1.NetworkPolicy
		for _, p := range m.netpols {
			sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
			if err == nil && !sel.Empty() && sel.Matches(labels.Set(s.Spec.Template.Labels)) {
				np = p
			}
		}
		if np == nil {
			t.Fatalf("%s: no NetworkPolicy selects the NATS pods", m.dir)
		}
		where := m.dir + ": NetworkPolicy " + np.Name
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			t.Errorf("%s: policyTypes lacks Ingress", where)
		}

		// Who may reach a port: every rule must name its peers by pod label
		// in this namespace (no ipBlock, namespaceSelector or open rule).
		allowed := func(port int32, podLabels map[string]string) bool {
			for _, r := range np.Spec.Ingress {
				if !rulePort(r, port) {
					continue
				}
				for _, peer := range r.From {
					sel, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
					if err == nil && peer.PodSelector != nil && sel.Matches(labels.Set(podLabels)) {
						return true
					}
				}
			}
			return false
		}
		for _, r := range np.Spec.Ingress {
			if len(r.From) == 0 || len(r.Ports) == 0 {
				t.Errorf("%s: a rule without from or ports lets everyone in", where)
			}
			for _, peer := range r.From {
				if peer.IPBlock != nil || peer.NamespaceSelector != nil || peer.PodSelector == nil || len(peer.PodSelector.MatchLabels)+len(peer.PodSelector.MatchExpressions) == 0 {
					t.Errorf("%s: a peer %+v is wider than a pod label in this namespace", where, peer)
				}
			}
		}
		for _, p := range m.pods() {
			isNATS := p.where == "StatefulSet nats"
			uses := false
			for i := range p.spec.Containers {
				if u, ok := envValue(&p.spec.Containers[i], "NATS_URL"); ok && strings.Contains(u, ":4222") {
					uses = true
				}
			}
			if uses && !allowed(4222, p.labels) {
				t.Errorf("%s: %s uses NATS but may not reach 4222", where, p.where)
			}
			if !uses && !isNATS && allowed(4222, p.labels) {
				t.Errorf("%s: %s does not use NATS but may reach 4222", where, p.where)
			}
			if isNATS != allowed(6222, p.labels) {
				t.Errorf("%s: %s: route port 6222 is for NATS pods only", where, p.where)
			}
		}
		if allowed(4222, map[string]string{"app.kubernetes.io/name": "something-else"}) {
			t.Errorf("%s: a pod that is not rowpipe's reaches 4222", where)
		}
	}
}

func rulePort(r networkingv1.NetworkPolicyIngressRule, port int32) bool {
	for _, p := range r.Ports {
		if p.Port != nil && p.Port.Type == intstr.Int && p.Port.IntVal == port {
			return true
		}
	}
	return false
}

// PodDisruptionBudgets for the rowpipe pods and NATS that let a drain go on
// (one pod at a time) without taking everything down.
func TestK8sPodDisruptionBudgets(t *testing.T) {
	for _, m := range bothBuilds(t) {
		targets := map[string]struct {
			labels   map[string]string
			replicas int32
		}{
			"Deployment rowpipe": {m.deployment(t, "rowpipe").Spec.Template.Labels, ptrValue(m.deployment(t, "rowpipe").Spec.Replicas, 1)},
			"StatefulSet nats":   {m.statefulSet(t, "nats").Spec.Template.Labels, ptrValue(m.statefulSet(t, "nats").Spec.Replicas, 1)},
		}
		for name, tg := range targets {
			var pdb *policyv1.PodDisruptionBudget
			for _, p := range m.pdbs {
				sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
				if err == nil && !sel.Empty() && sel.Matches(labels.Set(tg.labels)) {
					pdb = p
				}
			}
			if pdb == nil {
				t.Errorf("%s: no PodDisruptionBudget for %s", m.dir, name)
				continue
			}
			if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.MinAvailable != nil {
				t.Errorf("%s: PodDisruptionBudget %s: want maxUnavailable 1 (a drain moves one pod at a time and is never blocked)", m.dir, pdb.Name)
				continue
			}
			left := tg.replicas - 1
			switch {
			case name == "Deployment rowpipe" && left < 1:
				t.Errorf("%s: %s with %d replicas: a drain leaves no api serving", m.dir, name, tg.replicas)
			case name == "StatefulSet nats" && tg.replicas > 1 && left < tg.replicas/2+1:
				t.Errorf("%s: %s with %d nodes: a drain loses the JetStream quorum", m.dir, name, tg.replicas)
			}
		}
	}
}

// The ingester CronJob: one run at a time, bounded, the restricted profile
// (checked above), NATS and the source from configuration.
func TestK8sIngesterCronJob(t *testing.T) {
	for _, m := range bothBuilds(t) {
		cj := m.cronJob(t, "rowpipe-ingest")
		where := m.dir + ": CronJob rowpipe-ingest"
		if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
			t.Errorf("%s: concurrencyPolicy %q, want Forbid (one sync of a dataset at a time)", where, cj.Spec.ConcurrencyPolicy)
		}
		js := cj.Spec.JobTemplate.Spec
		if js.ActiveDeadlineSeconds == nil || js.BackoffLimit == nil {
			t.Errorf("%s: a job needs activeDeadlineSeconds and backoffLimit", where)
		}
		ps := &js.Template.Spec
		if ps.RestartPolicy != corev1.RestartPolicyNever && ps.RestartPolicy != corev1.RestartPolicyOnFailure {
			t.Errorf("%s: restartPolicy %q", where, ps.RestartPolicy)
		}
		c := container(t, where, ps, "ingester")
		if rowpipeService(c.Image) != "ingester" {
			t.Errorf("%s: image %s, want rowpipe/ingester", where, c.Image)
		}
		if !slices.Contains(c.Args, "--wait") {
			t.Errorf("%s: args %v lack --wait (the job must end only once the writer has the generation)", where, c.Args)
		}
		// Every env var taken from a ConfigMap exists there.
		for _, e := range c.Env {
			if e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil {
				continue
			}
			ref := e.ValueFrom.ConfigMapKeyRef
			cm := m.configMap(ref.Name)
			if cm == nil {
				t.Errorf("%s: %s comes from ConfigMap %s, which is not in the build", where, e.Name, ref.Name)
			} else if _, ok := cm.Data[ref.Key]; !ok {
				t.Errorf("%s: ConfigMap %s has no key %s", where, ref.Name, ref.Key)
			}
		}
	}
}

// The base runs one NATS node and an R1 stream; the cluster overlay three
// nodes routed to each other and an R3 stream.
func TestK8sReplicas(t *testing.T) {
	for _, tc := range []struct {
		dir            string
		nodes, streamR int32
	}{{baseDir, 1, 1}, {clusterDir, 3, 3}} {
		m := build(t, tc.dir)
		s := m.statefulSet(t, "nats")
		if got := ptrValue(s.Spec.Replicas, 1); got != tc.nodes {
			t.Errorf("%s: NATS replicas %d, want %d", tc.dir, got, tc.nodes)
		}
		for _, p := range m.pods() {
			for i := range p.spec.Containers {
				c := &p.spec.Containers[i]
				svc := rowpipeService(c.Image)
				if svc != "writer" && svc != "ingester" {
					continue
				}
				if v, _ := envValue(c, "STREAM_REPLICAS"); v != strconv.Itoa(int(tc.streamR)) {
					t.Errorf("%s: %s %s: STREAM_REPLICAS %q, want %d", tc.dir, p.where, c.Name, v, tc.streamR)
				}
			}
		}

		ps := &s.Spec.Template.Spec
		c := container(t, tc.dir, ps, "nats")
		opts, _ := natsConfigOf(t, m, ps, c)
		if tc.nodes == 1 {
			if opts.Cluster.Port != 0 || len(opts.Routes) > 0 {
				t.Errorf("%s: a single node with cluster settings", tc.dir)
			}
			continue
		}
		// Routes: every pod by its stable name under the headless Service.
		if opts.Cluster.Name == "" || int32(opts.Cluster.Port) != portNumber(c, intstr.FromString("cluster")) {
			t.Errorf("%s: cluster name %q port %d; want a name and the declared 'cluster' port", tc.dir, opts.Cluster.Name, opts.Cluster.Port)
		}
		var want, got []string
		for i := range tc.nodes {
			want = append(want, fmt.Sprintf("%s-%d.%s:%d", s.Name, i, s.Spec.ServiceName, opts.Cluster.Port))
		}
		for _, u := range opts.Routes {
			got = append(got, u.Host)
		}
		if !slices.Equal(sortedCopy(got), want) {
			t.Errorf("%s: routes %v, want %v", tc.dir, got, want)
		}
		// One node per Kubernetes node.
		spread := false
		for _, tsc := range ps.TopologySpreadConstraints {
			if tsc.TopologyKey == "kubernetes.io/hostname" && tsc.WhenUnsatisfiable == corev1.DoNotSchedule {
				spread = true
			}
		}
		if !spread {
			t.Errorf("%s: NATS pods are not spread one per node", tc.dir)
		}
		// An R3 stream on three nodes: each node holds a full replica.
		checkNATSLimits(t, tc.dir+" nats.conf", opts, streamMaxBytes(t, m))
	}
}

// Every variable a rowpipe container is given exists in its service's
// Config, and every required one is given.
func TestK8sEnvMatchesConfig(t *testing.T) {
	dollar := regexp.MustCompile(`\$\(([A-Z0-9_]+)\)`)
	for _, m := range bothBuilds(t) {
		for _, p := range m.pods() {
			for i := range p.spec.Containers {
				c := &p.spec.Containers[i]
				svc := rowpipeService(c.Image)
				if svc == "" {
					continue
				}
				if len(c.EnvFrom) > 0 {
					t.Errorf("%s %s: envFrom hides which variables are set; list them in env", p.where, c.Name)
				}
				refs := map[string]bool{}
				for _, a := range append(slices.Clone(c.Command), c.Args...) {
					for _, mm := range dollar.FindAllStringSubmatch(a, -1) {
						refs[mm[1]] = true
					}
				}
				var set []string
				for _, e := range c.Env {
					set = append(set, e.Name)
				}
				checkEnv(t, m.dir+": "+p.where+" container "+c.Name, svc, set, refs)
			}
		}
	}
}

// ptrValue is *p, or def (the API's default) when p is nil.
func ptrValue[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// Each NATS password is a Secret of its own, given only to the container of
// its role (and to NATS); no rendered container of the api holds any NATS
// credential or setting.
func TestK8sNATSCredentialsOnlyWhereNeeded(t *testing.T) {
	roleOf := map[string]natsauth.Role{"writer": natsauth.Writer, "ingester": natsauth.Ingester}
	for _, m := range bothBuilds(t) {
		seen := 0
		for _, p := range m.pods() {
			for i := range p.spec.Containers {
				c := &p.spec.Containers[i]
				where := m.dir + " " + p.where + " container " + c.Name
				refs := secretRefs(p.spec, c)
				switch c.Name {
				case "nats":
					for _, r := range natsauth.Roles {
						ev := containerEnv(c, r.PasswordVar())
						if ev == nil || ev.ValueFrom == nil || ev.ValueFrom.SecretKeyRef == nil || ev.ValueFrom.SecretKeyRef.Name != "rowpipe-nats-"+string(r) {
							t.Errorf("%s: %s is not from Secret rowpipe-nats-%s", where, r.PasswordVar(), r)
						}
					}
				case "writer", "ingester":
					role := roleOf[c.Name]
					seen++
					if u, _ := envValue(c, "NATS_USER"); u != string(role) {
						t.Errorf("%s: NATS_USER %q, want %s", where, u, role)
					}
					ev := containerEnv(c, "NATS_PASSWORD")
					if ev == nil || ev.ValueFrom == nil || ev.ValueFrom.SecretKeyRef == nil || ev.ValueFrom.SecretKeyRef.Name != "rowpipe-nats-"+string(role) {
						t.Errorf("%s: NATS_PASSWORD is not from Secret rowpipe-nats-%s", where, role)
					}
					if len(refs) != 1 {
						t.Errorf("%s: Secrets %v, want only rowpipe-nats-%s", where, refs, role)
					}
				default:
					for _, ev := range c.Env {
						if strings.HasPrefix(ev.Name, "NATS_") {
							t.Errorf("%s: %s: this container must hold no NATS setting or credential", where, ev.Name)
						}
					}
					if len(c.EnvFrom) > 0 {
						t.Errorf("%s: envFrom %+v could bring NATS credentials", where, c.EnvFrom)
					}
					for _, ref := range refs {
						if strings.HasPrefix(ref, "rowpipe-nats-") {
							t.Errorf("%s: Secret %s is a NATS credential", where, ref)
						}
					}
				}
			}
		}
		if seen != 2 {
			t.Errorf("%s: %d writer and ingester containers, want 2", m.dir, seen)
		}
	}
}

func containerEnv(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// secretRefs are the Secrets a container reads, by env or by mount.
func secretRefs(ps *corev1.PodSpec, c *corev1.Container) []string {
	var refs []string
	for _, ev := range c.Env {
		if ev.ValueFrom != nil && ev.ValueFrom.SecretKeyRef != nil {
			refs = append(refs, ev.ValueFrom.SecretKeyRef.Name)
		}
	}
	for _, ef := range c.EnvFrom {
		if ef.SecretRef != nil {
			refs = append(refs, ef.SecretRef.Name)
		}
	}
	for _, vm := range c.VolumeMounts {
		for _, v := range ps.Volumes {
			if v.Name == vm.Name && v.Secret != nil {
				refs = append(refs, v.Secret.SecretName)
			}
		}
	}
	slices.Sort(refs)
	return slices.Compact(refs)
}
