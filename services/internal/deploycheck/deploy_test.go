package deploycheck_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/gateway"
	"github.com/orderflow/orderflow/services/internal/deploycheck"
	"github.com/orderflow/orderflow/services/internal/serve"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
	"github.com/orderflow/orderflow/services/internal/telemetry"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// repoRoot is the module's root directory (the one holding go.mod).
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func deployDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(repoRoot(t), "deploy")
}

// wantPorts is every process's port as the code has it.
func wantPorts() map[string]int {
	ports := map[string]int{"gateway": gateway.DefaultPort}
	for _, m := range serve.Modules() {
		ports[m.Name] = m.Port
	}
	return ports
}

// base decodes the kustomize base: its kustomization and every resource
// it lists.
func base(t testing.TB) (*deploycheck.Kustomization, []deploycheck.Object) {
	t.Helper()
	dir := filepath.Join(deployDir(t), "k8s", "base")
	k, err := deploycheck.LoadKustomization(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := deploycheck.LoadObjects(dir, k.Resources)
	if err != nil {
		t.Fatal(err)
	}
	return k, objs
}

func objectsOf[T any](objs []deploycheck.Object) map[string]*T {
	out := map[string]*T{}
	for _, o := range objs {
		if v, ok := o.Value.(*T); ok {
			out[o.Name()] = v
		}
	}
	return out
}

// TestDecodeObjectIsStrict: what every other test relies on, that a
// misspelt or misplaced field, a wrong type or an unknown kind is an
// error rather than silently dropped.
func TestDecodeObjectIsStrict(t *testing.T) {
	tests := []struct {
		name, doc string
		wantErr   bool
	}{
		{"valid", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {A: b}\n", false},
		{"unknown field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndatas: {A: b}\n", true},
		{"field at the wrong level", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: 1, containers: []}\n", true},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two}\n", true},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nmetadata: {name: y}\n", true},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", true},
		{"wrong version", "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: x}\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := deploycheck.DecodeObject([]byte(tt.doc))
			if (err != nil) != tt.wantErr {
				t.Fatalf("DecodeObject: err %v, want error %v", err, tt.wantErr)
			}
		})
	}
	if _, _, err := deploycheck.DecodeObject([]byte("apiVersion: v1\nkind: Pod\n")); !errors.Is(err, deploycheck.ErrUnknownKind) {
		t.Errorf("Pod: %v, want ErrUnknownKind", err)
	}
}

// TestBaseHasEveryProcess: each process has exactly one Deployment,
// Service, HorizontalPodAutoscaler, PodDisruptionBudget and NetworkPolicy,
// they point at each other, and every object decodes strictly (base
// fails the test otherwise).
func TestBaseHasEveryProcess(t *testing.T) {
	_, objs := base(t)
	deps := objectsOf[appsv1.Deployment](objs)
	svcs := objectsOf[corev1.Service](objs)
	hpas := objectsOf[autoscalingv2.HorizontalPodAutoscaler](objs)
	pdbs := objectsOf[policyv1.PodDisruptionBudget](objs)
	pols := objectsOf[networkingv1.NetworkPolicy](objs)
	for name := range wantPorts() {
		t.Run(name, func(t *testing.T) {
			d, ok := deps[name]
			if !ok {
				t.Fatalf("no Deployment %s", name)
			}
			podLabels := labels.Set(d.Spec.Template.Labels)
			sel, err := metav1LabelSelector(d.Spec.Selector.MatchLabels)
			if err != nil || !sel.Matches(podLabels) {
				t.Errorf("Deployment %s: selector %v does not match its pods' labels %v", name, d.Spec.Selector.MatchLabels, podLabels)
			}
			if s, ok := svcs[name]; !ok {
				t.Errorf("no Service %s", name)
			} else if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
				t.Errorf("Service %s: selector %v misses the Deployment's pods", name, s.Spec.Selector)
			}
			if h, ok := hpas[name]; !ok {
				t.Errorf("no HorizontalPodAutoscaler %s", name)
			} else if ref := h.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != name || ref.APIVersion != "apps/v1" {
				t.Errorf("HorizontalPodAutoscaler %s scales %+v, want its Deployment", name, ref)
			} else if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
				t.Errorf("HorizontalPodAutoscaler %s: min %v max %d, want at least 2 replicas", name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
			}
			if p, ok := pdbs[name]; !ok {
				t.Errorf("no PodDisruptionBudget %s", name)
			} else if p.Spec.Selector == nil || !labels.SelectorFromSet(p.Spec.Selector.MatchLabels).Matches(podLabels) {
				t.Errorf("PodDisruptionBudget %s misses the Deployment's pods", name)
			}
			if p, ok := pols[name]; !ok {
				t.Errorf("no NetworkPolicy %s", name)
			} else if !labels.SelectorFromSet(p.Spec.PodSelector.MatchLabels).Matches(podLabels) {
				t.Errorf("NetworkPolicy %s misses the Deployment's pods", name)
			}
		})
	}
}

