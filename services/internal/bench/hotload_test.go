package bench

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/testenv"
)

// TestHotLoad runs the hot stream load phase on a short stream and checks
// its figures and its rows in the table. The sizes are the test's, not the
// bench's: the ratio itself is judged by make bench.
func TestHotLoad(t *testing.T) {
	events := 3_000
	if s := os.Getenv("ORDERFLOW_HOTLOAD_EVENTS"); s != "" {
		// To look at the real figure: ORDERFLOW_HOTLOAD_EVENTS=100000.
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		events = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	r := &runner{w: &out, cfg: Config{Rounds: 1, Duration: 300 * time.Millisecond, HotStreamEvents: events},
		newDB: func(context.Context) (string, error) { return testenv.Postgres(t), nil }, vals: make(map[string][]float64)}
	if err := r.hotLoad(ctx); err != nil {
		t.Fatal(err)
	}
	r.report()
	text := out.String()
	t.Logf("\n%s", text)
	for _, name := range []string{hotLoadLongFigure, hotLoadFreshFigure, hotLoadNoSnapFigure, hotLoadRatioFigure, hotLoadNoSnapRatio, hotLoadSnapshotFigure} {
		if v := r.get(name); !(v > 0) {
			t.Errorf("%s = %v, want > 0", name, v)
		}
		if !regexp.MustCompile(`(?m)^BENCH ` + name + ` [0-9.]+`).MatchString(text) {
			t.Errorf("no BENCH line for %s", name)
		}
	}
	if !regexp.MustCompile(`(?m)^  long / fresh, with snapshots +[0-9.]+ x .*<= 2 \((met|NOT met)\)$`).MatchString(text) {
		t.Errorf("no judged ratio row in the table:\n%s", text)
	}
	// Read whole, the long stream costs more than from its snapshot.
	if p, l := r.get(hotLoadNoSnapFigure), r.get(hotLoadLongFigure); p <= l {
		t.Errorf("without snapshots %.2f ms, with %.2f ms: the snapshot saved nothing", p, l)
	}
}
