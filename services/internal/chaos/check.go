package chaos

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Kind is what an order of the load is meant to exercise.
type Kind string

// The kinds of order the load places.
const (
	// Served ships to a served country with ample stock: it is confirmed.
	Served Kind = "served"
	// Refused ships to a country shipping does not serve: the saga
	// compensates and the order is rejected (destination_not_served).
	Refused Kind = "refused"
	// OverStock asks more units than the sku ever had: it is rejected
	// (insufficient_stock).
	OverStock Kind = "over_stock"
	// Cancelled is a served order its customer cancels at once.
	Cancelled Kind = "cancelled"
)

// Kinds lists every kind, in the order the summary prints them.
var Kinds = []Kind{Served, Refused, OverStock, Cancelled}

// Line is one line of an order.
type Line struct {
	SKU      string `json:"sku"`
	Quantity int64  `json:"quantity"`
}

// Intent is an order the load placed and the gateway acknowledged (202),
// with what the client meant by it.
type Intent struct {
	OrderID  string
	SagaID   string
	Customer string
	Kind     Kind
	Country  string
	Lines    []Line
	// CancelStatus is the final answer to its cancel (202 or 409), 0 when
	// it was not cancelled or the cancel got no final answer.
	CancelStatus int
}

// Order is an order as GET /api/orders shows it.
type Order struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Status     string `json:"status"`
	Reason     string `json:"reason"`
	Items      []Line `json:"items"`
	SagaID     string `json:"saga_id"`
	ShipmentID string `json:"shipment_id"`
}

// Saga is an item of GET /api/sagas.
type Saga struct {
	SagaID  string `json:"saga_id"`
	OrderID string `json:"order_id"`
	Status  string `json:"status"`
}

// Shipment is an item of GET /api/shipments.
type Shipment struct {
	ShipmentID string `json:"shipment_id"`
	OrderID    string `json:"order_id"`
	Status     string `json:"status"`
	Reason     string `json:"reason"`
}

// Stock is an item of GET /api/inventory.
type Stock struct {
	SKU       string `json:"sku"`
	OnHand    int64  `json:"on_hand"`
	Reserved  int64  `json:"reserved"`
	Available int64  `json:"available"`
}

// Projection is an item of GET /admin/projections, the part checked.
type Projection struct {
	Name          string `json:"name"`
	Status        string `json:"status"`
	Lag           uint64 `json:"lag"`
	Parked        int64  `json:"parked"`
	ActiveVersion int    `json:"active_version"`
}

// ReplayDiff is how a read model read before a fresh replay of its store
// differs from the one the replay built; no ids means they are equal.
type ReplayDiff struct {
	Projection string
	// Missing are rows the live model had and the replay did not build,
	// Extra the reverse, Changed rows both have with different content.
	Missing, Extra, Changed []string
	// Err says why the replay could not be compared, if it could not.
	Err string
}

// World is everything the checks judge: what the load asked and was
// told, and what the stack shows once quiet.
type World struct {
	// Restocked is every unit restocked per sku.
	Restocked map[string]int64
	Intents   []Intent
	Orders    []Order
	Sagas     []Saga
	Shipments []Shipment
	Stock     []Stock
	// Projections are every service's projections after the replays.
	Projections []Projection
	// Parked counts events or commands parked elsewhere than in a
	// projection, by what parked them ("relay of orders", "coordinator
	// sagas-1"): each one is a violation.
	Parked  map[string]int64
	Replays []ReplayDiff
	// Holdings, when known, are the units each order holds of each sku
	// by the inventory's events (sku -> order id -> units).
	Holdings map[string]map[string]int64
}

// The invariants, as violations name them.
const (
	InvAcknowledged = "acknowledged-order-exists"
	InvOutcome      = "outcome-matches-intent"
	InvSagaTerminal = "saga-terminal"
	InvReserved     = "reserved-equals-confirmed"
	InvOversold     = "not-oversold"
	InvShipment     = "one-shipment-per-confirmed-order"
	InvReplay       = "read-model-equals-replay"
	InvParked       = "nothing-parked"
)

