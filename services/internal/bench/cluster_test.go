package bench

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestClusterFigureBesideSingle: the cluster's saga rate is printed right
// under the single-node one, in the table with the single-node figure as
// its reference and their ratio, and in the BENCH lines followed by the
// ratio; measured alone, it has neither reference nor ratio.
func TestClusterFigureBesideSingle(t *testing.T) {
	tests := []struct {
		name       string
		single     bool
		wantBench  []string // consecutive BENCH lines
		wantRow    *regexp.Regexp
		wantAbsent []string
	}{
		{
			name:   "beside the single-node figure",
			single: true,
			wantBench: []string{
				"BENCH saga_completed_per_s 800.00 sagas/s",
				"BENCH saga_completed_per_s_cluster 400.00 sagas/s",
				"BENCH saga_cluster_to_single_ratio 0.500 x",
				"BENCH saga_peak_p50_ms 120.00 ms",
			},
			wantRow: regexp.MustCompile(`(?m)^sagas completed end to end, 256 clients .*\n  on the cluster, 128 clients \(vs\. 1 node\) +400\.0 s/s +800 +0\.50x -\n`),
		},
		{
			name: "alone",
			wantBench: []string{
				"BENCH saga_completed_per_s_cluster 400.00 sagas/s",
				"BENCH saga_peak_p50_ms_cluster 250.00 ms",
			},
			wantRow:    regexp.MustCompile(`(?m)^  on the cluster, 128 clients \(vs\. 1 node\) +400\.0 s/s +-\n`),
			wantAbsent: []string{"saga_cluster_to_single_ratio", "sagas completed end to end, 256 clients"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			r := &runner{w: &out, cfg: Config{Rounds: -1, SagaClients: 256, ClusterClients: 128}, vals: make(map[string][]float64)}
			// In the order a run measures them.
			if tt.single {
				r.add("saga_completed_per_s", 800, "sagas/s")
				r.add("saga_peak_p50_ms", 120, "ms")
				r.add("saga_latency_rate_per_s", 400, "orders/s")
				r.add("saga_p50_ms", 40, "ms")
				r.add("saga_p99_ms", 90, "ms")
				r.add("saga_not_completed", 0, "count")
				r.add("saga_post_errors", 0, "count")
			}
			r.add(clusterRateFigure, 400, "sagas/s")
			r.add("saga_peak_p50_ms"+clusterSuffix, 250, "ms")
			r.add("saga_not_completed"+clusterSuffix, 0, "count")
			r.add("saga_post_errors"+clusterSuffix, 0, "count")
			r.report()
			text := out.String()
			if want := strings.Join(tt.wantBench, "\n") + "\n"; !strings.Contains(text, want) {
				t.Errorf("output lacks the lines\n%s\nin\n%s", want, text)
			}
			if !tt.wantRow.MatchString(text) {
				t.Errorf("output lacks a row matching %s in\n%s", tt.wantRow, text)
			}
			for _, s := range tt.wantAbsent {
				if strings.Contains(text, s) {
					t.Errorf("output has %q:\n%s", s, text)
				}
			}
			for _, s := range []string{"cluster: orders without a completed saga", "BENCH saga_not_completed_cluster 0\n"} {
				if !strings.Contains(text, s) {
					t.Errorf("output lacks %q:\n%s", s, text)
				}
			}
			names := make(map[string]bool)
			for _, f := range r.figs {
				if names[f.Name] {
					t.Errorf("figure %s reported twice", f.Name)
				}
				names[f.Name] = true
			}
		})
	}
}

// TestSagasCluster runs the cluster phase alone, briefly, on a stack of
// `orderflow dev --cluster`, and checks that its figures are measured and
// printed and that every order's saga completed.
func TestSagasCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a clustered dev stack (three NATS nodes, eight service processes)")
	}
	bin := orderflowBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	noDB := func(context.Context) (string, error) {
		t.Error("the cluster phase asked for a database")
		return "", context.Canceled
	}
	figs, err := Run(ctx, &out, noDB, Config{
		Rounds: -1, ReplayEvents: -1, LagRate: -1, CommandCallers: -1,
		SagaBinary: bin, SagaClients: -1, GatewayClients: -1,
		ClusterClients: 8, SagaDuration: time.Second, SagaSKUs: 4,
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	text := out.String()
	t.Logf("output:\n%s", text)
	got := make(map[string]float64)
	for _, f := range figs {
		got[f.Name] = f.Value
	}
	tests := []struct {
		name     string
		positive bool // else zero
	}{
		{clusterRateFigure, true},
		{"saga_peak_p50_ms" + clusterSuffix, true},
		{"saga_not_completed" + clusterSuffix, false},
		{"saga_post_errors" + clusterSuffix, false},
	}
	for _, tt := range tests {
		v, ok := got[tt.name]
		switch {
		case !ok:
			t.Errorf("figure %s not measured", tt.name)
		case tt.positive && v <= 0:
			t.Errorf("figure %s = %v, want > 0", tt.name, v)
		case !tt.positive && v != 0:
			t.Errorf("figure %s = %v, want 0", tt.name, v)
		}
		if !regexp.MustCompile(`(?m)^BENCH ` + tt.name + ` [0-9.]+`).MatchString(text) {
			t.Errorf("no BENCH line for %s", tt.name)
		}
	}
	if len(figs) != len(tests) {
		t.Errorf("%d figures, want %d: %v", len(figs), len(tests), figs)
	}
	// The banner named both orders replicas, which the orders are spread over.
	for _, want := range []string{"dev --cluster", "fsync=on", "on the cluster, 8 clients", "stack stopped in"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !regexp.MustCompile(`stack ready in \S+: orders http://\S+ http://\S+ inventory`).MatchString(text) {
		t.Errorf("the stack's line does not name two orders replicas")
	}
}