func metav1LabelSelector(m map[string]string) (labels.Selector, error) {
	if len(m) == 0 {
		return nil, errors.New("empty selector")
	}
	return labels.SelectorFromSet(m), nil
}

// container is the orderflow container of a Deployment.
func container(t testing.TB, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		if deploycheck.ImageRepository(c.Image) == deploycheck.Image {
			return c
		}
	}
	t.Fatalf("Deployment %s: no container of image %s", d.Name, deploycheck.Image)
	return corev1.Container{}
}

// TestDeploymentsRunTheRightProcess: each Deployment runs `serve NAME`
// of the project's image, listens on the port the code gives NAME, probes
// it, limits its resources and runs as non-root on a read-only root.
func TestDeploymentsRunTheRightProcess(t *testing.T) {
	_, objs := base(t)
	deps := objectsOf[appsv1.Deployment](objs)
	svcs := objectsOf[corev1.Service](objs)
	for name, port := range wantPorts() {
		t.Run(name, func(t *testing.T) {
			d, ok := deps[name]
			if !ok {
				t.Fatalf("no Deployment %s", name)
			}
			c := container(t, d)
			if want := []string{"serve", name}; !slices.Equal(c.Args, want) {
				t.Errorf("args %q, want %q", c.Args, want)
			}
			if len(c.Ports) != 1 || int(c.Ports[0].ContainerPort) != port {
				t.Errorf("container ports %+v, want %d (the code's port of %s)", c.Ports, port, name)
			}
			if s := svcs[name]; s == nil || len(s.Spec.Ports) != 1 || int(s.Spec.Ports[0].Port) != port {
				t.Errorf("Service %s: ports %+v, want %d", name, s.Spec.Ports, port)
			}
			for what, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
				if p == nil || p.HTTPGet == nil {
					t.Errorf("%s probe: want an HTTP GET", what)
					continue
				}
				if pp := p.HTTPGet.Port; pp.StrVal != c.Ports[0].Name && int(pp.IntVal) != port {
					t.Errorf("%s probe: port %s, want the container's", what, pp.String())
				}
			}
			if c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Errorf("readiness probe on %s, want /readyz", c.ReadinessProbe.HTTPGet.Path)
			}
			if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Errorf("liveness probe on %s, want /healthz (a liveness probe on readiness restarts a process whose database is away)", c.LivenessProbe.HTTPGet.Path)
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					t.Errorf("no %s request", r)
				}
			}
			if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
				t.Error("no memory limit")
			}
			pod := d.Spec.Template.Spec.SecurityContext
			if pod == nil || pod.RunAsNonRoot == nil || !*pod.RunAsNonRoot || pod.RunAsUser == nil || *pod.RunAsUser == 0 {
				t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", pod)
			}
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("container securityContext %+v: want a read-only root, no privilege escalation, all capabilities dropped", sc)
			}
		})
	}
}

