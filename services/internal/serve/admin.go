package serve

import (
	"errors"
	"math"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// runner is what the operations API needs from the service's projection
// runner (*projections.Runner).
type runner interface {
	Stats() []projections.Stats
	StartRebuild(name string) error
}

// adminRoutes registers the operations API of the projections:
//
//	GET  /admin/projections               progress of every projection
//	POST /admin/projections/{name}/replay start a zero-downtime rebuild
//
// db is the service's database, where the projections' registry says which
// version serves queries and whether a rebuild runs in any process; store
// gives the event store's head.
func adminRoutes(r chi.Router, p runner, db projections.Querier, store projections.Header) {
	a := admin{p: p, db: db, store: store}
	r.Get("/admin/projections", a.list)
	r.Post("/admin/projections/{name}/replay", a.replay)
}

type admin struct {
	p     runner
	db    projections.Querier
	store projections.Header
}

// projectionItem is one item of GET /admin/projections; the wire format is
// declared here so that it changes only with this file.
type projectionItem struct {
	Name            string             `json:"name"`
	Checkpoint      uint64             `json:"checkpoint"`
	Head            uint64             `json:"head"`
	Lag             uint64             `json:"lag"`
	Status          projections.Status `json:"status"`
	EventsPerSecond float64            `json:"events_per_second"`
	Parked          int64              `json:"parked"`
	ActiveVersion   int                `json:"active_version"`
	Rebuild         *rebuildProgress   `json:"rebuild,omitempty"`
	// Progress is the console's view of Rebuild (with a percentage),
	// while the status is rebuilding and this process runs the rebuild.
	Progress *consoleProgress `json:"progress,omitempty"`
}

// consoleProgress is the progress of a rebuild as the console draws it.
type consoleProgress struct {
	Phase           string  `json:"phase"`
	Done            uint64  `json:"done"`
	Total           uint64  `json:"total"`
	Events          uint64  `json:"events"`
	EventsPerSecond float64 `json:"events_per_second"`
	Percent         float64 `json:"percent"`
}

// percent is how far a rebuild has come, 0..100: the positions replayed
// of those the store held when last read. A rebuild that has not read the
// store's head yet (starting) is at 0; one past its replay (swap, done)
// is complete.
func percent(p *projections.Progress) float64 {
	switch {
	case p.Phase == "swap" || p.Phase == "done":
		return 100
	case p.Total == 0:
		return 0
	case p.Done >= p.Total:
		return 100
	}
	return math.Floor(float64(p.Done)*1000/float64(p.Total)) / 10
}

type rebuildProgress struct {
	Phase           string  `json:"phase"`
	Done            uint64  `json:"done"`
	Total           uint64  `json:"total"`
	Events          uint64  `json:"events"`
	EventsPerSecond float64 `json:"events_per_second"`
	ETASeconds      float64 `json:"eta_seconds"`
}

type projectionList struct {
	Items []projectionItem `json:"items"`
}

type replayAccepted struct {
	Name   string             `json:"name"`
	Status projections.Status `json:"status"`
}

func (a admin) list(w http.ResponseWriter, r *http.Request) {
	// The registry in the database is the truth shared by every process:
	// the active version right after a swap, the committed checkpoint, a
	// rebuild running in another replica, and the store's head now. The
	// runner adds what only this process knows: whether its projector
	// runs, its rate and the progress of its own rebuild.
	stored, err := projections.ListStats(r.Context(), a.db, a.store)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	byName := make(map[string]projections.Stats, len(stored))
	for _, s := range stored {
		byName[s.Name] = s
	}
	stats := a.p.Stats()
	out := projectionList{Items: make([]projectionItem, 0, len(stats))}
	for _, s := range stats {
		it := projectionItem{
			Name:            s.Name,
			Checkpoint:      s.Checkpoint,
			Head:            s.Head,
			Status:          projections.StatusLive,
			EventsPerSecond: max(s.EventsPerSecond, 0),
			Parked:          s.Parked,
			ActiveVersion:   s.ActiveVersion,
		}
		d, ok := byName[s.Name]
		if ok {
			it.Checkpoint, it.Parked, it.ActiveVersion = d.Checkpoint, d.Parked, d.ActiveVersion
			it.Head = max(it.Head, d.Head)
		}
		it.Head = max(it.Head, it.Checkpoint)
		it.Lag = it.Head - it.Checkpoint
		switch {
		case s.Rebuild != nil || (ok && d.Status == projections.StatusRebuilding):
			it.Status = projections.StatusRebuilding
		case s.Status == projections.StatusStopped:
			it.Status = projections.StatusStopped
		}
		if p := s.Rebuild; p != nil {
			it.Rebuild = &rebuildProgress{Phase: p.Phase, Done: p.Done, Total: p.Total, Events: p.Events,
				EventsPerSecond: max(p.EventsPerSecond, 0), ETASeconds: max(p.ETA.Seconds(), 0)}
			if it.Status == projections.StatusRebuilding {
				it.Progress = &consoleProgress{Phase: p.Phase, Done: p.Done, Total: p.Total, Events: p.Events,
					EventsPerSecond: max(p.EventsPerSecond, 0), Percent: percent(p)}
			}
		}
		out.Items = append(out.Items, it)
	}
	httpx.WriteJSON(w, r, http.StatusOK, out)
}

func (a admin) replay(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	var req struct{}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	err := a.p.StartRebuild(name)
	switch {
	case err == nil:
	case errors.Is(err, domain.ErrNotFound):
		httpx.WriteError(w, r, httpx.NotFoundProblem("projection", name))
		return
	case errors.Is(err, domain.ErrIllegalState):
		// Already rebuilding (409 illegal-state).
		httpx.WriteError(w, r, err)
		return
	default:
		// The runner is starting or stopping: a passing condition.
		p := httpx.NewProblem(http.StatusServiceUnavailable, httpx.SlugUnavailable, "the projections are not running; retry shortly")
		p.RetryAfter = 1
		httpx.Logger(r.Context()).Warn("projection replay refused", "projection", name, "error", err)
		httpx.WriteError(w, r, p)
		return
	}
	httpx.WriteJSON(w, r, http.StatusAccepted, replayAccepted{Name: name, Status: projections.StatusRebuilding})
}
