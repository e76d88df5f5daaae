package chaos

import (
	"slices"
	"strings"
	"testing"
)

// consistentWorld is a run that kept every promise: one order of each
// kind (the cancelled one cancelled in time), one shipped order, and the
// stock, sagas, shipments and projections that go with them.
func consistentWorld() World {
	return World{
		Restocked: map[string]int64{"A": 100, "S": 5},
		Intents: []Intent{
			{OrderID: "o-served", SagaID: "s-served", Customer: "c1", Kind: Served, Lines: []Line{{"A", 2}}},
			{OrderID: "o-refused", SagaID: "s-refused", Customer: "c1", Kind: Refused, Lines: []Line{{"A", 1}}},
			{OrderID: "o-over", SagaID: "s-over", Customer: "c2", Kind: OverStock, Lines: []Line{{"A", 1}, {"S", 1000}}},
			{OrderID: "o-cancel", SagaID: "s-cancel", Customer: "c2", Kind: Cancelled, Lines: []Line{{"A", 3}}, CancelStatus: 202},
		},
		Orders: []Order{
			{OrderID: "o-served", CustomerID: "c1", Status: "confirmed", Items: []Line{{"A", 2}}, SagaID: "s-served"},
			{OrderID: "o-refused", CustomerID: "c1", Status: "rejected", Reason: "destination_not_served", Items: []Line{{"A", 1}}, SagaID: "s-refused"},
			{OrderID: "o-over", CustomerID: "c2", Status: "rejected", Reason: "insufficient_stock", Items: []Line{{"S", 1000}, {"A", 1}}, SagaID: "s-over"},
			{OrderID: "o-cancel", CustomerID: "c2", Status: "cancelled", Reason: "cancelled_by_customer", Items: []Line{{"A", 3}}, SagaID: "s-cancel"},
			{OrderID: "o-shipped", CustomerID: "c3", Status: "shipped", Items: []Line{{"A", 4}}, SagaID: "s-shipped"},
		},
		Sagas: []Saga{
			{SagaID: "s-served", OrderID: "o-served", Status: "completed"},
			{SagaID: "s-refused", OrderID: "o-refused", Status: "compensated"},
			{SagaID: "s-over", OrderID: "o-over", Status: "compensated"},
			{SagaID: "s-cancel", OrderID: "o-cancel", Status: "compensated"},
			{SagaID: "s-shipped", OrderID: "o-shipped", Status: "completed"},
		},
		Shipments: []Shipment{
			{ShipmentID: "sh-served", OrderID: "o-served", Status: "scheduled"},
			{ShipmentID: "sh-refused", OrderID: "o-refused", Status: "cancelled", Reason: "destination_not_served"},
			{ShipmentID: "sh-cancel", OrderID: "o-cancel", Status: "cancelled", Reason: "cancelled_by_customer"},
			{ShipmentID: "sh-shipped", OrderID: "o-shipped", Status: "dispatched"},
		},
		Stock: []Stock{
			{SKU: "A", OnHand: 96, Reserved: 2, Available: 94},
			{SKU: "S", OnHand: 5, Reserved: 0, Available: 5},
		},
		Projections: []Projection{{Name: "orders", Status: "live"}, {Name: "stock", Status: "live"}},
		Parked:      map[string]int64{"relay of orders": 0, "relay of inventory": 0},
		Replays:     []ReplayDiff{{Projection: "orders"}, {Projection: "stock"}},
		// o-shipped consumed its 4; the others released theirs or never
		// got any (o-over's 1 of A rolled back).
		Holdings: map[string]map[string]int64{"A": {"o-served": 2, "o-refused": 0, "o-over": 0, "o-cancel": 0, "o-shipped": 0}},
	}
}

func TestCheckPassesAConsistentWorld(t *testing.T) {
	if vs := Check(consistentWorld()); len(vs) != 0 {
		t.Fatalf("violations in a consistent world: %v", vs)
	}
}

