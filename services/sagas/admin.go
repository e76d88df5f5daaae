package sagas

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/sagaview"
	engine "github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// AdminRoutes registers the operator console's view of the coordinator:
//
//	GET /admin/sagas/stats        sagas per status (read model) and the saga types
//	GET /admin/saga-definitions   every definition's steps and compensations
//
// defs is the catalogue the coordinator runs.
func AdminRoutes(r chi.Router, defs *engine.Definitions, db projections.Querier) {
	a := adminHandler{defs: defs, db: db}
	r.Get("/admin/sagas/stats", httpx.NoStore(a.stats))
	r.Get("/admin/saga-definitions", a.definitions)
}

type adminHandler struct {
	defs *engine.Definitions
	db   projections.Querier
}

// statsResponse is GET /admin/sagas/stats. Counts lists every status,
// with 0 for none, so that a page can draw them without knowing them.
type statsResponse struct {
	Counts map[engine.Status]int64 `json:"counts"`
	Types  []string                `json:"types"`
}

func (a adminHandler) stats(w http.ResponseWriter, r *http.Request) {
	counts, err := sagaview.CountByStatus(r.Context(), a.db)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	out := statsResponse{Counts: make(map[engine.Status]int64, len(engine.Statuses)), Types: a.types()}
	for _, s := range engine.Statuses {
		out.Counts[s] = counts[s]
	}
	httpx.WriteJSON(w, r, http.StatusOK, out)
}

// types lists the saga types of the catalogue, sorted, each once.
func (a adminHandler) types() []string {
	out := []string{}
	for _, d := range a.defs.All() {
		if !slices.Contains(out, d.Name) {
			out = append(out, d.Name)
		}
	}
	slices.Sort(out)
	return out
}

// definitionItem is one definition of GET /admin/saga-definitions.
type definitionItem struct {
	Type    string           `json:"type"`
	Version int              `json:"version"`
	Steps   []definitionStep `json:"steps"`
	Closing string           `json:"closing"`
}

type definitionStep struct {
	Name string `json:"name"`
	// Command is "<context>.<name>"; the context is the receiving
	// service's (natsbus subject token), which Service repeats.
	Command      string `json:"command"`
	Service      string `json:"service"`
	Compensation string `json:"compensation"`
	TimeoutMS    int64  `json:"timeout_ms"`
	MaxAttempts  int    `json:"max_attempts"`
	After        string `json:"after,omitempty"`
}

func (a adminHandler) definitions(w http.ResponseWriter, r *http.Request) {
	all := a.defs.All()
	out := struct {
		Items []definitionItem `json:"items"`
	}{Items: make([]definitionItem, 0, len(all))}
	for _, d := range all {
		it := definitionItem{Type: d.Name, Version: d.Version, Steps: make([]definitionStep, 0, len(d.Steps))}
		if d.Closing != nil {
			it.Closing = commandName(d.Closing.Command)
		}
		for _, s := range d.Steps {
			st := definitionStep{
				Name: s.Name, Command: commandName(s.Command), Service: s.Command.Context,
				TimeoutMS: s.Timeout.Milliseconds(), MaxAttempts: s.Retry.MaxAttempts, After: s.After,
			}
			if s.Compensation != nil {
				st.Compensation = commandName(s.Compensation.Command)
			}
			it.Steps = append(it.Steps, st)
		}
		out.Items = append(out.Items, it)
	}
	httpx.WriteJSON(w, r, http.StatusOK, out)
}

func commandName(c engine.Command) string { return c.Context + "." + c.Name }

// listedSaga is an item of GET /api/sagas: the summary and the saga's
// correlation id, which the coordinator gives every event of the saga
// and every command and reply it causes (the saga's id).
type listedSaga struct {
	engine.Summary
	CorrelationID string `json:"correlation_id"`
}

// listSagas is sagaview.List with each item's correlation id.
func listSagas(ctx context.Context, db projections.Querier, f sagaview.Filter, limit int, after string) ([]listedSaga, string, error) {
	items, next, err := sagaview.List(ctx, db, f, limit, after)
	if err != nil {
		return nil, "", err
	}
	out := make([]listedSaga, len(items))
	for i, s := range items {
		out[i] = listedSaga{Summary: s, CorrelationID: s.SagaID}
	}
	return out, next, nil
}

// sagaFilter reads the list's filters: status, order_id, type and the
// started_after/started_before bounds (RFC 3339).
func sagaFilter(params url.Values) (sagaview.Filter, error) {
	f := sagaview.Filter{Status: params.Get("status"), OrderID: params.Get("order_id"), Type: params.Get("type")}
	var v domain.ValidationError
	for _, b := range []struct {
		name string
		to   *time.Time
	}{{"started_after", &f.StartedAfter}, {"started_before", &f.StartedBefore}} {
		raw := strings.TrimSpace(params.Get(b.name))
		if raw == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, raw)
		if err != nil {
			v.Add(b.name, "must be an RFC 3339 time, e.g. 2026-01-02T03:04:05Z")
			continue
		}
		*b.to = t
	}
	// Every bad parameter is reported at once.
	return f, httpx.JoinFieldErrors(v.Err(), f.Validate())
}
