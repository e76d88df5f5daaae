package gateway

import (
	"cmp"
	"container/heap"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/services/api"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// maxCausationLookups bounds the event ids the second round of
// GET /admin/events asks for (a service takes up to 200 at once).
const maxCausationLookups = 200

// journeyEvent is an item of GET /admin/events as a service answers it
// (data and metadata pass through as they came), with its cause.
type journeyEvent struct {
	api.Event

	causation string // metadata.causation_id, lower case
}

type journey struct {
	Items     []journeyEvent `json:"items"`
	Truncated bool           `json:"truncated,omitempty"`
	Partial   bool           `json:"partial"`
	Missing   []string       `json:"missing"`
}

// listEvents answers GET /admin/events?correlation_id=ID for the whole
// system: every service's own answer for the correlation id, then, in a
// second round, the events those name as their cause that are not listed
// yet (the order's OrderPlaced carries the request's correlation id, but
// the saga it starts names it as its cause), merged in causal order. A
// service that does not answer leaves the answer partial rather than
// failing it: an operator chasing a stuck order wants what there is.
func (g *Gateway) listEvents(w http.ResponseWriter, r *http.Request) {
	corr := strings.TrimSpace(r.URL.Query().Get("correlation_id"))
	switch {
	case corr == "":
		httpx.WriteError(w, r, httpx.ValidationProblem("correlation_id is required",
			httpx.FieldError{Field: "correlation_id", Message: "is required"}))
		return
	case len(corr) > 200:
		httpx.WriteError(w, r, httpx.ValidationProblem("correlation_id is too long",
			httpx.FieldError{Field: "correlation_id", Message: "must be at most 200 characters"}))
		return
	}
	out := g.collect(r.Context(), "correlation_id="+url.QueryEscape(corr), Services())
	var answered []string
	for _, svc := range Services() {
		if !slices.Contains(out.Missing, svc) {
			answered = append(answered, svc)
		}
	}
	if causes := unlistedCauses(out.Items); len(causes) > 0 && len(answered) > 0 {
		more := g.collect(r.Context(), "event_id="+strings.Join(causes, ","), answered)
		out.Items = append(out.Items, more.Items...)
		out.Truncated = out.Truncated || more.Truncated
		for _, m := range more.Missing {
			if !slices.Contains(out.Missing, m) {
				out.Missing = append(out.Missing, m)
			}
		}
	}
	out.Items = causalOrder(dedupe(out.Items))
	out.Partial = len(out.Missing) > 0
	slices.SortFunc(out.Missing, func(a, b string) int {
		return cmp.Compare(slices.Index(Services(), a), slices.Index(Services(), b))
	})
	w.Header().Set("Cache-Control", httpx.CacheNoStore)
	httpx.WriteJSON(w, r, http.StatusOK, out)
}

// collect asks services for GET /admin/events?query at once. Missing
// names those that did not answer 200 (down, open breaker, 5xx, or a
// store that cannot search: 501).
func (g *Gateway) collect(ctx context.Context, query string, services []string) journey {
	type answer struct {
		Items     []journeyEvent `json:"items"`
		Truncated bool           `json:"truncated"`
	}
	answers := make([]answer, len(services))
	errs := make([]error, len(services))
	var wg sync.WaitGroup
	for i, svc := range services {
		wg.Go(func() { errs[i] = g.getJSON(ctx, svc, "/admin/events?"+query, &answers[i]) })
	}
	wg.Wait()
	out := journey{Items: []journeyEvent{}, Missing: []string{}}
	for i, svc := range services {
		if errs[i] != nil {
			httpx.Logger(ctx).Warn("events of a service left out", "upstream", svc, "error", errs[i])
			out.Missing = append(out.Missing, svc)
			continue
		}
		out.Truncated = out.Truncated || answers[i].Truncated
		for _, e := range answers[i].Items {
			// The service that answered is the one the event is from,
			// whatever the item says.
			e.Service = svc
			e.EventID = strings.ToLower(e.EventID)
			var md struct {
				CausationID string `json:"causation_id"`
			}
			if json.Unmarshal(e.Metadata, &md) == nil {
				e.causation = strings.ToLower(md.CausationID)
			}
			out.Items = append(out.Items, e)
		}
	}
	return out
}

// unlistedCauses returns, sorted, the causation ids that name no listed
// event: candidates for the second round. Many are command ids, which
// name no event, and find nothing.
func unlistedCauses(evs []journeyEvent) []string {
	listed := make(map[string]bool, len(evs))
	for _, e := range evs {
		listed[e.EventID] = true
	}
	var out []string
	for _, e := range evs {
		c := e.causation
		if c == "" || listed[c] || !domain.ValidUUID(c) || slices.Contains(out, c) {
			continue
		}
		out = append(out, c)
	}
	slices.Sort(out)
	if len(out) > maxCausationLookups {
		out = out[:maxCausationLookups]
	}
	return out
}

// dedupe drops the second copy of an event (the same service and id).
func dedupe(evs []journeyEvent) []journeyEvent {
	seen := make(map[[2]string]bool, len(evs))
	out := evs[:0]
	for _, e := range evs {
		k := [2]string{e.Service, e.EventID}
		if !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out
}

// chronological is the order of events that no causation orders:
// recorded_at, then service, stream and version.
func chronological(a, b journeyEvent) int {
	return cmp.Or(a.RecordedAt.Compare(b.RecordedAt), cmp.Compare(a.Service, b.Service),
		cmp.Compare(a.Stream, b.Stream), cmp.Compare(a.Version, b.Version), cmp.Compare(a.EventID, b.EventID))
}

// causalOrder orders evs so that an event comes after the event its
// causation id names when that one is listed, and otherwise
// chronologically: of the events whose cause is already placed (or not
// listed), the earliest goes next. The clocks of two services may
// disagree by more than the time between a cause and its effect, which a
// plain sort by time would show backwards. Events of one stream keep their
// version order too (the store's own causality). A cycle, which no store
// writes, is broken chronologically.
func causalOrder(evs []journeyEvent) []journeyEvent {
	n := len(evs)
	slices.SortStableFunc(evs, chronological)
	index := make(map[string]int, n)
	for i, e := range evs {
		index[e.EventID] = i
	}
	// waiting[i] counts the events that must come before i and are not
	// placed yet: its cause and the previous version of its stream, when
	// listed.
	waiting := make([]int, n)
	children := make([][]int, n)
	link := func(before, after int) {
		children[before] = append(children[before], after)
		waiting[after]++
	}
	streams := make(map[[2]string][]int)
	for i, e := range evs {
		if p, ok := index[e.causation]; ok && p != i {
			link(p, i)
		}
		k := [2]string{e.Service, e.Stream}
		streams[k] = append(streams[k], i)
	}
	for _, idx := range streams {
		slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(evs[a].Version, evs[b].Version) })
		for j := 1; j < len(idx); j++ {
			link(idx[j-1], idx[j])
		}
	}
	ready := &indexHeap{}
	for i := range n {
		if waiting[i] == 0 {
			heap.Push(ready, i)
		}
	}
	placed := make([]bool, n)
	out := make([]journeyEvent, 0, n)
	for len(out) < n {
		if ready.Len() == 0 {
			// A cycle: place the earliest event not placed yet.
			for i := range n {
				if !placed[i] {
					waiting[i] = 0
					heap.Push(ready, i)
					break
				}
			}
		}
		i := heap.Pop(ready).(int)
		if placed[i] {
			continue
		}
		placed[i] = true
		out = append(out, evs[i])
		for _, c := range children[i] {
			if waiting[c]--; waiting[c] == 0 && !placed[c] {
				heap.Push(ready, c)
			}
		}
	}
	return out
}

// indexHeap is a min-heap of indexes into the chronologically sorted
// events, so the earliest ready event comes first.
type indexHeap []int

func (h indexHeap) Len() int           { return len(h) }
func (h indexHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h indexHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *indexHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *indexHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
