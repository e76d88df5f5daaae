package sagas_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	engine "github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/sagas/sagatest"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

type sagaStats struct {
	Counts map[string]int64 `json:"counts"`
	Types  []string         `json:"types"`
}

// listedSaga is an item of GET /api/sagas, and sagaView the answer of
// GET /api/sagas/{id}: the engine's types with the correlation id.
type listedSaga struct {
	engine.Summary
	CorrelationID string `json:"correlation_id"`
}

type sagaView struct {
	engine.View
	CorrelationID string `json:"correlation_id"`
}

// sagaDefinition is an item of GET /admin/saga-definitions.
type sagaDefinition struct {
	Type    string `json:"type"`
	Version int    `json:"version"`
	Closing string `json:"closing"`
	Steps   []struct {
		Name         string `json:"name"`
		Command      string `json:"command"`
		Service      string `json:"service"`
		Compensation string `json:"compensation"`
		TimeoutMS    int64  `json:"timeout_ms"`
		MaxAttempts  int    `json:"max_attempts"`
		After        string `json:"after"`
	} `json:"steps"`
}

// TestSagaConsoleEndpoints checks what the operator console asks the
// sagas service: the counts per status of a set of sagas in known states,
// the list filtered by type and start time, the correlation id of a saga,
// and the definitions with their steps and compensations.
func TestSagaConsoleEndpoints(t *testing.T) {
	env := servetest.Start(t, "sagas")
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	accept := func(sg *sagatest.Saga) {
		sagatest.Reply(inventory.TypeStockReservationAccepted, inventory.StockReservationAccepted{OrderID: sg.State.OrderID()})(sg)
	}
	completed := startSaga(t, t0)
	accept(completed)
	sagatest.Reply(shipping.TypeShipmentScheduled, shipping.ShipmentScheduled{})(completed)
	sagatest.Reply(order.TypeOrderConfirmed, order.OrderConfirmed{})(completed)
	compensated := startSaga(t, t0.Add(time.Second))
	accept(compensated)
	sagatest.Reply(shipping.TypeShipmentRefused, shipping.ShipmentRefused{Reason: order.ReasonDestinationNotServed})(compensated)
	sagatest.Reply(inventory.TypeStockReservationReleased, inventory.StockReservationReleased{})(compensated)
	sagatest.Reply(order.TypeOrderRejected, order.OrderRejected{Reason: order.ReasonDestinationNotServed})(compensated)
	failed := startSaga(t, t0.Add(2*time.Second))
	park(t, failed)
	running := startSaga(t, t0.Add(3*time.Second))
	running2 := startSaga(t, t0.Add(4*time.Second))
	all := []*sagatest.Saga{completed, compensated, failed, running, running2}
	for _, sg := range all {
		coordinatortest.Append(t, env.Store, sg)
	}
	want := map[string]int64{"running": 2, "completed": 1, "compensating": 0, "compensated": 1, "failed": 1}
	for sg, want := range map[*sagatest.Saga]engine.Status{completed: engine.StatusCompleted, compensated: engine.StatusCompensated, failed: engine.StatusFailed} {
		if got := sg.State.Status(); got != want {
			t.Fatalf("fixture saga %s is %s, want %s", sg.State.ID(), got, want)
		}
	}

	t.Run("stats", func(t *testing.T) {
		var got sagaStats
		env.Eventually(t, 30*time.Second, "/admin/sagas/stats", func(r servetest.Response) bool {
			got = sagaStats{}
			r.JSON(t, &got)
			return got.Counts["running"]+got.Counts["completed"]+got.Counts["compensated"]+got.Counts["failed"] == 5
		})
		for status, n := range want {
			if got.Counts[status] != n {
				t.Errorf("counts[%s] = %d, want %d (all %v)", status, got.Counts[status], n, got.Counts)
			}
		}
		if len(got.Counts) != len(engine.Statuses) {
			t.Errorf("counts %v, want every status listed", got.Counts)
		}
		if !slices.Contains(got.Types, engine.OrderFulfillment) || !slices.IsSorted(got.Types) {
			t.Errorf("types %v, want sorted with %s", got.Types, engine.OrderFulfillment)
		}
		if res := env.Get(t, "/admin/sagas/stats"); res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control %q", res.Header.Get("Cache-Control"))
		}
	})

	t.Run("list filters", func(t *testing.T) {
		at := func(i int) string {
			return url.QueryEscape(t0.Add(time.Duration(i) * time.Second).Format(time.RFC3339))
		}
		ids := func(sgs ...*sagatest.Saga) []string {
			var out []string
			for _, sg := range sgs {
				out = append(out, sg.State.ID())
			}
			return out
		}
		tests := []struct {
			query string
			want  []string
		}{
			{"type=order_fulfillment", ids(running2, running, failed, compensated, completed)},
			{"type=restock_request", nil},
			{"started_after=" + at(3), ids(running2, running)},
			{"started_before=" + at(2), ids(compensated, completed)},
			{"started_after=" + at(1) + "&started_before=" + at(3), ids(failed, compensated)},
			{"type=order_fulfillment&status=running&started_after=" + at(4), ids(running2)},
			{"started_after=" + url.QueryEscape(t0.Add(4*time.Second).In(time.FixedZone("X", 3600)).Format(time.RFC3339)), ids(running2)},
		}
		for _, tt := range tests {
			got, _ := servetest.Pages[listedSaga](t, env, "/api/sagas?"+tt.query)
			var gotIDs []string
			for _, s := range got {
				gotIDs = append(gotIDs, s.SagaID)
				if s.CorrelationID != s.SagaID {
					t.Errorf("%s: saga %s has correlation id %q", tt.query, s.SagaID, s.CorrelationID)
				}
			}
			if !slices.Equal(gotIDs, tt.want) {
				t.Errorf("%s: %v, want %v", tt.query, gotIDs, tt.want)
			}
		}
		env.WantBadQueries(t, "/api/sagas", []servetest.BadQuery{
			{Name: "started_after not a time", Query: "started_after=yesterday", Fields: []string{"started_after"}},
			{Name: "bounds the wrong way", Query: "started_after=" + at(3) + "&started_before=" + at(1), Fields: []string{"started_before"}},
			{Name: "type too long", Query: "type=" + strings.Repeat("x", 101), Fields: []string{"type"}},
		})
	})

	t.Run("correlation id of one saga", func(t *testing.T) {
		res := env.Get(t, "/api/sagas/"+failed.State.ID())
		var v sagaView
		res.JSON(t, &v)
		evs := env.Events(t, engine.Stream(failed.State.ID()))
		if len(evs) == 0 || v.CorrelationID == "" || v.CorrelationID != evs[0].Metadata.CorrelationID && evs[0].Metadata.CorrelationID != "" {
			t.Errorf("correlation id %q, the saga's first event carries %+v", v.CorrelationID, evs[0].Metadata)
		}
		if v.CorrelationID != failed.State.ID() {
			t.Errorf("correlation id %q, want the saga's id %s", v.CorrelationID, failed.State.ID())
		}
	})

	t.Run("definitions", func(t *testing.T) {
		res := env.Get(t, "/admin/saga-definitions")
		if res.Status != http.StatusOK {
			t.Fatalf("%d %s", res.Status, res.Body)
		}
		var got struct {
			Items []sagaDefinition `json:"items"`
		}
		res.JSON(t, &got)
		i := slices.IndexFunc(got.Items, func(d sagaDefinition) bool { return d.Type == engine.OrderFulfillment })
		if i < 0 {
			t.Fatalf("no %s in %s", engine.OrderFulfillment, res.Body)
		}
		d := got.Items[i]
		if d.Version != 1 || d.Closing != "orders.reject_order" {
			t.Errorf("order_fulfillment v%d, closing %q", d.Version, d.Closing)
		}
		timing := engine.DefaultTiming()
		wantSteps := []struct{ name, command, service, compensation, after string }{
			{engine.StepReserveInventory, "inventory.reserve_stock", "inventory", "inventory.release_stock", ""},
			{engine.StepScheduleShipment, "shipping.schedule_shipment", "shipping", "shipping.cancel_shipment", ""},
			{engine.StepConfirmOrder, "orders.confirm_order", "orders", "", ""},
			{engine.StepConsumeStock, "inventory.consume_stock", "inventory", "", shipping.TypeShipmentDispatched},
			{engine.StepMarkOrderShipped, "orders.mark_order_shipped", "orders", "", ""},
		}
		if len(d.Steps) != len(wantSteps) {
			t.Fatalf("steps %+v, want %d", d.Steps, len(wantSteps))
		}
		for j, w := range wantSteps {
			s := d.Steps[j]
			if s.Name != w.name || s.Command != w.command || s.Service != w.service || s.Compensation != w.compensation || s.After != w.after ||
				s.TimeoutMS != timing.Timeout.Milliseconds() || s.MaxAttempts != timing.Retry.MaxAttempts {
				t.Errorf("step %d: %+v, want %+v with timeout %s and %d attempts", j, s, w, timing.Timeout, timing.Retry.MaxAttempts)
			}
		}
	})

	t.Run("unknown filter value is no error", func(t *testing.T) {
		env.Get(t, "/api/sagas?type=").JSON(t, new(httpx.Page[listedSaga]))
	})
}
