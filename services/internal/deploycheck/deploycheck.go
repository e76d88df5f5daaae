// Package deploycheck reads the deployment files under deploy/ (the
// Kubernetes manifests, the compose file, the Prometheus rules and the
// Grafana dashboard) into typed values, strictly, so that its tests can
// hold them to the code: nothing there can run on a machine without a
// container engine or a cluster, so a drift between a manifest and the
// binary (a port, an environment variable, a probe path, a metric name)
// would otherwise surface only in production.
package deploycheck

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Image is the repository of the orderflow image every deployment file
// names (the tag varies: compose and the dev overlay build "dev", prod
// pins a release).
const Image = "orderflow/orderflow"

// ErrUnknownKind is returned for a manifest whose apiVersion and kind
// this package has no Kubernetes type for; a manifest nobody checks is one
// that drifts.
var ErrUnknownKind = errors.New("deploycheck: unknown apiVersion/kind")

// Object is one decoded Kubernetes manifest.
type Object struct {
	// File is the manifest's path relative to the deploy directory, and
	// Index the document's place in it (from 0).
	File  string
	Index int
	// Kind is "apiVersion/kind", e.g. "apps/v1/Deployment".
	Kind string
	// Value is a pointer to the typed object, e.g. *appsv1.Deployment.
	Value any
}

// Name is the object's metadata.name.
func (o Object) Name() string {
	if m, ok := o.Value.(metav1.Object); ok {
		return m.GetName()
	}
	return ""
}

// types maps "apiVersion/kind" to a new value of the Kubernetes API type.
var types = map[string]func() any{
	"apps/v1/Deployment":                     func() any { return new(appsv1.Deployment) },
	"v1/Service":                             func() any { return new(corev1.Service) },
	"v1/Secret":                              func() any { return new(corev1.Secret) },
	"v1/ConfigMap":                           func() any { return new(corev1.ConfigMap) },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"policy/v1/PodDisruptionBudget":          func() any { return new(policyv1.PodDisruptionBudget) },
	"networking.k8s.io/v1/NetworkPolicy":     func() any { return new(networkingv1.NetworkPolicy) },
}

// docSeparator splits a multi-document YAML file.
var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// Documents splits a YAML stream into its non-empty documents.
func Documents(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range docSeparator.Split(string(data), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// DecodeObject decodes one manifest strictly into its Kubernetes type:
// an unknown or misspelt field, a duplicate key or a value of the wrong
// type is an error, as the API server's strict field validation would
// make it.
func DecodeObject(doc []byte) (kind string, v any, err error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return "", nil, fmt.Errorf("read apiVersion and kind: %w", err)
	}
	kind = tm.APIVersion + "/" + tm.Kind
	newValue, ok := types[kind]
	if !ok {
		return kind, nil, fmt.Errorf("%w: %s", ErrUnknownKind, kind)
	}
	v = newValue()
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return kind, nil, fmt.Errorf("%s: %w", kind, err)
	}
	return kind, v, nil
}

// LoadObjects decodes every document of the given manifest files (paths
// relative to dir).
func LoadObjects(dir string, files []string) ([]Object, error) {
	var objs []Object
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		for i, doc := range Documents(data) {
			kind, v, err := DecodeObject(doc)
			if err != nil {
				return nil, fmt.Errorf("%s, document %d: %w", f, i, err)
			}
			objs = append(objs, Object{File: f, Index: i, Kind: kind, Value: v})
		}
	}
	return objs, nil
}

// Kustomization is the part of kustomize's Kustomization this project
// uses; a field outside it fails the strict decoding, so a new feature
// gets checked here before it is used.
type Kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources,omitempty"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
	Patches []Patch `json:"patches,omitempty"`
}

// Patch is an inline strategic-merge patch and the objects it applies to.
type Patch struct {
	Target struct {
		Kind string `json:"kind,omitempty"`
		Name string `json:"name,omitempty"`
	} `json:"target"`
	Patch string `json:"patch"`
}

