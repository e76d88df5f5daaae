package serve

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/services/api"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// maxEventIDs bounds the event_id parameters of one GET /admin/events.
const maxEventIDs = 200

// eventRoutes registers GET /admin/events, the events of one correlation
// id (and, optionally, events named by id) as this service's own store
// holds them. The gateway asks every service and stitches the answers
// into one journey (the operator console). A store that cannot find
// events by correlation (see eventstore.Finder) answers 501.
//
// Each event's data is shown as the code reads it: brought to its type's
// newest schema version by the registered upcasters (events.NewRegistry),
// as commands and projections see it; an event the registry does not know
// (the sagas' own) is shown as stored.
func eventRoutes(r chi.Router, service string, store any) {
	finder, _ := store.(eventstore.Finder)
	r.Get("/admin/events", eventsHandler{service: service, finder: finder, reg: events.NewRegistry()}.list)
}

type eventsHandler struct {
	service string
	finder  eventstore.Finder // nil when the store cannot answer
	reg     *domain.Registry
}

type eventList struct {
	Items []api.Event `json:"items"`
	// Truncated is true when more events matched than one answer holds
	// (eventstore.MaxFound).
	Truncated bool `json:"truncated"`
}

// slugNotImplemented is the problem of a store without the query.
const slugNotImplemented = "not-implemented"

func (h eventsHandler) list(w http.ResponseWriter, r *http.Request) {
	q, err := eventQuery(r)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if h.finder == nil {
		httpx.WriteError(w, r, httpx.NewProblem(http.StatusNotImplemented, slugNotImplemented,
			"this service's event store cannot find events by correlation id"))
		return
	}
	// An answer as long as the bound may have left events out.
	q.Max = eventstore.MaxFound
	evs, err := h.finder.FindEvents(r.Context(), q)
	if errors.Is(err, eventstore.ErrUnsupported) {
		httpx.WriteError(w, r, httpx.NewProblem(http.StatusNotImplemented, slugNotImplemented,
			"this service's event store cannot find events by correlation id"))
		return
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	out := eventList{Items: make([]api.Event, 0, len(evs)), Truncated: len(evs) >= eventstore.MaxFound}
	for _, e := range evs {
		out.Items = append(out.Items, h.item(e))
	}
	w.Header().Set("Cache-Control", httpx.CacheNoStore)
	httpx.WriteJSON(w, r, http.StatusOK, out)
}

func (h eventsHandler) item(e domain.Envelope) api.Event {
	if up, err := h.reg.Upcast(e); err == nil {
		e = up
	}
	data := json.RawMessage(e.Data)
	if !json.Valid(data) {
		// Not JSON (no event of this system, but the store allows it):
		// shown as a string rather than breaking the answer.
		data, _ = json.Marshal(string(e.Data))
	}
	md, err := json.Marshal(e.Metadata)
	if err != nil {
		// Metadata is plain strings; this cannot fail, but an answer
		// without it beats no answer.
		md = json.RawMessage(`{}`)
	}
	return api.Event{
		Service: h.service, EventID: strings.ToLower(e.ID), Stream: e.Stream, Type: e.Type,
		SchemaVersion: e.SchemaVersion, Version: e.Version, Position: e.Position,
		RecordedAt: e.RecordedAt.UTC(), Data: data, Metadata: md,
	}
}

// eventQuery reads correlation_id and the repeatable event_id; at least
// one of them is required.
func eventQuery(r *http.Request) (eventstore.EventQuery, error) {
	params := r.URL.Query()
	q := eventstore.EventQuery{CorrelationID: strings.TrimSpace(params.Get("correlation_id"))}
	var fields []httpx.FieldError
	if len(q.CorrelationID) > 200 {
		fields = append(fields, httpx.FieldError{Field: "correlation_id", Message: "must be at most 200 characters"})
	}
	for _, raw := range params["event_id"] {
		for _, id := range strings.Split(raw, ",") {
			if id = strings.TrimSpace(id); id == "" {
				continue
			}
			if !domain.ValidUUID(id) {
				fields = append(fields, httpx.FieldError{Field: "event_id", Message: "must be a UUID"})
				break
			}
			q.EventIDs = append(q.EventIDs, id)
		}
	}
	if len(q.EventIDs) > maxEventIDs {
		fields = append(fields, httpx.FieldError{Field: "event_id", Message: "at most 200 ids"})
	}
	if q.Empty() && len(fields) == 0 {
		fields = append(fields, httpx.FieldError{Field: "correlation_id", Message: "is required"})
	}
	if len(fields) > 0 {
		return q, httpx.ValidationProblem("the events to find are not named correctly", fields...)
	}
	return q, nil
}