// Violation is one broken invariant, naming what breaks it: an order id,
// a sku, a saga, a projection or a service.
type Violation struct {
	Invariant string
	Subject   string
	Detail    string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s: %s: %s", v.Invariant, v.Subject, v.Detail)
}

// Outcomes counts the final statuses of the acknowledged orders by kind,
// for the summary; TimedOut are orders a saga step timeout rejected, which
// is allowed under faults but worth showing.
type Outcomes struct {
	ByKind   map[Kind]map[string]int
	TimedOut int
}

// Tally counts the acknowledged orders' final statuses per kind.
func Tally(w World) Outcomes {
	orders := make(map[string]Order, len(w.Orders))
	for _, o := range w.Orders {
		orders[o.OrderID] = o
	}
	out := Outcomes{ByKind: map[Kind]map[string]int{}}
	for _, in := range w.Intents {
		m := out.ByKind[in.Kind]
		if m == nil {
			m = map[string]int{}
			out.ByKind[in.Kind] = m
		}
		o, ok := orders[in.OrderID]
		status := "missing"
		if ok {
			status = o.Status
			if o.Reason == "step_timeout" {
				out.TimedOut++
			}
		}
		m[status]++
	}
	return out
}

// Check judges w against every invariant and returns the violations,
// sorted by invariant and subject; none means the run kept its promises.
func Check(w World) []Violation {
	var vs []Violation
	add := func(inv, subject, format string, args ...any) {
		vs = append(vs, Violation{Invariant: inv, Subject: subject, Detail: fmt.Sprintf(format, args...)})
	}
	orders := make(map[string]Order, len(w.Orders))
	for _, o := range w.Orders {
		if _, dup := orders[o.OrderID]; dup {
			add(InvAcknowledged, "order "+o.OrderID, "listed twice by the orders read model")
		}
		orders[o.OrderID] = o
	}
	sagas := make(map[string]Saga, len(w.Sagas))
	for _, s := range w.Sagas {
		sagas[s.SagaID] = s
	}
	shipments := map[string][]Shipment{}
	for _, s := range w.Shipments {
		shipments[s.OrderID] = append(shipments[s.OrderID], s)
	}

	checkIntents(w.Intents, orders, add)
	checkSagas(w.Intents, orders, sagas, w.Sagas, add)
	checkStock(w, add)
	checkHoldings(w, orders, add)
	checkShipments(w.Orders, shipments, add)

	for _, d := range w.Replays {
		subject := "projection " + d.Projection
		if d.Err != "" {
			add(InvReplay, subject, "could not compare: %s", d.Err)
		}
		for _, id := range d.Missing {
			add(InvReplay, subject, "row %s is live but the replay did not build it", id)
		}
		for _, id := range d.Extra {
			add(InvReplay, subject, "row %s was built by the replay but was not live", id)
		}
		for _, id := range d.Changed {
			add(InvReplay, subject, "row %s differs between the live model and the replay", id)
		}
	}
	for _, p := range w.Projections {
		if p.Parked > 0 {
			add(InvParked, "projection "+p.Name, "%d events parked", p.Parked)
		}
	}
	for _, who := range sortedKeys(w.Parked) {
		if n := w.Parked[who]; n > 0 {
			add(InvParked, who, "%d parked", n)
		}
	}
	sort.SliceStable(vs, func(i, j int) bool {
		if vs[i].Invariant != vs[j].Invariant {
			return vs[i].Invariant < vs[j].Invariant
		}
		return vs[i].Subject < vs[j].Subject
	})
	return vs
}

type addFunc func(inv, subject, format string, args ...any)

