package shipping_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// schedule creates a shipment the way the saga does, through the shipping
// command handler on the service's store, and returns its id.
func schedule(t *testing.T, env *servetest.Env, country string) string {
	t.Helper()
	h := commands.NewShipping(env.Store, commands.Config{})
	id := uuid.NewString()
	_, err := h.Schedule(t.Context(), commands.Meta{CommandID: uuid.NewString(), Now: time.Now()}, commands.ScheduleShipment{
		ShipmentID: id,
		OrderID:    uuid.NewString(),
		Items:      []order.Item{{SKU: "SKU-1", Quantity: 1, UnitPriceCents: 100}},
		Address:    order.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: country},
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

type dispatched struct {
	ShipmentID string `json:"shipment_id"`
	Status     string `json:"status"`
	Version    int64  `json:"version"`
}

func TestDispatch(t *testing.T) {
	env := servetest.Start(t, "shipping")
	orderID := uuid.NewString()
	id := scheduleFor(t, env, orderID, "US")

	res := env.Post(t, "/api/shipments/"+id+"/dispatch", `{}`, httpx.RequestIDHeader, "req-dispatch-1")
	if res.Status != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", res.Status, res.Body)
	}
	var d dispatched
	res.JSON(t, &d)
	if d.ShipmentID != id || d.Status != "dispatched" || d.Version != 2 {
		t.Fatalf("answer %+v", d)
	}
	if loc := res.Header.Get("Location"); loc != "/api/shipments/"+id {
		t.Fatalf("Location %q", loc)
	}
	evs := env.Events(t, shipping.Stream(id))
	// The dispatch resumes the order's saga: it is correlated with it.
	if len(evs) != 2 || evs[1].Type != "ShipmentDispatched" || evs[1].Metadata.CorrelationID != sagas.SagaID(orderID) ||
		evs[1].Metadata.RequestID != "req-dispatch-1" {
		t.Fatalf("events %+v, want ShipmentDispatched correlated with saga %s", evs, sagas.SagaID(orderID))
	}

	// Dispatched already: 409, nothing appended.
	env.AppendsNothing(t, func() {
		env.Post(t, "/api/shipments/"+id+"/dispatch", `{}`).WantProblem(t, http.StatusConflict, httpx.SlugIllegalState)
	})
}

func TestDispatchRefusals(t *testing.T) {
	env := servetest.Start(t, "shipping")
	refused := schedule(t, env, "BR") // not served: the shipment is refused
	cancelled := schedule(t, env, "US")
	h := commands.NewShipping(env.Store, commands.Config{})
	if _, err := h.Cancel(t.Context(), commands.Meta{CommandID: uuid.NewString()}, cancelled, "order cancelled"); err != nil {
		t.Fatal(err)
	}
	scheduled := schedule(t, env, "US")

	tests := []struct {
		name, path, body string
		status           int
		slug             string
	}{
		{"unknown", "/api/shipments/" + uuid.NewString() + "/dispatch", `{}`, 404, httpx.SlugNotFound},
		{"not a uuid", "/api/shipments/12345/dispatch", `{}`, 404, httpx.SlugNotFound},
		{"refused", "/api/shipments/" + refused + "/dispatch", `{}`, 409, httpx.SlugIllegalState},
		{"cancelled", "/api/shipments/" + cancelled + "/dispatch", `{}`, 409, httpx.SlugIllegalState},
		{"unknown field", "/api/shipments/" + scheduled + "/dispatch", `{"carrier":"x"}`, 400, httpx.SlugValidation},
		{"malformed", "/api/shipments/" + scheduled + "/dispatch", `{]`, 400, httpx.SlugMalformedJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env.AppendsNothing(t, func() {
				env.Post(t, tt.path, tt.body).WantProblem(t, tt.status, tt.slug)
			})
		})
	}
	if n := len(env.Events(t, shipping.Stream(scheduled))); n != 1 {
		t.Fatalf("scheduled shipment has %d events after bad requests, want 1", n)
	}
}

func TestDispatchIdempotency(t *testing.T) {
	env := servetest.Start(t, "shipping")
	id := schedule(t, env, "US")
	path := "/api/shipments/" + id + "/dispatch"
	first := env.Post(t, path, "", "Idempotency-Key", "dispatch-1")
	if first.Status != http.StatusAccepted {
		t.Fatalf("first: %d %s", first.Status, first.Body)
	}
	again := env.Post(t, path, "", "Idempotency-Key", "dispatch-1")
	if again.Status != http.StatusAccepted || string(again.Body) != string(first.Body) {
		t.Fatalf("replay: %d %s", again.Status, again.Body)
	}
	env.Post(t, path, `{}`, "Idempotency-Key", "dispatch-1").WantProblem(t, http.StatusConflict, httpx.SlugIdempotencyKeyReused)
	if n := len(env.Events(t, shipping.Stream(id))); n != 2 {
		t.Fatalf("%d events, want 2", n)
	}
}