// TestNetworkPolicies: only the gateway (and Prometheus, from the
// monitoring namespace) reaches a service; a service reaches only NATS,
// its own database and DNS; everything else is denied by default.
func TestNetworkPolicies(t *testing.T) {
	_, objs := base(t)
	pols := objectsOf[networkingv1.NetworkPolicy](objs)
	deny, ok := pols["default-deny"]
	if !ok || len(deny.Spec.PodSelector.MatchLabels) != 0 || len(deny.Spec.Ingress) != 0 || len(deny.Spec.Egress) != 0 ||
		!slices.Contains(deny.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(deny.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Fatalf("want a NetworkPolicy default-deny selecting every pod with no rule, got %+v", deny)
	}
	isGateway := func(p networkingv1.NetworkPolicyPeer) bool {
		return p.NamespaceSelector == nil && p.PodSelector != nil && p.PodSelector.MatchLabels["app.kubernetes.io/name"] == "gateway"
	}
	isMonitoring := func(p networkingv1.NetworkPolicyPeer) bool {
		return p.PodSelector == nil && p.NamespaceSelector != nil && p.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "monitoring"
	}
	isDNS := func(p networkingv1.NetworkPolicyPeer) bool {
		return p.PodSelector != nil && p.PodSelector.MatchLabels["k8s-app"] == "kube-dns"
	}
	for _, m := range serve.Modules() {
		t.Run(m.Name, func(t *testing.T) {
			p, ok := pols[m.Name]
			if !ok {
				t.Fatalf("no NetworkPolicy %s", m.Name)
			}
			if len(p.Spec.PolicyTypes) != 2 {
				t.Errorf("policyTypes %v, want Ingress and Egress", p.Spec.PolicyTypes)
			}
			for _, r := range p.Spec.Ingress {
				if len(r.From) == 0 {
					t.Errorf("an ingress rule admits every source")
				}
				for _, from := range r.From {
					if !isGateway(from) && !isMonitoring(from) {
						t.Errorf("ingress from %+v: only the gateway and the monitoring namespace may reach %s", from, m.Name)
					}
				}
				for _, port := range r.Ports {
					if port.Port == nil || port.Port.IntValue() != m.Port {
						t.Errorf("ingress port %v, want %d", port.Port, m.Port)
					}
				}
			}
			for _, r := range p.Spec.Egress {
				if len(r.To) == 0 {
					t.Errorf("an egress rule admits every destination")
				}
				for _, to := range r.To {
					switch {
					case isDNS(to):
					case to.PodSelector != nil && to.NamespaceSelector == nil && to.PodSelector.MatchLabels["app.kubernetes.io/name"] == "nats":
					case to.PodSelector != nil && to.NamespaceSelector == nil && len(to.PodSelector.MatchLabels) == 1 && to.PodSelector.MatchLabels["orderflow.io/database"] == m.Name:
					default:
						t.Errorf("egress to %+v: %s may reach only NATS, its own database and DNS", to, m.Name)
					}
				}
			}
		})
	}
	gw, ok := pols["gateway"]
	if !ok {
		t.Fatal("no NetworkPolicy gateway")
	}
	reached := map[string]int{}
	for _, r := range gw.Spec.Egress {
		for _, to := range r.To {
			if to.PodSelector == nil {
				continue
			}
			for _, port := range r.Ports {
				reached[to.PodSelector.MatchLabels["app.kubernetes.io/name"]] = port.Port.IntValue()
			}
		}
	}
	for _, m := range serve.Modules() {
		if reached[m.Name] != m.Port {
			t.Errorf("the gateway's egress reaches %s on %d, want %d", m.Name, reached[m.Name], m.Port)
		}
	}
}

// TestOverlays: each overlay builds on the base, names the project's
// image, and its inline patches decode strictly into the kinds they
// target (a patch with a misspelt field would otherwise add nothing).
func TestOverlays(t *testing.T) {
	for _, overlay := range []string{"dev", "prod"} {
		t.Run(overlay, func(t *testing.T) {
			dir := filepath.Join(deployDir(t), "k8s", "overlays", overlay)
			k, err := deploycheck.LoadKustomization(filepath.Join(dir, "kustomization.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(k.Resources, "../../base") {
				t.Errorf("resources %v: want ../../base", k.Resources)
			}
			if len(k.Images) != 1 || k.Images[0].Name != deploycheck.Image || k.Images[0].NewTag == "" {
				t.Errorf("images %+v: want %s with a tag", k.Images, deploycheck.Image)
			}
			if len(k.Patches) == 0 {
				t.Error("no patches")
			}
			_, objs := base(t)
			for i, p := range k.Patches {
				kind, v, err := deploycheck.DecodeObject([]byte(p.Patch))
				if err != nil {
					t.Errorf("patch %d: %v", i, err)
					continue
				}
				if !strings.HasSuffix(kind, "/"+p.Target.Kind) {
					t.Errorf("patch %d is a %s, its target a %s", i, kind, p.Target.Kind)
				}
				matched := 0
				for _, o := range objs {
					if strings.HasSuffix(o.Kind, "/"+p.Target.Kind) && (p.Target.Name == "" || o.Name() == p.Target.Name) {
						matched++
					}
				}
				if matched == 0 {
					t.Errorf("patch %d targets %+v, which no base object is", i, p.Target)
				}
				if d, ok := v.(*appsv1.Deployment); ok {
					for _, c := range d.Spec.Template.Spec.Containers {
						if !slices.Contains(slices.Collect(maps.Keys(wantPorts())), c.Name) {
							t.Errorf("patch %d: container %s is no process's", i, c.Name)
						}
					}
				}
			}
		})
	}
}

// TestBaseKustomization lists every manifest of the base directory and
// names the image the Deployments use.
func TestBaseKustomization(t *testing.T) {
	k, objs := base(t)
	dir := filepath.Join(deployDir(t), "k8s", "base")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if name := filepath.Base(f); name != "kustomization.yaml" && !slices.Contains(k.Resources, name) {
			t.Errorf("%s is not among the base's resources", name)
		}
	}
	if k.Namespace == "" {
		t.Error("the base sets no namespace")
	}
	if len(k.Images) != 1 || k.Images[0].Name != deploycheck.Image {
		t.Errorf("images %+v: want %s", k.Images, deploycheck.Image)
	}
	for name, d := range objectsOf[appsv1.Deployment](objs) {
		if img := container(t, d).Image; img != deploycheck.Image {
			t.Errorf("Deployment %s: image %s, want %s untagged (the overlays set the tag)", name, img, deploycheck.Image)
		}
	}
}

// envRef matches a $(NAME) reference of one container variable to
// another, which Kubernetes expands.
var envRef = regexp.MustCompile(`\$\(([A-Z_][A-Z0-9_]*)\)`)

// k8sEnv lists, per process, the environment variables its container
// gets: its env entries and the keys of the ConfigMaps and Secrets it
// takes whole. Variables that exist only to be expanded into another
// (POD_IP into ADVERTISE_URL) are left out.
func k8sEnv(t testing.TB, objs []deploycheck.Object) map[string][]string {
	t.Helper()
	cms := objectsOf[corev1.ConfigMap](objs)
	secrets := objectsOf[corev1.Secret](objs)
	out := map[string][]string{}
	for name, d := range objectsOf[appsv1.Deployment](objs) {
		c := container(t, d)
		referenced := map[string]bool{}
		for _, e := range c.Env {
			for _, m := range envRef.FindAllStringSubmatch(e.Value, -1) {
				referenced[m[1]] = true
			}
		}
		var names []string
		for _, e := range c.Env {
			if !referenced[e.Name] {
				names = append(names, e.Name)
			}
		}
		for _, from := range c.EnvFrom {
			switch {
			case from.ConfigMapRef != nil:
				cm, ok := cms[from.ConfigMapRef.Name]
				if !ok {
					t.Errorf("Deployment %s: no ConfigMap %s", name, from.ConfigMapRef.Name)
					continue
				}
				names = append(names, slices.Collect(maps.Keys(cm.Data))...)
			case from.SecretRef != nil:
				s, ok := secrets[from.SecretRef.Name]
				if !ok {
					t.Errorf("Deployment %s: no Secret %s", name, from.SecretRef.Name)
					continue
				}
				names = append(names, slices.Collect(maps.Keys(s.StringData))...)
				names = append(names, slices.Collect(maps.Keys(s.Data))...)
			}
		}
		slices.Sort(names)
		out[name] = names
	}
	return out
}

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// binary builds the orderflow command once per test binary.
func binary(t testing.TB) string {
	t.Helper()
	binaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "deploycheck")
		if err != nil {
			binaryErr = err
			return
		}
		testenv.AtExit(func() { _ = os.RemoveAll(dir) })
		binaryPath = filepath.Join(dir, "orderflow")
		// go test puts its own toolchain first on PATH.
		goCmd, err := exec.LookPath("go")
		if err != nil {
			binaryErr = err
			return
		}
		cmd := exec.Command(goCmd, "build", "-o", binaryPath, "github.com/orderflow/orderflow/services/cmd/orderflow")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			binaryErr = errors.New(string(out))
		}
	})
	if binaryErr != nil {
		t.Fatalf("build orderflow: %v", binaryErr)
	}
	return binaryPath
}