// LoadKustomization decodes path strictly.
func LoadKustomization(path string) (*Kustomization, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var k Kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s: apiVersion/kind %s/%s, want kustomize.config.k8s.io/v1beta1/Kustomization", path, k.APIVersion, k.Kind)
	}
	return &k, nil
}

// Compose is the part of the Compose specification compose.yaml uses,
// decoded strictly: a misspelt key (enviroment:, depends-on:) is an error
// rather than a setting Compose would refuse on a machine we never see.
type Compose struct {
	Name       string                    `json:"name"`
	XOrderflow map[string]any            `json:"x-orderflow,omitempty"`
	Services   map[string]ComposeService `json:"services"`
	Volumes    map[string]struct{}       `json:"volumes,omitempty"`
}

// ComposeService is one service of compose.yaml.
type ComposeService struct {
	Image string `json:"image"`
	Build *struct {
		Context    string `json:"context"`
		Dockerfile string `json:"dockerfile"`
	} `json:"build,omitempty"`
	Command     []string          `json:"command,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
	Ports       []string          `json:"ports,omitempty"`
	Volumes     []string          `json:"volumes,omitempty"`
	DependsOn   map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on,omitempty"`
	Healthcheck *struct {
		Test     []string `json:"test"`
		Interval string   `json:"interval,omitempty"`
		Timeout  string   `json:"timeout,omitempty"`
		Retries  int      `json:"retries,omitempty"`
	} `json:"healthcheck,omitempty"`
	Profiles []string `json:"profiles,omitempty"`
	Restart  string   `json:"restart,omitempty"`
	ReadOnly bool     `json:"read_only,omitempty"`
	User     string   `json:"user,omitempty"`
}

// composeConditions are the depends_on conditions Compose knows.
var composeConditions = []string{"service_started", "service_healthy", "service_completed_successfully"}

// LoadCompose decodes path strictly (anchors and merge keys resolved) and
// checks what the typed decoding cannot: every dependency names a service
// with a known condition, every named volume is declared.
func LoadCompose(path string) (*Compose, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Compose
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	for name, s := range c.Services {
		if s.Image == "" && s.Build == nil {
			errs = append(errs, fmt.Errorf("service %s: neither image nor build", name))
		}
		for dep, d := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				errs = append(errs, fmt.Errorf("service %s depends on unknown service %s", name, dep))
			}
			if !slices.Contains(composeConditions, d.Condition) {
				errs = append(errs, fmt.Errorf("service %s: depends_on %s: unknown condition %q", name, dep, d.Condition))
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				if _, ok := c.Volumes[src]; !ok {
					errs = append(errs, fmt.Errorf("service %s: volume %s is not declared", name, src))
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// metricName matches a metric name of orderflow's in a PromQL expression
// or a Go string literal.
var metricName = regexp.MustCompile(`\borderflow_[a-z0-9_]*[a-z0-9]\b`)

// MetricNames lists the orderflow metric names an expression uses, with
// the series suffixes of a histogram (_bucket, _sum, _count) taken off
// when the rest is a name in known.
func MetricNames(expr string, known map[string]bool) []string {
	var out []string
	for _, n := range metricName.FindAllString(expr, -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(n, suffix); ok && known[base] {
				n = base
			}
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// registeredName matches a metric name given to the Prometheus client in
// Go source: a string literal that is nothing but the name.
var registeredName = regexp.MustCompile(`"(orderflow_[a-z0-9_]*[a-z0-9])"`)

// RegisteredMetrics lists the metric names string literals in the
// module's non-test Go files name, below root. It is a superset of what
// a process registers (any such literal counts), which is why the tests
// also scrape running services.
func RegisteredMetrics(root string) (map[string]bool, error) {
	names := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "testdata" || n == "deploy" || (strings.HasPrefix(n, ".") && path != root) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.Contains(src, []byte(`"orderflow_`)) {
			return nil
		}
		for _, m := range registeredName.FindAllSubmatch(src, -1) {
			names[string(m[1])] = true
		}
		return nil
	})
	return names, err
}

// ImageRepository is image without its tag or digest.
func ImageRepository(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image
}