func TestCheckNamesEachViolation(t *testing.T) {
	order := func(w *World, id string) *Order {
		for i := range w.Orders {
			if w.Orders[i].OrderID == id {
				return &w.Orders[i]
			}
		}
		panic("no order " + id)
	}
	tests := []struct {
		name    string
		plant   func(w *World)
		inv     string
		subject string
		detail  string
	}{
		{"acknowledged order lost", func(w *World) {
			w.Orders = slices.DeleteFunc(w.Orders, func(o Order) bool { return o.OrderID == "o-served" })
			w.Sagas = slices.DeleteFunc(w.Sagas, func(s Saga) bool { return s.OrderID == "o-served" })
			w.Shipments = slices.DeleteFunc(w.Shipments, func(s Shipment) bool { return s.OrderID == "o-served" })
			w.Stock[0].Reserved, w.Stock[0].Available = 0, 96
		}, InvAcknowledged, "order o-served", "not in the orders read model"},
		{"order of another customer", func(w *World) { order(w, "o-refused").CustomerID = "c9" },
			InvAcknowledged, "order o-refused", `customer "c9"`},
		{"order with other items", func(w *World) { order(w, "o-refused").Items = []Line{{"A", 7}} },
			InvAcknowledged, "order o-refused", "items [A x7], placed with [A x1]"},
		{"order listed twice", func(w *World) { w.Orders = append(w.Orders, *order(w, "o-over")) },
			InvAcknowledged, "order o-over", "listed twice"},
		{"served order rejected for stock", func(w *World) {
			o := order(w, "o-served")
			o.Status, o.Reason = "rejected", "insufficient_stock"
			w.Sagas[0].Status = "compensated"
			w.Shipments[0].Status = "cancelled"
			w.Stock[0].Reserved, w.Stock[0].Available = 0, 96
		}, InvOutcome, "order o-served", "served order ended rejected"},
		{"refused order confirmed", func(w *World) {
			o := order(w, "o-refused")
			o.Status, o.Reason = "confirmed", ""
			w.Sagas[1].Status = "completed"
			w.Shipments[1].Status = "scheduled"
			w.Stock[0].Reserved, w.Stock[0].Available = 3, 93
		}, InvOutcome, "order o-refused", "want rejected \"destination_not_served\""},
		{"accepted cancel not done", func(w *World) {
			o := order(w, "o-cancel")
			o.Status, o.Reason = "confirmed", ""
			w.Sagas[3].Status = "completed"
			w.Shipments[2].Status = "scheduled"
			w.Stock[0].Reserved, w.Stock[0].Available = 5, 91
		}, InvOutcome, "order o-cancel", "cancelled order ended confirmed"},
		{"order still pending", func(w *World) {
			w.Intents[3].CancelStatus = 0
			o := order(w, "o-cancel")
			o.Status, o.Reason = "pending", ""
			w.Sagas[3].Status = "compensating"
		}, InvOutcome, "order o-cancel", "still pending"},
		{"saga running", func(w *World) { w.Sagas[0].Status = "running" },
			InvSagaTerminal, "order o-served (saga s-served)", "saga is running"},
		{"saga parked as failed", func(w *World) { w.Sagas[2].Status = "failed" },
			InvSagaTerminal, "order o-over (saga s-over)", "saga is failed"},
		{"saga missing", func(w *World) { w.Sagas = w.Sagas[1:] },
			InvSagaTerminal, "order o-served", "no saga s-served"},
		{"saga and order disagree", func(w *World) { w.Sagas[1].Status = "completed" },
			InvSagaTerminal, "order o-refused (saga s-refused)", "saga completed but order rejected"},
		{"reservation leaked", func(w *World) { w.Stock[0].Reserved, w.Stock[0].Available = 5, 91 },
			InvReserved, "sku A", "reserved 5, confirmed-not-shipped orders hold 2 (1 confirmed orders: o-served)"},
		{"reservation lost", func(w *World) { w.Stock[0].Reserved, w.Stock[0].Available = 0, 96 },
			InvReserved, "sku A", "reserved 0, confirmed-not-shipped orders hold 2"},
		{"rejected order still holding stock", func(w *World) {
			w.Holdings["A"]["o-over"] = 1
			w.Stock[0].Reserved, w.Stock[0].Available = 3, 93
		}, InvReserved, "order o-over", "rejected insufficient_stock, holds 1 of sku A by the inventory's events, want 0"},
		{"confirmed order holding too little", func(w *World) { w.Holdings["A"]["o-served"] = 1 },
			InvReserved, "order o-served", "confirmed, holds 1 of sku A by the inventory's events, want 2"},
		{"stock held for an unknown order", func(w *World) { w.Holdings["S"] = map[string]int64{"o-ghost": 2} },
			InvReserved, "order o-ghost", "unknown to the orders read model, holds 2 of sku S"},
		{"negative available", func(w *World) { w.Stock[1] = Stock{SKU: "S", OnHand: 5, Reserved: 6, Available: -1} },
			InvOversold, "sku S", "available -1"},
		{"reserved and shipped above restocked", func(w *World) {
			w.Restocked["A"] = 5
			w.Stock[0].OnHand, w.Stock[0].Available = 1, -1
		}, InvOversold, "sku A", "reserved 2 + shipped 4 > restocked 5"},
		{"on hand off", func(w *World) { w.Stock[0].OnHand, w.Stock[0].Available = 100, 98 },
			InvOversold, "sku A", "on_hand 100, restocked 100 - shipped 4"},
		{"confirmed order without stock item", func(w *World) { w.Stock = w.Stock[1:] },
			InvOversold, "sku A", "no stock item"},
		{"confirmed order without shipment", func(w *World) { w.Shipments = w.Shipments[1:] },
			InvShipment, "order o-served", "confirmed with 0 scheduled shipments"},
		{"confirmed order with two shipments", func(w *World) {
			w.Shipments = append(w.Shipments, Shipment{ShipmentID: "sh-2", OrderID: "o-served", Status: "scheduled"})
		}, InvShipment, "order o-served", "confirmed with 2 scheduled shipments"},
		{"shipped order not dispatched", func(w *World) { w.Shipments[3].Status = "scheduled" },
			InvShipment, "order o-shipped", "shipped with 0 dispatched shipments"},
		{"rejected order shipping", func(w *World) { w.Shipments[1].Status = "scheduled" },
			InvShipment, "order o-refused", "rejected yet 1 shipments will ship"},
		{"shipment of no order", func(w *World) {
			w.Shipments = append(w.Shipments, Shipment{ShipmentID: "sh-x", OrderID: "o-ghost", Status: "cancelled"})
		}, InvShipment, "order o-ghost", "shipments for an order the read model does not have"},
		{"replay lost a row", func(w *World) { w.Replays[0].Missing = []string{"o-served"} },
			InvReplay, "projection orders", "row o-served is live but the replay did not build it"},
		{"replay built a row", func(w *World) { w.Replays[1].Extra = []string{"B"} },
			InvReplay, "projection stock", "row B was built by the replay"},
		{"replay changed a row", func(w *World) { w.Replays[0].Changed = []string{"o-cancel"} },
			InvReplay, "projection orders", "row o-cancel differs"},
		{"replay failed", func(w *World) { w.Replays[1].Err = "replay answered 503" },
			InvReplay, "projection stock", "could not compare: replay answered 503"},
		{"projection parked", func(w *World) { w.Projections[1].Parked = 2 },
			InvParked, "projection stock", "2 events parked"},
		{"relay parked", func(w *World) { w.Parked["relay of inventory"] = 1 },
			InvParked, "relay of inventory", "1 parked"},
		{"coordinator parked", func(w *World) { w.Parked["coordinator sagas-2"] = 3 },
			InvParked, "coordinator sagas-2", "3 parked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := consistentWorld()
			tt.plant(&w)
			vs := Check(w)
			found := false
			for _, v := range vs {
				if v.Invariant == tt.inv && v.Subject == tt.subject && strings.Contains(v.Detail, tt.detail) {
					found = true
				}
			}
			if !found {
				t.Fatalf("want a %s violation of %s saying %q, got %v", tt.inv, tt.subject, tt.detail, vs)
			}
		})
	}
}