// envInUsage matches the "(env NAME" of a flag's usage line.
var envInUsage = regexp.MustCompile(`\benv ([A-Z][A-Z0-9_]*)`)

// readEnv lists the environment variables `orderflow serve` reads: those
// its usage names, those the tracing setup reads, and those the Go
// runtime reads.
func readEnv(t testing.TB) map[string]bool {
	t.Helper()
	cmd := exec.Command(binary(t), "serve", "-h")
	out, _ := cmd.CombinedOutput() // -h exits non-zero; the usage is what counts
	read := map[string]bool{}
	for _, m := range envInUsage.FindAllStringSubmatch(string(out), -1) {
		read[m[1]] = true
	}
	if len(read) < 5 {
		t.Fatalf("orderflow serve -h names %d environment variables; the usage format changed?\n%s", len(read), out)
	}
	for _, name := range []string{telemetry.EnvEndpoint, telemetry.EnvTracesEndpoint, telemetry.EnvProtocol,
		telemetry.EnvTracesProtocol, telemetry.EnvTracesExporter, telemetry.EnvSDKDisabled,
		"GOGC", "GOMEMLIMIT", "GOMAXPROCS"} {
		read[name] = true
	}
	return read
}

// TestEnvNamesAreRead: every environment variable the manifests and the
// compose file give an orderflow process is one the binary reads; a
// misspelt one would be ignored in silence.
func TestEnvNamesAreRead(t *testing.T) {
	read := readEnv(t)
	_, objs := base(t)
	for name, vars := range k8sEnv(t, objs) {
		if len(vars) == 0 {
			t.Errorf("k8s %s: no environment at all", name)
		}
		for _, v := range vars {
			if !read[v] {
				t.Errorf("k8s Deployment %s: env %s is read by no part of orderflow serve", name, v)
			}
		}
	}
	c := loadCompose(t)
	for name, s := range c.Services {
		if deploycheck.ImageRepository(s.Image) != deploycheck.Image {
			continue
		}
		for v := range s.Environment {
			if !read[v] {
				t.Errorf("compose service %s: env %s is read by no part of orderflow serve", name, v)
			}
		}
	}
	// Needed settings are there: a service without its database or the
	// gateway without its secret does not start.
	env := k8sEnv(t, objs)
	for _, m := range serve.Modules() {
		for _, v := range []string{"DATABASE_URL", "OWNER_DATABASE_URL", "NATS_URL"} {
			if !slices.Contains(env[m.Name], v) {
				t.Errorf("k8s %s: no %s", m.Name, v)
			}
		}
	}
	if !slices.Contains(env["gateway"], "ORDERFLOW_JWT_SECRET") {
		t.Error("k8s gateway: no ORDERFLOW_JWT_SECRET")
	}
}

