package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/orderflow/orderflow/services/gateway"
	"github.com/orderflow/orderflow/services/gateway/auth"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
)

// consoleEvent is an item of GET /admin/events.
type consoleEvent struct {
	Service       string          `json:"service"`
	EventID       string          `json:"event_id"`
	Stream        string          `json:"stream"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	Version       int64           `json:"version"`
	Position      uint64          `json:"position"`
	RecordedAt    time.Time       `json:"recorded_at"`
	Data          json.RawMessage `json:"data"`
	Metadata      struct {
		CorrelationID string `json:"correlation_id"`
		CausationID   string `json:"causation_id"`
	} `json:"metadata"`
}

type consoleJourney struct {
	Items   []consoleEvent `json:"items"`
	Partial bool           `json:"partial"`
	Missing []string       `json:"missing"`
}

// sse is one server-sent event.
type sse struct{ event, data string }

// openUpdates opens GET /admin/updates through g and delivers its events
// on the returned channel, which is closed when the stream ends; cancel
// ends it from the client's side.
func openUpdates(t *testing.T, g *gw, tok string) (<-chan sse, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.base+"/admin/updates", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		res.Body.Close()
		t.Fatalf("GET /admin/updates: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	out := make(chan sse, 64)
	go func() {
		defer close(out)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		var cur sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.event != "" {
					select {
					case out <- cur:
					case <-ctx.Done():
						return
					}
				}
				cur = sse{}
			case strings.HasPrefix(line, "event: "):
				cur.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				cur.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return out, cancel
}

// nextUpdate waits for the next event named event that done accepts.
func nextUpdate(t *testing.T, events <-chan sse, event string, done func(data string) bool) string {
	t.Helper()
	return awaitUpdates(t, events, map[string]func(string) bool{event: done})[event]
}

// awaitUpdates reads the stream until, for every event name of want, an
// event of that name has been accepted by its function, in whatever order
// they come; it returns the data of each accepted one.
func awaitUpdates(t *testing.T, events <-chan sse, want map[string]func(data string) bool) map[string]string {
	t.Helper()
	got := map[string]string{}
	timer := time.NewTimer(within)
	defer timer.Stop()
	for len(got) < len(want) {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("the update stream ended while waiting for %v (got %v)", slices.Collect(maps.Keys(want)), got)
			}
			if _, done := got[e.event]; !done && want[e.event] != nil && want[e.event](e.data) {
				got[e.event] = e.data
			}
		case <-timer.C:
			t.Fatalf("not every update of %v within %s (got %v)", slices.Collect(maps.Keys(want)), within, got)
		}
	}
	return got
}

// TestConsoleBackEnd drives what the operator console calls through a
// real gateway in front of the four real services: the stitched journey
// of an order, the live updates, the sagas' stats and definitions, the
// roles, and a journey that is partial while a service is down.
func TestConsoleBackEnd(t *testing.T) {
	s := newStack(t)
	g := startGateway(t, s, func(c *gateway.Config) { c.RateLimit = rate.Inf })
	admin := token(t, "admin", auth.RoleAdmin)
	customer := token(t, "c-42", auth.RoleCustomer)

	t.Run("roles", func(t *testing.T) {
		for _, path := range []string{"/admin/events?correlation_id=x", "/admin/updates", "/admin/sagas/stats", "/admin/saga-definitions"} {
			g.do(t, http.MethodGet, path, "", "").problem(t, http.StatusUnauthorized, "unauthorized")
			g.do(t, http.MethodGet, path, "", customer).problem(t, http.StatusForbidden, "forbidden")
		}
	})

	if res := g.do(t, http.MethodPost, "/api/inventory/SKU-CON/restock", `{"quantity": 100}`, admin); res.Status != http.StatusAccepted {
		t.Fatalf("restock: %d %s", res.Status, res.Body)
	}
	eventually(t, g, "/api/inventory/SKU-CON", admin, "stock visible", status(http.StatusOK))

	// The stream is open before the saga below completes.
	updates, closeUpdates := openUpdates(t, g, admin)
	type stats struct {
		Counts map[string]int `json:"counts"`
		Types  []string       `json:"types"`
	}
	var first stats
	if err := json.Unmarshal([]byte(nextUpdate(t, updates, "sagas", func(string) bool { return true })), &first); err != nil {
		t.Fatal(err)
	}
	nextUpdate(t, updates, "projections", func(data string) bool {
		var l struct {
			Items []struct{ Name string } `json:"items"`
		}
		return json.Unmarshal([]byte(data), &l) == nil && len(l.Items) >= 4
	})

	order := place(t, g, admin, "c-42", "SKU-CON", 2)
	eventually(t, g, "/api/sagas/"+order.SagaID, admin, "saga completed", func(r response) bool {
		var v struct {
			Status        string `json:"status"`
			CorrelationID string `json:"correlation_id"`
		}
		return r.Status == http.StatusOK && json.Unmarshal(r.Body, &v) == nil && v.Status == "completed" && v.CorrelationID == order.SagaID
	})

	t.Run("updates", func(t *testing.T) {
		// The counts and the saga's own event may come in either order
		// (the saga read model may change between the two reads of one
		// poll).
		got := awaitUpdates(t, updates, map[string]func(string) bool{
			"sagas": func(data string) bool {
				var st stats
				return json.Unmarshal([]byte(data), &st) == nil && st.Counts["completed"] == first.Counts["completed"]+1
			},
			"saga": func(data string) bool {
				var v struct {
					SagaID  string `json:"saga_id"`
					Status  string `json:"status"`
					Version int64  `json:"version"`
				}
				return json.Unmarshal([]byte(data), &v) == nil && v.SagaID == order.SagaID && v.Status == "completed" && v.Version > 1
			},
		})
		t.Logf("saga event: %s", got["saga"])
		before := g.metric(t, "orderflow_gateway_update_streams")
		if before < 1 {
			t.Errorf("update streams gauge %v with a stream open", before)
		}
		closeUpdates()
		// The handler notices the client's going, stops polling and
		// leaves nothing running.
		coordinatortest.Eventually(t, within, "update stream ended", func() (bool, string) {
			n := g.metric(t, "orderflow_gateway_update_streams")
			return n == before-1, fmt.Sprintf("%v streams open", n)
		})
	})

	t.Run("closing the gateway ends its streams", func(t *testing.T) {
		other := startGateway(t, s)
		events, _ := openUpdates(t, other, admin)
		nextUpdate(t, events, "sagas", func(string) bool { return true })
		other.Close()
		timer := time.NewTimer(within)
		defer timer.Stop()
		for {
			select {
			case _, ok := <-events:
				if !ok {
					return
				}
			case <-timer.C:
				t.Fatalf("the stream still runs %s after Close", within)
			}
		}
	})

	t.Run("stats and definitions", func(t *testing.T) {
		res := g.do(t, http.MethodGet, "/admin/sagas/stats", "", admin)
		var st stats
		res.json(t, &st)
		if res.Status != http.StatusOK || st.Counts["completed"] < 1 || !slices.Contains(st.Types, "order_fulfillment") {
			t.Errorf("stats: %d %s", res.Status, res.Body)
		}
		res = g.do(t, http.MethodGet, "/admin/saga-definitions", "", admin)
		if res.Status != http.StatusOK || !strings.Contains(string(res.Body), `"compensation":"inventory.release_stock"`) {
			t.Errorf("definitions: %d %s", res.Status, res.Body)
		}
	})

	// The confirmation is the saga's last event before it completes;
	// the journey may be asked for once the orders service has it.
	eventually(t, g, "/api/orders/"+order.OrderID, admin, "order confirmed", func(r response) bool {
		return r.Status == http.StatusOK && strings.Contains(string(r.Body), `"status":"confirmed"`)
	})
	journeyPath := "/admin/events?correlation_id=" + order.SagaID

	t.Run("journey", func(t *testing.T) {
		res := g.do(t, http.MethodGet, journeyPath, "", admin)
		if res.Status != http.StatusOK || res.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%d %s (Cache-Control %q)", res.Status, res.Body, res.Header.Get("Cache-Control"))
		}
		var j consoleJourney
		res.json(t, &j)
		if j.Partial || len(j.Missing) != 0 {
			t.Errorf("partial %v, missing %v with every service up", j.Partial, j.Missing)
		}
		index := map[string]int{}
		services := map[string]bool{}
		var types []string
		for i, e := range j.Items {
			index[e.EventID] = i
			services[e.Service] = true
			types = append(types, e.Service+":"+e.Type)
		}
		for _, want := range []string{"orders:OrderPlaced", "sagas:SagaStarted", "inventory:StockReservationAccepted",
			"shipping:ShipmentScheduled", "orders:OrderConfirmed", "sagas:SagaCompleted"} {
			if !slices.Contains(types, want) {
				t.Errorf("the journey lacks %s: %v", want, types)
			}
		}
		if len(services) != 4 {
			t.Errorf("the journey has events of %v, want all four services", services)
		}
		// Causal order: an event comes after its cause, when listed.
		caused := 0
		for i, e := range j.Items {
			if p, ok := index[strings.ToLower(e.Metadata.CausationID)]; ok {
				caused++
				if p >= i {
					t.Errorf("%s %s (item %d) comes before its cause, item %d", e.Service, e.Type, i, p)
				}
			}
			if i > 0 && j.Items[i-1].Stream == e.Stream && j.Items[i-1].Service == e.Service && j.Items[i-1].Version > e.Version {
				t.Errorf("%s versions out of order at item %d", e.Stream, i)
			}
		}
		t.Logf("journey: %v", types)
		if caused < 3 {
			t.Errorf("only %d events follow a listed cause: %v", caused, types)
		}
		g.do(t, http.MethodGet, "/admin/events", "", admin).problem(t, http.StatusBadRequest, "validation")
	})

	t.Run("a service down makes the journey partial", func(t *testing.T) {
		s.stop(gateway.Shipping)
		res := g.do(t, http.MethodGet, journeyPath, "", admin)
		if res.Status != http.StatusOK {
			t.Fatalf("%d %s", res.Status, res.Body)
		}
		var j consoleJourney
		res.json(t, &j)
		if !j.Partial || !slices.Equal(j.Missing, []string{gateway.Shipping}) {
			t.Errorf("partial %v, missing %v; want shipping missing", j.Partial, j.Missing)
		}
		for _, e := range j.Items {
			if e.Service == gateway.Shipping {
				t.Errorf("an event of the stopped shipping service: %+v", e)
			}
		}
		if !slices.ContainsFunc(j.Items, func(e consoleEvent) bool { return e.Type == "OrderPlaced" }) {
			t.Errorf("the partial journey lost the others' events too: %d items", len(j.Items))
		}
	})
}
