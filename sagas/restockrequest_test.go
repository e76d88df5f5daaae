package sagas_test

import (
	"testing"

	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/sagas/sagatest"
)

const restockID = "7d3f1c2a-9b8e-4c5d-a6f7-0e1d2c3b4a59"

func startRestock(t testing.TB) *sagatest.Saga {
	t.Helper()
	return sagatest.Start(t, sagas.RestockRequestV1(timing), restockID, sagas.RestockInput{SKU: "SKU-1", Quantity: 40}, t0)
}

// TestRestockRequest runs the second definition, written against the
// engine as it is: a step with a compensation, a step that waits for an
// event, an abort trigger, and no closing action.
func TestRestockRequest(t *testing.T) {
	scheduled := sagatest.Reply("InboundDeliveryScheduled", map[string]any{"delivery_id": restockID})
	arrived := sagatest.External("InboundDeliveryArrived", map[string]any{"delivery_id": restockID})
	withdrawn := sagatest.External("RestockRequestWithdrawn", map[string]any{})
	sagatest.Run(t, startRestock, []sagatest.Case{
		{
			Name:  "a scheduled delivery waits for its arrival",
			When:  scheduled,
			Then:  []string{"ReplyReceived InboundDeliveryScheduled success", "StepSucceeded request_delivery", "SagaCompleted"},
			Check: func(t testing.TB, s *sagatest.Saga) { wantStepCount(t, s, 1) },
		},
		{
			Name:  "the arrival restocks the sku",
			Given: []sagatest.Act{scheduled},
			When:  arrived,
			Then:  []string{"ExternalEventReceived InboundDeliveryArrived", "CommandIssued inventory.restock_stock #1"},
			Check: func(t testing.TB, s *sagatest.Saga) {
				wantPayload(t, s.Pending(), `{"sku":"SKU-1","quantity":40,"delivery_id":"`+restockID+`"}`)
				wantStepCount(t, s, 2)
			},
		},
		{
			Name:  "and the restock completes the saga",
			Given: []sagatest.Act{scheduled, arrived},
			When:  sagatest.Reply("StockRestocked", map[string]any{"sku": "SKU-1", "quantity": 40}),
			Then:  []string{"ReplyReceived StockRestocked success", "StepSucceeded restock", "SagaCompleted"},
		},
		{
			Name: "a refused delivery ends the saga with nothing to undo",
			When: sagatest.Reply("InboundDeliveryRefused", map[string]any{"reason": "supplier_unknown"}),
			Then: []string{
				"ReplyReceived InboundDeliveryRefused failure supplier_unknown",
				"StepFailed request_delivery supplier_unknown",
				"CompensationStarted supplier_unknown",
				"SagaCompensated supplier_unknown",
			},
		},
		{
			Name:  "a withdrawn request cancels the scheduled delivery",
			Given: []sagatest.Act{scheduled},
			When:  withdrawn,
			Then: []string{
				"ExternalEventReceived RestockRequestWithdrawn",
				"CompensationStarted withdrawn",
				"CommandIssued undo shipping.cancel_inbound_delivery #1",
			},
			Check: func(t testing.TB, s *sagatest.Saga) {
				wantPayload(t, s.Pending(), `{"delivery_id":"`+restockID+`","reason":"withdrawn"}`)
				got := sagatest.Reply("InboundDeliveryCancelled", nil)(s)
				if want := "ReplyReceived InboundDeliveryCancelled success\nCompensationDone request_delivery\nSagaCompensated withdrawn"; sagatest.Describe(got...) != want {
					t.Errorf("after the cancellation:\n%s\nwant:\n%s", sagatest.Describe(got...), want)
				}
			},
		},
		{
			Name:  "a withdrawal after the arrival changes nothing",
			Given: []sagatest.Act{scheduled, arrived},
			When:  withdrawn,
		},
	})
}

func TestDefaultDefinitions(t *testing.T) {
	defs := sagas.DefaultDefinitions(sagas.DefaultTiming())
	var got []string
	for _, d := range defs.All() {
		got = append(got, d.Name)
	}
	if len(got) != 2 || got[0] != sagas.OrderFulfillment || got[1] != sagas.RestockRequest {
		t.Errorf("definitions = %q", got)
	}
	if _, err := defs.Lookup(sagas.RestockRequest, 1); err != nil {
		t.Errorf("restock_request v1: %v", err)
	}
}

func wantStepCount(t testing.TB, s *sagatest.Saga, n int) {
	t.Helper()
	if v := s.State.View(); len(v.Steps) != n {
		t.Errorf("view lists %d steps, want %d: %+v", len(v.Steps), n, v.Steps)
	}
}