func loadCompose(t testing.TB) *deploycheck.Compose {
	t.Helper()
	c, err := deploycheck.LoadCompose(filepath.Join(deployDir(t), "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestComposeMatchesTheCode: compose runs every process with the
// project's image, on its port, and the infrastructure the issue asks
// for is there.
func TestComposeMatchesTheCode(t *testing.T) {
	c := loadCompose(t)
	for name, port := range wantPorts() {
		t.Run(name, func(t *testing.T) {
			s, ok := c.Services[name]
			if !ok {
				t.Fatalf("no compose service %s", name)
			}
			if deploycheck.ImageRepository(s.Image) != deploycheck.Image {
				t.Errorf("image %s, want %s", s.Image, deploycheck.Image)
			}
			if s.Build == nil || s.Build.Dockerfile != "deploy/Dockerfile" {
				t.Errorf("build %+v: want deploy/Dockerfile", s.Build)
			}
			if want := []string{"serve", name}; !slices.Equal(s.Command, want) {
				t.Errorf("command %q, want %q", s.Command, want)
			}
			p := strconv.Itoa(port)
			if !slices.Contains(s.Ports, p+":"+p) {
				t.Errorf("ports %q: want %s:%s", s.Ports, p, p)
			}
			if adv := s.Environment["ADVERTISE_URL"]; !strings.HasSuffix(adv, ":"+p) {
				t.Errorf("ADVERTISE_URL %q: want port %s", adv, p)
			}
			if s.User == "" || s.User == "0" || strings.HasPrefix(s.User, "root") {
				t.Errorf("user %q: want a non-root user", s.User)
			}
		})
	}
	for _, m := range serve.Modules() {
		u := c.Services["gateway"].Environment[strings.ToUpper(m.Name)+"_URL"]
		if want := "http://" + m.Name + ":" + strconv.Itoa(m.Port); u != want {
			t.Errorf("gateway %s_URL %q, want %s", strings.ToUpper(m.Name), u, want)
		}
	}
	nats := 0
	for name, s := range c.Services {
		if strings.HasPrefix(s.Image, "nats:") {
			nats++
			if !slices.Contains(s.Command, "--jetstream") || !slices.Contains(s.Command, "--routes") {
				t.Errorf("NATS %s: want JetStream and cluster routes, got %q", name, s.Command)
			}
		}
	}
	if nats != 3 {
		t.Errorf("%d NATS nodes, want a 3-node cluster", nats)
	}
	for _, want := range []string{"postgres", "kurrentdb", "prometheus", "grafana", "otel-collector", "jaeger"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("no compose service %s", want)
		}
	}
}

// TestDockerfile: the image is built from the command's package, static,
// and run as a non-root user.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var froms, users []string
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			froms = append(froms, fields[1])
		case "USER":
			users = append(users, fields[1])
		}
	}
	if len(froms) < 2 {
		t.Errorf("FROM %q: want a multi-stage build", froms)
	}
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1], "0") || strings.HasPrefix(users[len(users)-1], "root") {
		t.Errorf("USER %q: the runtime stage must run as a non-root user", users)
	}
	text := string(data)
	for _, want := range []string{"CGO_ENABLED=0", "./services/cmd/orderflow", "-t " + deploycheck.Image + ":"} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

