package shipping_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

type shipmentView struct {
	ShipmentID string        `json:"shipment_id"`
	OrderID    string        `json:"order_id"`
	Status     string        `json:"status"`
	Items      []order.Item  `json:"items"`
	Address    order.Address `json:"address"`
	Reason     string        `json:"reason"`
	CreatedAt  time.Time     `json:"created_at"`
	UpdatedAt  time.Time     `json:"updated_at"`
	Version    int64         `json:"version"`
}

// scheduleFor schedules a shipment of orderID as the saga would and
// returns the shipment's id.
func scheduleFor(t *testing.T, env *servetest.Env, orderID, country string) string {
	t.Helper()
	h := commands.NewShipping(env.Store, commands.Config{})
	id := uuid.NewString()
	_, err := h.Schedule(t.Context(), commands.Meta{CommandID: uuid.NewString(), Now: time.Now()}, commands.ScheduleShipment{
		ShipmentID: id,
		OrderID:    orderID,
		Items:      []order.Item{{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 100}},
		Address:    order.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: country},
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func readShipment(t *testing.T, env *servetest.Env, id string, done func(shipmentView) bool) shipmentView {
	t.Helper()
	var v shipmentView
	env.Eventually(t, 10*time.Second, "/api/shipments/"+id, func(r servetest.Response) bool {
		if r.Status != http.StatusOK {
			return false
		}
		r.JSON(t, &v)
		return done(v)
	})
	return v
}

// TestScheduleThenRead: scheduled, dispatched and refused shipments are
// visible on the query side within a second.
func TestScheduleThenRead(t *testing.T) {
	env := servetest.Start(t, "shipping")
	orderID := uuid.NewString()
	id := scheduleFor(t, env, orderID, "US")
	v := readShipment(t, env, id, func(shipmentView) bool { return true })
	if v.ShipmentID != id || v.OrderID != orderID || v.Status != "scheduled" || v.Version != 1 || v.Reason != "" ||
		!slices.Equal(v.Items, []order.Item{{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 100}}) ||
		v.Address.Country != "US" || v.CreatedAt.Location() != time.UTC || v.CreatedAt.IsZero() {
		t.Fatalf("shipment %+v", v)
	}

	if res := env.Post(t, "/api/shipments/"+id+"/dispatch", `{}`); res.Status != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", res.Status, res.Body)
	}
	readShipment(t, env, id, func(v shipmentView) bool { return v.Status == "dispatched" && v.Version == 2 })

	refused := scheduleFor(t, env, uuid.NewString(), "BR")
	v = readShipment(t, env, refused, func(shipmentView) bool { return true })
	if v.Status != "cancelled" || v.Reason != "destination_not_served" {
		t.Fatalf("refused shipment shows %q (%q), want cancelled (destination_not_served)", v.Status, v.Reason)
	}
	// A refusal keeps what was asked for.
	if !slices.Equal(v.Items, []order.Item{{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 100}}) || v.Address.Country != "BR" {
		t.Fatalf("refused shipment lost its items or address: %+v", v)
	}
}

func TestReadUnknownShipment(t *testing.T) {
	env := servetest.Start(t, "shipping")
	scheduleFor(t, env, uuid.NewString(), "US")
	for _, id := range []string{uuid.NewString(), "nope"} {
		env.Get(t, "/api/shipments/"+id).WantProblem(t, http.StatusNotFound, httpx.SlugNotFound)
	}
}

// TestListShipments filters by order and pages through the results.
func TestListShipments(t *testing.T) {
	env := servetest.Start(t, "shipping")
	// One shipment per order (the domain schedules one per order); the
	// third is the one of order A.
	orderA := uuid.NewString()
	var all []string
	var ofA string
	for i := range 5 {
		o := uuid.NewString()
		if i == 2 {
			o = orderA
		}
		id := scheduleFor(t, env, o, "FR")
		if o == orderA {
			ofA = id
		}
		all = append(all, id)
	}
	env.Eventually(t, 10*time.Second, "/api/shipments", func(r servetest.Response) bool {
		var p httpx.Page[shipmentView]
		r.JSON(t, &p)
		return len(p.Items) == 5
	})

	items, sizes := servetest.Pages[shipmentView](t, env, "/api/shipments?limit=2")
	var got []string
	for _, s := range items {
		got = append(got, s.ShipmentID)
	}
	slices.Reverse(all) // newest first
	if !slices.Equal(got, all) || !slices.Equal(sizes, []int{2, 2, 1}) {
		t.Fatalf("pages %v listed %v, want %v", sizes, got, all)
	}

	res := env.Get(t, "/api/shipments?order_id="+strings.ToUpper(orderA))
	var p httpx.Page[shipmentView]
	res.JSON(t, &p)
	if len(p.Items) != 1 || p.Items[0].ShipmentID != ofA || p.Next != "" {
		t.Fatalf("shipments of order A: %s", res.Body)
	}
	res = env.Get(t, "/api/shipments?order_id="+uuid.NewString())
	res.JSON(t, &p)
	if len(p.Items) != 0 || p.Next != "" {
		t.Fatalf("shipments of an unknown order: %s", res.Body)
	}
}

func TestListShipmentsBadParameters(t *testing.T) {
	env := servetest.Start(t, "shipping")
	env.WantBadQueries(t, "/api/shipments", append(servetest.BadLimits(), []servetest.BadQuery{
		{Name: "bad order id", Query: "order_id=42", Fields: []string{"order_id"}},
		{Name: "both", Query: "limit=9999&order_id=x", Fields: []string{"limit", "order_id"}},
		{Name: "after garbage", Query: "after=***", Fields: []string{"after"}},
	}...))
}