// checkIntents: every acknowledged order exists as it was placed, and
// ended as its kind says it must.
func checkIntents(intents []Intent, orders map[string]Order, add addFunc) {
	for _, in := range intents {
		subject := "order " + in.OrderID
		o, ok := orders[in.OrderID]
		if !ok {
			add(InvAcknowledged, subject, "acknowledged to customer %s (%s) but not in the orders read model", in.Customer, in.Kind)
			continue
		}
		if o.CustomerID != in.Customer {
			add(InvAcknowledged, subject, "customer %q, placed by %q", o.CustomerID, in.Customer)
		}
		if got, want := linesString(o.Items), linesString(in.Lines); got != want {
			add(InvAcknowledged, subject, "items %s, placed with %s", got, want)
		}
		want := wantOutcome(in)
		if o.Reason == "step_timeout" && o.Status == "rejected" && want.status != "cancelled" {
			// A step that outlived its deadline while its participant
			// was down is a legitimate end; the summary counts them.
			continue
		}
		if want.status == "" {
			if o.Status == "pending" {
				add(InvOutcome, subject, "still pending")
			}
			continue
		}
		if o.Status != want.status || o.Reason != want.reason {
			add(InvOutcome, subject, "%s order ended %s %q, want %s %q", in.Kind, o.Status, o.Reason, want.status, want.reason)
		}
	}
}

type outcome struct{ status, reason string }

// wantOutcome is the final status an acknowledged order must reach; an
// empty status accepts any terminal one.
func wantOutcome(in Intent) outcome {
	switch in.Kind {
	case Served:
		return outcome{"confirmed", ""}
	case Refused:
		return outcome{"rejected", "destination_not_served"}
	case OverStock:
		return outcome{"rejected", "insufficient_stock"}
	case Cancelled:
		switch in.CancelStatus {
		case 202:
			return outcome{"cancelled", "cancelled_by_customer"}
		case 409:
			// Refused a cancel: it had ended already, and a served order
			// can only have ended by a step timeout.
			return outcome{"rejected", "step_timeout"}
		}
	}
	return outcome{}
}

// checkSagas: every saga is terminal and agrees with its order, and every
// acknowledged order has one.
func checkSagas(intents []Intent, orders map[string]Order, sagas map[string]Saga, all []Saga, add addFunc) {
	for _, in := range intents {
		if _, ok := sagas[in.SagaID]; !ok {
			add(InvSagaTerminal, "order "+in.OrderID, "no saga %s", in.SagaID)
		}
	}
	for _, s := range all {
		subject := "order " + s.OrderID + " (saga " + s.SagaID + ")"
		switch s.Status {
		case "completed", "compensated":
		default:
			add(InvSagaTerminal, subject, "saga is %s", s.Status)
			continue
		}
		o, ok := orders[s.OrderID]
		if !ok {
			add(InvSagaTerminal, subject, "saga %s for an order the read model does not have", s.Status)
			continue
		}
		okPair := (s.Status == "completed" && (o.Status == "confirmed" || o.Status == "shipped")) ||
			(s.Status == "compensated" && (o.Status == "rejected" || o.Status == "cancelled"))
		if !okPair {
			add(InvSagaTerminal, subject, "saga %s but order %s", s.Status, o.Status)
		}
	}
}

// checkStock: reserved is the units of confirmed-not-shipped orders, and
// no sku ever gave out more than it was restocked with.
func checkStock(w World, add addFunc) {
	reserved := map[string]int64{}
	shipped := map[string]int64{}
	for _, o := range w.Orders {
		for _, l := range o.Items {
			switch o.Status {
			case "confirmed":
				reserved[l.SKU] += l.Quantity
			case "shipped":
				shipped[l.SKU] += l.Quantity
			}
		}
	}
	seen := map[string]bool{}
	for _, s := range w.Stock {
		seen[s.SKU] = true
		subject := "sku " + s.SKU
		if s.Reserved != reserved[s.SKU] {
			add(InvReserved, subject, "reserved %d, confirmed-not-shipped orders hold %d (%s)", s.Reserved, reserved[s.SKU], holders(w.Orders, s.SKU))
		}
		restocked := w.Restocked[s.SKU]
		if s.Available < 0 || s.Available != s.OnHand-s.Reserved {
			add(InvOversold, subject, "available %d with on_hand %d and reserved %d", s.Available, s.OnHand, s.Reserved)
		}
		if s.Reserved+shipped[s.SKU] > restocked {
			add(InvOversold, subject, "reserved %d + shipped %d > restocked %d", s.Reserved, shipped[s.SKU], restocked)
		}
		if s.OnHand != restocked-shipped[s.SKU] {
			add(InvOversold, subject, "on_hand %d, restocked %d - shipped %d", s.OnHand, restocked, shipped[s.SKU])
		}
	}
	for _, sku := range sortedKeys(reserved) {
		if !seen[sku] && reserved[sku] > 0 {
			add(InvOversold, "sku "+sku, "no stock item, yet confirmed orders hold %d units (%s)", reserved[sku], holders(w.Orders, sku))
		}
	}
}

