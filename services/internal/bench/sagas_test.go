package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// orderflowBinary builds the orderflow command, whose dev command the saga
// phase runs.
func orderflowBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "orderflow")
	// go test puts its own toolchain first on PATH.
	cmd := exec.Command("go", "build", "-o", bin, "github.com/orderflow/orderflow/services/cmd/orderflow")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestSagas runs the saga phase, briefly, with a few clients against a
// dev stack of separate processes, then the gateway phase on the same
// stack, as `make bench` does, and checks that every figure is measured,
// printed and sane, and that every order's saga completed.
func TestSagas(t *testing.T) {
	bin := orderflowBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	noDB := func(context.Context) (string, error) {
		t.Error("the saga phase alone asked for a database")
		return "", context.Canceled
	}
	figs, err := Run(ctx, &out, noDB, Config{
		Rounds: -1, ReplayEvents: -1, LagRate: -1, CommandCallers: -1,
		SagaBinary: bin, SagaClients: 8, SagaDuration: time.Second, SagaSKUs: 4,
		GatewayClients: 4, GatewayRounds: 1, GatewayDuration: 500 * time.Millisecond,
		ClusterClients: -1, // TestSagasCluster runs it
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
		{"saga_completed_per_s", true},
		{"saga_peak_p50_ms", true},
		{"saga_latency_rate_per_s", true},
		{"saga_p50_ms", true},
		{"saga_p99_ms", true},
		{"saga_not_completed", false},
		{"saga_post_errors", false},
		{"gateway_direct_orders_per_s", true},
		{"gateway_orders_per_s", true},
		{"gateway_overhead_ratio", true},
		{"gateway_post_errors", false},
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
		line := regexp.MustCompile(`(?m)^BENCH ` + tt.name + ` [0-9.]+`)
		if !line.MatchString(text) {
			t.Errorf("no BENCH line for %s", tt.name)
		}
	}
	if len(figs) != len(tests) {
		t.Errorf("%d figures, want %d: %v", len(figs), len(tests), figs)
	}
	if got["saga_p50_ms"] > got["saga_p99_ms"] {
		t.Errorf("p50 %v ms > p99 %v ms", got["saga_p50_ms"], got["saga_p99_ms"])
	}
	// The latency phase runs at half the peak (at least 1/s); the rate it
	// reaches may fall short on a busy machine, never far beyond.
	if want := max(got["saga_completed_per_s"]/2, 1); got["saga_latency_rate_per_s"] > 1.5*want {
		t.Errorf("latency phase at %v orders/s, want about half the peak %v", got["saga_latency_rate_per_s"], got["saga_completed_per_s"])
	}
	wants := []string{
		"fsync=on",
		"reference: dtm saga transactions",
		">= 1000/s",
		"orders through the gateway, 4 clients",
		"stack stopped in",
	}
	if _, err := os.Stat("/proc/stat"); err == nil {
		wants = append(wants, "where the CPU went during the peak", "machine ")
	}
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The event store's rows are not printed when their phases were skipped.
	if strings.Contains(text, "autocommit INSERT") {
		t.Errorf("output has event store rows though their phases were skipped")
	}
}
