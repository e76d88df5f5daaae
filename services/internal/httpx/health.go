package httpx

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Check is one readiness condition, e.g. "the database answers a ping".
type Check struct {
	// Name appears in the 503 reason, e.g. "database".
	Name string
	// Probe returns nil when the dependency is usable. Its error is logged;
	// clients only learn which check failed.
	Probe func(ctx context.Context) error
}

// Healthz answers 200 while the process runs.
func Healthz(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

// Readyz answers 200 when every check passes within timeout, else a 503
// problem naming the failed checks.
func Readyz(timeout time.Duration, checks ...Check) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		var failed []string
		for _, c := range checks {
			if err := c.Probe(ctx); err != nil {
				Logger(r.Context()).LogAttrs(r.Context(), slog.LevelWarn, "readiness check failed",
					slog.String("check", c.Name), slog.String("error", err.Error()))
				failed = append(failed, c.Name)
			}
		}
		if len(failed) > 0 {
			p := NewProblem(http.StatusServiceUnavailable, SlugNotReady,
				"not ready: "+strings.Join(failed, ", ")+" unreachable")
			p.RetryAfter = 1
			WriteProblem(w, p)
			return
		}
		WriteJSON(w, r, http.StatusOK, map[string]string{"status": "ready"})
	}
}
