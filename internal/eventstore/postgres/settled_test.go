package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
)

// orderID is the id of the i-th order of the settled-order tests.
func orderID(i int) string { return fmt.Sprintf("7a0c2e4f-1b3d-4e5f-8a6b-%012x", i) }

// eventTypes are the stock events the tests write.
var eventTypes = []string{"StockReserved", "StockReleased", "StockConsumed"}

// event is an event of type typ about order i, as the inventory writes it.
func event(typ string, i int) domain.Envelope {
	return domain.Envelope{
		ID:   fmt.Sprintf("5d1e3f20-4a6b-4c8d-9e0f-%012x", i*4+slices.Index(eventTypes, typ)),
		Type: typ,
		Data: fmt.Appendf(nil, `{"sku":"S","order_id":%q,"quantity":1}`, orderID(i)),
	}
}

// TestSettledOrders: the orders found are those released or consumed on
// the stream at a version up to the one asked, as spelled in the events;
// reserved, other streams' and unknown orders are not.
func TestSettledOrders(t *testing.T) {
	s, _ := newStore(t, postgres.Config{})
	ctx := context.Background()
	stream := "stock-settled-" + t.Name()
	// Versions: 1 reserve 0, 2 release 0, 3 reserve 1, 4 consume 1,
	// 5 reserve 2 (held); order 3 is consumed on another stream.
	evs := []domain.Envelope{
		event("StockReserved", 0), event("StockReleased", 0),
		event("StockReserved", 1), event("StockConsumed", 1),
		event("StockReserved", 2),
	}
	if _, err := s.Append(ctx, stream, domain.NoStream, evs); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, stream+"-other", domain.NoStream, []domain.Envelope{event("StockConsumed", 3)}); err != nil {
		t.Fatal(err)
	}
	ask := []string{orderID(0), orderID(1), orderID(2), orderID(3), orderID(4), strings.ToUpper(orderID(0))}
	tests := []struct {
		upTo int64
		want []string
	}{
		{0, nil},
		{1, nil},
		{2, []string{orderID(0)}},
		{3, []string{orderID(0)}},
		{5, []string{orderID(0), orderID(1)}},
		{100, []string{orderID(0), orderID(1)}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.upTo), func(t *testing.T) {
			got, err := s.SettledOrders(ctx, stream, ask, tc.upTo)
			slices.Sort(got)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("up to %d: %v %v, want %v", tc.upTo, got, err, tc.want)
			}
		})
	}
}

// TestSettledOrdersUsesIndex: on a hot stock stream the query reads the
// partial index of migration 0005, also in the generic plan a prepared
// statement ends up with, not the stream's events.
func TestSettledOrdersUsesIndex(t *testing.T) {
	s, pool := newStore(t, postgres.Config{})
	ctx := context.Background()
	stream := "stock-hot-" + t.Name()
	const orders = 2000
	for first := 0; first < orders; first += 500 {
		var evs []domain.Envelope
		for i := first; i < first+500; i++ {
			evs = append(evs, event("StockReserved", i), event("StockConsumed", i))
		}
		if _, err := s.Append(ctx, stream, domain.AnyVersion, evs); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, q := range []string{"ANALYZE es_events", "SET plan_cache_mode = force_generic_plan"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var plan strings.Builder
	rows, err := conn.Query(ctx, "EXPLAIN "+postgres.SettledOrdersQuery, stream, []string{orderID(7), orderID(orders + 1)}, int64(2*orders))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan.String(), "es_events_settled_order") {
		t.Errorf("the plan does not use es_events_settled_order:\n%s", plan.String())
	}
	got, err := s.SettledOrders(ctx, stream, []string{orderID(7), orderID(orders + 1)}, int64(2*orders))
	if err != nil || !slices.Equal(got, []string{orderID(7)}) {
		t.Errorf("SettledOrders = %v %v, want [%s]", got, err, orderID(7))
	}
}
