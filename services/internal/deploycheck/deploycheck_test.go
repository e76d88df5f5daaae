package deploycheck_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/orderflow/orderflow/services/internal/deploycheck"
)

// TestLoadComposeIsStrict: the compose model refuses what Compose would,
// so that TestComposeMatchesTheCode reads what Compose reads.
func TestLoadComposeIsStrict(t *testing.T) {
	const head = "name: x\nservices:\n"
	tests := []struct {
		name, body string
		wantErr    bool
	}{
		{"valid", head + "  a:\n    image: nats:2\n    depends_on:\n      b: {condition: service_started}\n  b:\n    image: nats:2\n    volumes: [data:/data]\nvolumes:\n  data: {}\n", false},
		{"anchor and merge key", "name: x\nx-orderflow: &o\n  image: orderflow/orderflow:dev\nservices:\n  a:\n    <<: *o\n    command: [serve, orders]\n", false},
		{"misspelt key", head + "  a:\n    image: nats:2\n    enviroment: {A: b}\n", true},
		{"unknown top-level key", head + "  a:\n    image: nats:2\nnetwork: {}\n", true},
		{"unknown dependency", head + "  a:\n    image: nats:2\n    depends_on:\n      c: {condition: service_started}\n", true},
		{"unknown condition", head + "  a:\n    image: nats:2\n    depends_on:\n      a: {condition: healthy}\n", true},
		{"undeclared volume", head + "  a:\n    image: nats:2\n    volumes: [data:/data]\n", true},
		{"neither image nor build", head + "  a:\n    command: [x]\n", true},
		{"environment as a list", head + "  a:\n    image: nats:2\n    environment: [A=b]\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "compose.yaml")
			if err := os.WriteFile(path, []byte(tt.body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := deploycheck.LoadCompose(path)
			if (err != nil) != tt.wantErr {
				t.Fatalf("LoadCompose: err %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func TestMetricNames(t *testing.T) {
	known := map[string]bool{"orderflow_http_request_duration_seconds": true, "orderflow_sagas": true}
	tests := []struct {
		expr string
		want []string
	}{
		{`sum by (status) (orderflow_sagas{status="failed"})`, []string{"orderflow_sagas"}},
		{`histogram_quantile(0.99, rate(orderflow_http_request_duration_seconds_bucket[5m]))`, []string{"orderflow_http_request_duration_seconds"}},
		{`orderflow_http_request_duration_seconds_count / orderflow_http_request_duration_seconds_sum`, []string{"orderflow_http_request_duration_seconds"}},
		// An unknown base keeps its suffix: the name is reported as is.
		{`rate(orderflow_unknown_bucket[1m]) + orderflow_sagas`, []string{"orderflow_unknown_bucket", "orderflow_sagas"}},
		{`up{job="orders"}`, nil},
	}
	for _, tt := range tests {
		if got := deploycheck.MetricNames(tt.expr, known); !slices.Equal(got, tt.want) {
			t.Errorf("MetricNames(%q) = %q, want %q", tt.expr, got, tt.want)
		}
	}
}

func TestImageRepository(t *testing.T) {
	tests := map[string]string{
		"orderflow/orderflow":                 "orderflow/orderflow",
		"orderflow/orderflow:0.1.0":           "orderflow/orderflow",
		"orderflow/orderflow@sha256:abc":      "orderflow/orderflow",
		"registry.local:5000/orderflow/x:dev": "registry.local:5000/orderflow/x",
		"registry.local:5000/orderflow/x":     "registry.local:5000/orderflow/x",
	}
	for in, want := range tests {
		if got := deploycheck.ImageRepository(in); got != want {
			t.Errorf("ImageRepository(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRegisteredMetricsSkipsTests(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"a/a.go":        `package a; var _ = "orderflow_real_total"`,
		"a/a_test.go":   `package a; var _ = "orderflow_test_only_total"`,
		"testdata/x.go": `package x; var _ = "orderflow_fixture_total"`,
		"b/b.go":        `package b; var _ = "orderflow_prefix_" + "x"`,
	}
	for name, body := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := deploycheck.RegisteredMetrics(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got["orderflow_real_total"] {
		t.Errorf("RegisteredMetrics = %v, want only orderflow_real_total", got)
	}
}
