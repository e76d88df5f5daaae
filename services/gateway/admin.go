package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/services/internal/httpx"
)

// readyz answers 200 when every upstream service has an instance that
// answers its own GET /readyz with 200 (its database and NATS reachable),
// else 503 naming those that have none. The services are asked at once,
// so one that hangs costs ReadyTimeout, not one timeout per service.
func (g *Gateway) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.ReadyTimeout)
	defer cancel()
	services := Services()
	errs := make([]error, len(services))
	var wg sync.WaitGroup
	for i, svc := range services {
		wg.Go(func() { errs[i] = g.upstreams[svc].ready(ctx) })
	}
	wg.Wait()
	var failed []string
	for i, err := range errs {
		if err != nil {
			httpx.Logger(r.Context()).LogAttrs(r.Context(), slog.LevelWarn, "readiness check failed",
				slog.String("check", services[i]), slog.String("error", err.Error()))
			failed = append(failed, services[i])
		}
	}
	if len(failed) > 0 {
		p := httpx.NewProblem(http.StatusServiceUnavailable, httpx.SlugNotReady,
			"not ready: "+strings.Join(failed, ", ")+" unreachable or not ready")
		p.RetryAfter = 1
		httpx.WriteProblem(w, p)
		return
	}
	httpx.WriteJSON(w, r, http.StatusOK, map[string]string{"status": "ready"})
}

// projectionLists asks every service for GET /admin/projections at once
// and returns each one's items, in the order of Services(). The first
// failure, in that order, is returned with the lists of the others.
func (g *Gateway) projectionLists(ctx context.Context) ([][]json.RawMessage, error) {
	services := Services()
	lists := make([][]json.RawMessage, len(services))
	errs := make([]error, len(services))
	var wg sync.WaitGroup
	for i, svc := range services {
		wg.Go(func() {
			var page struct {
				Items []json.RawMessage `json:"items"`
			}
			errs[i] = g.getJSON(ctx, svc, "/admin/projections", &page)
			lists[i] = page.Items
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return lists, err
		}
	}
	return lists, nil
}

// listProjections answers GET /admin/projections for the whole system:
// the items of every service, merged. An operator must not mistake a
// partial list for the whole, so a service that does not answer makes the
// answer its 503.
func (g *Gateway) listProjections(w http.ResponseWriter, r *http.Request) {
	lists, err := g.projectionLists(r.Context())
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	items := []json.RawMessage{}
	for _, l := range lists {
		items = append(items, l...)
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, r, http.StatusOK, struct {
		Items []json.RawMessage `json:"items"`
	}{items})
}

// replayProjection forwards POST /admin/projections/{name}/replay to the
// service whose GET /admin/projections lists the projection. The services
// are asked each time rather than kept in a table here: the read models
// belong to them, and a replay is rare.
func (g *Gateway) replayProjection(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	lists, err := g.projectionLists(r.Context())
	for i, l := range lists {
		for _, raw := range l {
			var item struct {
				Name string `json:"name"`
			}
			if json.Unmarshal(raw, &item) == nil && item.Name == name {
				g.forward(w, r, g.upstreams[Services()[i]])
				return
			}
		}
	}
	if err != nil {
		// The one that did not answer may be the one that has it.
		httpx.WriteError(w, r, fmt.Errorf("find projection %q: %w", name, err))
		return
	}
	httpx.WriteError(w, r, httpx.NotFoundProblem("projection", name))
}
