// Package coordinatortest holds what the tests of the saga coordinator,
// the sagas service and the orderflow command share: the OrderPlaced an
// order_fulfillment saga starts with, a saga driven by sagatest written
// to an event store as the coordinator records it, and polling a
// condition until it holds. It is imported by tests only.
package coordinatortest

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/sagas/sagatest"
)

// Placed is the OrderPlaced of order orderID, shipped to country and
// placed at at, that an order_fulfillment saga starts with: two units of
// SKU-1 at 12.99.
func Placed(orderID, country string, at time.Time) order.OrderPlaced {
	return order.OrderPlaced{
		OrderID: orderID, SagaID: sagas.SagaID(orderID), CustomerID: "c-42",
		Items: []order.Item{{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 1299}},
		ShippingAddress: order.Address{Name: "Ada L.", Line1: "1 Main St", City: "Springfield",
			PostalCode: "12345", Country: country},
		TotalCents: 2598, PlacedAt: at,
	}
}

// Envelopes returns the events of sg encoded as the coordinator stores
// them: each through the saga event registry, with a new id and the saga
// id as correlation id. Stream, versions and positions are the store's to
// set.
func Envelopes(t testing.TB, sg *sagatest.Saga) []domain.Envelope {
	t.Helper()
	reg := sagas.NewRegistry()
	envs := make([]domain.Envelope, len(sg.Events))
	for i, e := range sg.Events {
		name, version, data, err := reg.Encode(e)
		if err != nil {
			t.Fatalf("coordinatortest: encode %T: %v", e, err)
		}
		envs[i] = domain.Envelope{ID: uuid.NewString(), Type: name, SchemaVersion: version, Data: data,
			Metadata: domain.Metadata{CorrelationID: sg.State.ID()}}
	}
	return envs
}

// Appender is the part of an event store Append needs.
type Appender interface {
	Append(ctx context.Context, stream string, expected domain.ExpectedVersion, events []domain.Envelope) (domain.AppendResult, error)
}

// Append appends the events of sg (see Envelopes) to its new stream in
// one append and returns them.
func Append(t testing.TB, store Appender, sg *sagatest.Saga) []domain.Envelope {
	t.Helper()
	envs := Envelopes(t, sg)
	if _, err := store.Append(context.Background(), sagas.Stream(sg.State.ID()), domain.NoStream, envs); err != nil {
		t.Fatalf("coordinatortest: append saga %s: %v", sg.State.ID(), err)
	}
	return envs
}

// Eventually polls cond every few milliseconds until it holds, and fails
// the test with what and cond's last word if it does not within within.
// The system answers within milliseconds on an idle machine; callers pass
// a within generous enough for a busy one.
func Eventually(t testing.TB, within time.Duration, what string, cond func() (ok bool, last string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, within, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