// checkHoldings: by the inventory's own events, a confirmed order holds
// exactly its lines and any other order holds nothing, so that a
// reservation that leaked names its order. Only the skus of w.Stock (the
// run's) are judged.
func checkHoldings(w World, orders map[string]Order, add addFunc) {
	if w.Holdings == nil {
		return
	}
	for _, s := range w.Stock {
		want := map[string]int64{}
		for _, o := range w.Orders {
			if o.Status != "confirmed" {
				continue
			}
			for _, l := range o.Items {
				if l.SKU == s.SKU {
					want[o.OrderID] += l.Quantity
				}
			}
		}
		held := w.Holdings[s.SKU]
		ids := sortedKeys(want)
		for _, id := range sortedKeys(held) {
			if _, ok := want[id]; !ok {
				ids = append(ids, id)
			}
		}
		for _, id := range ids {
			if held[id] == want[id] {
				continue
			}
			status := "unknown to the orders read model"
			if o, ok := orders[id]; ok {
				status = o.Status
				if o.Reason != "" {
					status += " " + o.Reason
				}
			}
			add(InvReserved, "order "+id, "%s, holds %d of sku %s by the inventory's events, want %d", status, held[id], s.SKU, want[id])
		}
	}
}

// holders names up to five confirmed orders holding sku, so that a
// reservation violation points at orders to look at.
func holders(orders []Order, sku string) string {
	var ids []string
	n := 0
	for _, o := range orders {
		if o.Status != "confirmed" {
			continue
		}
		for _, l := range o.Items {
			if l.SKU == sku {
				n++
				if len(ids) < 5 {
					ids = append(ids, o.OrderID)
				}
			}
		}
	}
	if n == 0 {
		return "no confirmed order"
	}
	s := fmt.Sprintf("%d confirmed orders: %s", n, strings.Join(ids, ", "))
	if n > len(ids) {
		s += ", ..."
	}
	return s
}

// checkShipments: a confirmed order has exactly one scheduled shipment, a
// shipped one exactly one dispatched, and a rejected or cancelled one
// none that will ship.
func checkShipments(orders []Order, byOrder map[string][]Shipment, add addFunc) {
	known := map[string]bool{}
	for _, o := range orders {
		known[o.OrderID] = true
		subject := "order " + o.OrderID
		live := 0
		for _, s := range byOrder[o.OrderID] {
			if s.Status == "scheduled" || s.Status == "dispatched" {
				live++
			}
		}
		switch o.Status {
		case "confirmed", "shipped":
			want := map[string]string{"confirmed": "scheduled", "shipped": "dispatched"}[o.Status]
			n := 0
			for _, s := range byOrder[o.OrderID] {
				if s.Status == want {
					n++
				}
			}
			if n != 1 || live != 1 {
				add(InvShipment, subject, "%s with %d %s shipments (%d that will ship), want exactly 1", o.Status, n, want, live)
			}
		case "rejected", "cancelled":
			if live > 0 {
				add(InvShipment, subject, "%s yet %d shipments will ship", o.Status, live)
			}
		}
	}
	for _, id := range sortedKeys(byOrder) {
		if !known[id] {
			add(InvShipment, "order "+id, "%d shipments for an order the read model does not have", len(byOrder[id]))
		}
	}
}

// linesString is lines in a canonical form, for comparing.
func linesString(lines []Line) string {
	parts := make([]string, len(lines))
	for i, l := range lines {
		parts[i] = fmt.Sprintf("%s x%d", l.SKU, l.Quantity)
	}
	slices.Sort(parts)
	return "[" + strings.Join(parts, ", ") + "]"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