func TestCheckAcceptsStepTimeouts(t *testing.T) {
	w := consistentWorld()
	o := &w.Orders[0]
	o.Status, o.Reason = "rejected", "step_timeout"
	w.Sagas[0].Status = "compensated"
	w.Shipments[0].Status = "cancelled"
	w.Stock[0].Reserved, w.Stock[0].Available = 0, 96
	w.Holdings["A"]["o-served"] = 0
	if vs := Check(w); len(vs) != 0 {
		t.Fatalf("a step timeout under faults is a legitimate end, got %v", vs)
	}
	if got := Tally(w); got.TimedOut != 1 || got.ByKind[Served]["rejected"] != 1 {
		t.Fatalf("tally %+v, want the served order counted as rejected by a timeout", got)
	}
}

func TestDiffRows(t *testing.T) {
	before := map[string]string{"a": "1", "b": "2", "c": "3"}
	after := map[string]string{"b": "2", "c": "4", "d": "5"}
	missing, extra, changed := diffRows(before, after)
	if !slices.Equal(missing, []string{"a"}) || !slices.Equal(extra, []string{"d"}) || !slices.Equal(changed, []string{"c"}) {
		t.Fatalf("missing %v extra %v changed %v, want [a] [d] [c]", missing, extra, changed)
	}
	if m, e, c := diffRows(before, before); len(m)+len(e)+len(c) != 0 {
		t.Fatalf("a model differs from itself: %v %v %v", m, e, c)
	}
}