// alertExprs and dashboardExprs are the PromQL expressions of the alert
// rules and of the dashboard's panels.
func alertExprs(t testing.TB) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir(t), "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for,omitempty"`
				Labels      map[string]string `json:"labels,omitempty"`
				Annotations map[string]string `json:"annotations,omitempty"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(data, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	out := map[string]string{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v: want alert, expr and a summary", r)
			}
			out["alert "+r.Alert] = r.Expr
		}
	}
	return out
}

func dashboardExprs(t testing.TB) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir(t), "grafana", "dashboards", "orderflow.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out["panel "+p.Title+" "+tg.RefID] = tg.Expr
		}
	}
	if d.UID == "" || len(out) == 0 {
		t.Fatalf("dashboard: uid %q, %d queries", d.UID, len(out))
	}
	return out
}

// TestAlertsAndDashboardNameRealMetrics: every orderflow metric an alert
// rule or a dashboard panel queries is one the code registers, and the
// alerts the issue asks for are there.
func TestAlertsAndDashboardNameRealMetrics(t *testing.T) {
	known, err := deploycheck.RegisteredMetrics(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(known) < 20 {
		t.Fatalf("found %d metric names in the code; the scan is broken", len(known))
	}
	exprs := alertExprs(t)
	maps.Copy(exprs, dashboardExprs(t))
	used := map[string]bool{}
	for where, expr := range exprs {
		names := deploycheck.MetricNames(expr, known)
		if len(names) == 0 {
			t.Errorf("%s: %q queries no orderflow metric", where, expr)
		}
		for _, n := range names {
			used[n] = true
			if !known[n] {
				t.Errorf("%s: metric %s is registered nowhere in the code", where, n)
			}
		}
	}
	for _, want := range []string{"orderflow_sagas", "orderflow_saga_events_parked_total", "orderflow_relay_parked_total",
		"orderflow_projection_parked_events", "orderflow_relay_lag", "orderflow_projection_lag", "orderflow_gateway_circuit_breaker_state"} {
		if !used[want] {
			t.Errorf("no alert or panel on %s", want)
		}
	}
}

// TestPrometheusScrapesEveryProcess: one job per process, on its port
// and the metrics path.
func TestPrometheusScrapesEveryProcess(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir(t), "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Global     map[string]string `json:"global"`
		RuleFiles  []string          `json:"rule_files"`
		ScrapeCfgs []struct {
			JobName       string `json:"job_name"`
			MetricsPath   string `json:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	got := map[string]string{}
	for _, sc := range cfg.ScrapeCfgs {
		if sc.MetricsPath != "/metrics" {
			t.Errorf("job %s: metrics_path %q", sc.JobName, sc.MetricsPath)
		}
		for _, s := range sc.StaticConfigs {
			for _, target := range s.Targets {
				got[sc.JobName] = target
			}
		}
	}
	for name, port := range wantPorts() {
		if want := name + ":" + strconv.Itoa(port); got[name] != want {
			t.Errorf("job %s scrapes %q, want %s", name, got[name], want)
		}
	}
}

// probePaths are the paths the Deployments' probes ask, by process.
func probePaths(t testing.TB) map[string][]string {
	t.Helper()
	_, objs := base(t)
	out := map[string][]string{}
	for name, d := range objectsOf[appsv1.Deployment](objs) {
		c := container(t, d)
		for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
			if p != nil && p.HTTPGet != nil && !slices.Contains(out[name], p.HTTPGet.Path) {
				out[name] = append(out[name], p.HTTPGet.Path)
			}
		}
	}
	return out
}

// get answers GET url's status and body, asking again while the answer
// is 503 and the deadline has not passed: a process's readiness waits for
// its first connections. Any other answer is final.
func get(t testing.TB, url string, within time.Duration) (int, string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		res, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return res.StatusCode, string(body)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-t.Context().Done():
			return res.StatusCode, string(body)
		}
	}
}

// TestProbesAndMetricsOnRunningProcesses runs every service (real
// PostgreSQL and NATS) and a gateway in front of them, asks each the
// paths its Deployment's probes ask and its metrics path, and checks
// that the alert and dashboard metrics of each process family turn up in
// a real scrape where the process exports them from the start.
func TestProbesAndMetricsOnRunningProcesses(t *testing.T) {
	probes := probePaths(t)
	natsURL := testenv.NATS(t)
	urls := map[string]string{}
	scraped := map[string]bool{}
	for _, m := range serve.Modules() {
		env := servetest.Start(t, m.Name, func(c *serve.Config) { c.NATSURL = natsURL })
		urls[m.Name] = env.URL
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg := gateway.Config{
		Upstreams: map[string][]string{},
		JWTSecret: []byte("deploycheck-secret-of-at-least-32-bytes!"),
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for name, u := range urls {
		cfg.Upstreams[name] = []string{u}
	}
	gw, err := gateway.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Close)
	hs := httptest.NewServer(gw.Handler())
	t.Cleanup(hs.Close)
	urls["gateway"] = hs.URL

	for name, u := range urls {
		paths := probes[name]
		if len(paths) == 0 {
			t.Errorf("%s: its Deployment probes nothing", name)
		}
		for _, p := range paths {
			if status, body := get(t, u+p, 30*time.Second); status != http.StatusOK {
				t.Errorf("%s: GET %s (a probe of its Deployment): %d %s", name, p, status, body)
			}
		}
		status, body := get(t, u+"/metrics", 10*time.Second)
		if status != http.StatusOK {
			t.Fatalf("%s: GET /metrics: %d", name, status)
		}
		for line := range strings.Lines(body) {
			if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
				scraped[strings.Fields(rest)[0]] = true
			}
		}
	}
	// The gauges the alerts page on are exported by a fresh process: a
	// scrape that lacks one means the rule can never fire.
	for _, want := range []string{"orderflow_relay_lag", "orderflow_relay_active", "orderflow_projection_lag",
		"orderflow_projection_parked_events", "orderflow_relay_parked_total", "orderflow_saga_events_parked_total",
		"orderflow_command_consumer_parked_total", "orderflow_gateway_circuit_breaker_state", "orderflow_sagas"} {
		if !scraped[want] {
			t.Errorf("no running process exports %s", want)
		}
	}
}

// readYAML decodes a deploy file strictly into v.
func readYAML(t testing.TB, rel string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// mounts maps a compose service's container paths to the host paths
// mounted there.
func mounts(s deploycheck.ComposeService) map[string]string {
	out := map[string]string{}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 {
			out[parts[1]] = parts[0]
		}
	}
	return out
}

// TestObservabilityWiring: the pieces around the services point at each
// other: Prometheus loads the rules file compose mounts, Grafana's
// dashboard queries the datasource it provisions from the directory
// compose mounts, the services send traces where the collector listens,
// the collector sends them to the Jaeger of the stack, and the NATS
// chart's values ask for a 3-node JetStream cluster.
func TestObservabilityWiring(t *testing.T) {
	c := loadCompose(t)

	var prom struct {
		RuleFiles []string `json:"rule_files"`
	}
	data, err := os.ReadFile(filepath.Join(deployDir(t), "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &prom); err != nil {
		t.Fatal(err)
	}
	pm := mounts(c.Services["prometheus"])
	for _, f := range prom.RuleFiles {
		if pm[f] != "./prometheus/"+filepath.Base(f) {
			t.Errorf("prometheus rule file %s: compose mounts %q there", f, pm[f])
		}
	}
	if len(prom.RuleFiles) == 0 {
		t.Error("prometheus loads no rule file")
	}

	var ds struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name      string `json:"name"`
			UID       string `json:"uid"`
			Type      string `json:"type"`
			Access    string `json:"access"`
			URL       string `json:"url"`
			IsDefault bool   `json:"isDefault"`
		} `json:"datasources"`
	}
	readYAML(t, "grafana/provisioning/datasources/prometheus.yaml", &ds)
	var providers struct {
		APIVersion int `json:"apiVersion"`
		Providers  []struct {
			Name            string `json:"name"`
			Folder          string `json:"folder"`
			Type            string `json:"type"`
			DisableDeletion bool   `json:"disableDeletion"`
			Options         struct {
				Path string `json:"path"`
			} `json:"options"`
		} `json:"providers"`
	}
	readYAML(t, "grafana/provisioning/dashboards/orderflow.yaml", &providers)
	gm := mounts(c.Services["grafana"])
	if len(providers.Providers) != 1 || gm[providers.Providers[0].Options.Path] != "./grafana/dashboards" {
		t.Errorf("grafana dashboard provider %+v: compose mounts %v", providers.Providers, gm)
	}
	var dash struct {
		Panels []struct {
			Title      string `json:"title"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"panels"`
	}
	raw, err := os.ReadFile(filepath.Join(deployDir(t), "grafana", "dashboards", "orderflow.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	if len(ds.Datasources) != 1 || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Fatalf("grafana datasources %+v: want the stack's Prometheus", ds.Datasources)
	}
	for _, p := range dash.Panels {
		if p.Datasource.UID != ds.Datasources[0].UID {
			t.Errorf("panel %q queries datasource %q, grafana provisions %q", p.Title, p.Datasource.UID, ds.Datasources[0].UID)
		}
	}

	var otel struct {
		Receivers struct {
			OTLP struct {
				Protocols struct {
					HTTP struct {
						Endpoint string `json:"endpoint"`
					} `json:"http"`
				} `json:"protocols"`
			} `json:"otlp"`
		} `json:"receivers"`
		Processors map[string]map[string]any `json:"processors"`
		Exporters  map[string]struct {
			Endpoint string `json:"endpoint"`
			TLS      struct {
				Insecure bool `json:"insecure"`
			} `json:"tls"`
		} `json:"exporters"`
		Service struct {
			Pipelines map[string]struct {
				Receivers  []string `json:"receivers"`
				Processors []string `json:"processors"`
				Exporters  []string `json:"exporters"`
			} `json:"pipelines"`
		} `json:"service"`
	}
	readYAML(t, "otel/collector.yaml", &otel)
	_, port, _ := strings.Cut(otel.Receivers.OTLP.Protocols.HTTP.Endpoint, ":")
	for name := range wantPorts() {
		if ep := c.Services[name].Environment["OTEL_EXPORTER_OTLP_ENDPOINT"]; ep != "http://otel-collector:"+port {
			t.Errorf("compose %s sends traces to %q, the collector listens on OTLP/HTTP port %q", name, ep, port)
		}
	}
	traces, ok := otel.Service.Pipelines["traces"]
	if !ok || len(traces.Exporters) == 0 {
		t.Fatalf("collector: no traces pipeline with an exporter: %+v", otel.Service.Pipelines)
	}
	for _, e := range traces.Exporters {
		host, _, _ := strings.Cut(otel.Exporters[e].Endpoint, ":")
		if _, ok := c.Services[host]; !ok || host != "jaeger" {
			t.Errorf("collector exporter %s sends to %q, want the stack's jaeger", e, otel.Exporters[e].Endpoint)
		}
	}
	for _, p := range traces.Processors {
		if _, ok := otel.Processors[p]; !ok {
			t.Errorf("collector pipeline uses processor %s it does not define", p)
		}
	}

	var nats struct {
		Config struct {
			Cluster struct {
				Enabled  bool `json:"enabled"`
				Replicas int  `json:"replicas"`
			} `json:"cluster"`
			JetStream struct {
				Enabled bool `json:"enabled"`
			} `json:"jetstream"`
		} `json:"config"`
	}
	data, err = os.ReadFile(filepath.Join(deployDir(t), "nats", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The chart's values are many and its own; only the ones orderflow
	// relies on are read, not strictly.
	if err := yaml.Unmarshal(data, &nats); err != nil {
		t.Fatal(err)
	}
	if !nats.Config.Cluster.Enabled || nats.Config.Cluster.Replicas != 3 || !nats.Config.JetStream.Enabled {
		t.Errorf("NATS values %+v: want a 3-node JetStream cluster", nats.Config)
	}
}
