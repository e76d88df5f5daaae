package sagas_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	engine "github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/telemetry"
)

// hop is one span an order's trace must hold: the service that records
// it and its name.
type hop struct{ service, name string }

// orderChain is the happy path of one order as its trace shows it, each
// span a descendant of the one before: the request placing it, then for
// each event the relay's publish and the decision or command run it leads
// to. With the gateway in front of the orders service, its server span
// comes first and the order is placed through it (entry below).
var orderChain = []hop{
	{"orders", "POST /api/orders"},
	{"orders", "publish events.orders." + order.TypeOrderPlaced},
	{"sagas", "decide " + order.TypeOrderPlaced},
	{"sagas", "publish commands.inventory.reserve_stock"},
	{"inventory", "run inventory.reserve_stock/v1"},
	{"inventory", "publish events.inventory." + inventory.TypeStockReservationAccepted},
	{"sagas", "decide " + inventory.TypeStockReservationAccepted},
	{"sagas", "publish commands.shipping.schedule_shipment"},
	{"shipping", "run shipping.schedule_shipment/v1"},
	{"shipping", "publish events.shipping." + shipping.TypeShipmentScheduled},
	{"sagas", "decide " + shipping.TypeShipmentScheduled},
	{"sagas", "publish commands.orders.confirm_order"},
	{"orders", "run orders.confirm_order/v1"},
	{"orders", "publish events.orders." + order.TypeOrderConfirmed},
	{"sagas", "decide " + order.TypeOrderConfirmed},
}

// TestOneTracePerOrder places an order over HTTP with a traceparent of the
// test's own and follows it through the four services until it is
// confirmed: every span about the order belongs to the caller's trace, each
// service records some, the chain from the request to the coordinator's
// last decision is unbroken (every span's parent is in the trace, the
// root's is the caller's), and the events carry the trace on.
func TestOneTracePerOrder(t *testing.T) {
	spans := recordSpans(t)
	s := newStack(t, generous, allServices...)
	entry := orderChain[0].service

	s.Restock(t, "TRACE-1", 5)
	callerTrace, callerSpan := newTraceParent(t)
	body := `{"customer_id": "c-42", "items": [{"sku": "TRACE-1", "quantity": 2, "unit_price_cents": 1299}], "shipping_address": {"name": "Ada L.", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}}`
	res := s.Do(t, entry, http.MethodPost, "/api/orders", body,
		"Traceparent", fmt.Sprintf("00-%s-%s-01", callerTrace, callerSpan), "Tracestate", "caller=1")
	if res.Status != http.StatusAccepted {
		t.Fatalf("POST /api/orders: %d %s", res.Status, res.Body)
	}
	var placed struct {
		OrderID string `json:"order_id"`
		SagaID  string `json:"saga_id"`
	}
	mustUnmarshal(t, res.Body, &placed)
	s.WaitOrder(t, placed.OrderID, "confirmed", "")

	// The last hops (the decision on OrderConfirmed) may end after the
	// order reads confirmed, and a parent ends after its children.
	var tr orderTrace
	coordinatortest.Eventually(t, within, "the order's trace complete", func() (bool, string) {
		tr = newOrderTrace(spans.GetSpans(), callerTrace)
		missing := tr.missing(orderChain)
		orphans := tr.orphans(callerSpan)
		return len(missing) == 0 && len(orphans) == 0,
			fmt.Sprintf("%d spans; missing %v; parent not in the trace: %v", len(tr.spans), missing, orphans)
	})

	// Every span about this order, whichever trace it is in, is in the
	// caller's: no hop started a trace of its own.
	for _, sp := range spans.GetSpans() {
		if about(sp, placed.OrderID, placed.SagaID) && sp.SpanContext.TraceID().String() != callerTrace {
			t.Errorf("span %q of %s is about the order but in trace %s, not %s",
				sp.Name, attr(sp, "service.name"), sp.SpanContext.TraceID(), callerTrace)
		}
	}

	// The root is the entry's server span, the child of the caller's.
	roots := tr.named(hop{entry, "POST /api/orders"})
	if len(roots) != 1 {
		t.Fatalf("%d server spans of %s for the order, want 1", len(roots), entry)
	}
	root := roots[0]
	if root.SpanKind != trace.SpanKindServer || root.Parent.SpanID().String() != callerSpan || !root.Parent.IsRemote() {
		t.Errorf("root span: kind %s, parent %s (remote %t); want a server span under the caller's %s",
			root.SpanKind, root.Parent.SpanID(), root.Parent.IsRemote(), callerSpan)
	}
	if got := root.SpanContext.TraceState().Get("caller"); got != "1" {
		t.Errorf("root span's tracestate caller=%q, want the caller's 1", got)
	}

	// Each service records spans of the order.
	for _, svc := range allServices {
		if n := tr.countService(svc); n == 0 {
			t.Errorf("no span of %s in the order's trace", svc)
		}
	}

	// The chain: from the coordinator's last decision up to the root,
	// every hop of orderChain comes in order.
	last := tr.named(orderChain[len(orderChain)-1])
	if len(last) == 0 {
		t.Fatalf("no span %v", orderChain[len(orderChain)-1])
	}
	path := tr.ancestry(last[0])
	if i := chainBreak(path, orderChain); i >= 0 {
		t.Errorf("ancestry of %v lacks %v after the hops before it:\n%s", orderChain[len(orderChain)-1], orderChain[i], describe(path))
	}
	kinds := map[string]trace.SpanKind{"POST": trace.SpanKindServer, "publish": trace.SpanKindProducer, "decide": trace.SpanKindConsumer, "run": trace.SpanKindConsumer}
	for _, sp := range path {
		verb, _, _ := strings.Cut(sp.Name, " ")
		if want, ok := kinds[verb]; ok && sp.SpanKind != want {
			t.Errorf("span %q is %s, want %s", sp.Name, sp.SpanKind, want)
		}
	}

	// The events carry the trace on: OrderPlaced names the server span,
	// the saga's events the coordinator's decisions.
	placedEvents := s.events(t, "orders", order.Stream(placed.OrderID))
	if len(placedEvents) == 0 || placedEvents[0].Type != order.TypeOrderPlaced {
		t.Fatalf("order stream: %v", placedEvents)
	}
	if want := fmt.Sprintf("00-%s-%s-01", callerTrace, root.SpanContext.SpanID()); placedEvents[0].Metadata.TraceParent != want {
		t.Errorf("OrderPlaced traceparent %q, want the server span's %q", placedEvents[0].Metadata.TraceParent, want)
	}
	decisions := map[string]bool{}
	for _, sp := range tr.spans {
		if strings.HasPrefix(sp.Name, "decide ") {
			decisions[sp.SpanContext.SpanID().String()] = true
		}
	}
	for _, e := range s.events(t, "sagas", engine.Stream(placed.SagaID)) {
		parts := strings.Split(e.Metadata.TraceParent, "-")
		if len(parts) != 4 || parts[1] != callerTrace || !decisions[parts[2]] {
			t.Errorf("saga event %s has traceparent %q, want one of a decision span of trace %s", e.Type, e.Metadata.TraceParent, callerTrace)
		}
	}
}

// recordSpans installs a tracer provider exporting to memory as the
// process's for the rest of the test, and returns its exporter.
func recordSpans(t *testing.T) *tracetest.InMemoryExporter {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	shutdown, err := telemetry.Start(context.Background(), "stack", telemetry.WithExporter(exp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return exp
}

// newTraceParent returns a random trace id and span id, in hex.
func newTraceParent(t *testing.T) (traceID, spanID string) {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:16]), hex.EncodeToString(b[16:])
}

// orderTrace is the spans of one trace, by id.
type orderTrace struct {
	spans []tracetest.SpanStub
	byID  map[string]tracetest.SpanStub
}

func newOrderTrace(all tracetest.SpanStubs, traceID string) orderTrace {
	tr := orderTrace{byID: make(map[string]tracetest.SpanStub)}
	for _, sp := range all {
		if sp.SpanContext.TraceID().String() == traceID {
			tr.spans = append(tr.spans, sp)
			tr.byID[sp.SpanContext.SpanID().String()] = sp
		}
	}
	return tr
}

// named returns the spans of h's service called h's name.
func (tr orderTrace) named(h hop) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, sp := range tr.spans {
		if sp.Name == h.name && attr(sp, "service.name") == telemetry.ServiceName(h.service) {
			out = append(out, sp)
		}
	}
	return out
}

func (tr orderTrace) countService(svc string) int {
	n := 0
	for _, sp := range tr.spans {
		if attr(sp, "service.name") == telemetry.ServiceName(svc) {
			n++
		}
	}
	return n
}

// missing lists the hops of chain the trace lacks.
func (tr orderTrace) missing(chain []hop) []hop {
	var out []hop
	for _, h := range chain {
		if len(tr.named(h)) == 0 {
			out = append(out, h)
		}
	}
	return out
}

// orphans lists the spans whose parent is not in the trace, but for the
// one whose parent is the caller's span.
func (tr orderTrace) orphans(callerSpan string) []string {
	var out []string
	for _, sp := range tr.spans {
		p := sp.Parent.SpanID().String()
		if _, ok := tr.byID[p]; !ok && p != callerSpan {
			out = append(out, fmt.Sprintf("%s (parent %s)", sp.Name, p))
		}
	}
	return out
}

// ancestry returns sp and its ancestors in the trace, the root first.
func (tr orderTrace) ancestry(sp tracetest.SpanStub) []tracetest.SpanStub {
	path := []tracetest.SpanStub{sp}
	for range len(tr.spans) {
		p, ok := tr.byID[sp.Parent.SpanID().String()]
		if !ok {
			break
		}
		path = append(path, p)
		sp = p
	}
	slices.Reverse(path)
	return path
}

// chainBreak returns the index of the first hop of chain not found in
// path after the hops before it, or -1 when path holds them all in order.
func chainBreak(path []tracetest.SpanStub, chain []hop) int {
	i := 0
	for _, sp := range path {
		if i < len(chain) && sp.Name == chain[i].name && attr(sp, "service.name") == telemetry.ServiceName(chain[i].service) {
			i++
		}
	}
	if i == len(chain) {
		return -1
	}
	return i
}

func describe(path []tracetest.SpanStub) string {
	var b strings.Builder
	for _, sp := range path {
		fmt.Fprintf(&b, "  %s: %s\n", attr(sp, "service.name"), sp.Name)
	}
	return b.String()
}

// about reports whether sp is about the order or its saga: a span naming
// the saga, or an event of a stream named after either.
func about(sp tracetest.SpanStub, orderID, sagaID string) bool {
	if attr(sp, string(telemetry.KeySagaID)) == sagaID || attr(sp, string(telemetry.KeyCorrelationID)) == sagaID {
		return true
	}
	stream := attr(sp, string(telemetry.KeyStream))
	return stream != "" && (strings.HasSuffix(stream, orderID) || strings.HasSuffix(stream, sagaID))
}

func attr(sp tracetest.SpanStub, key string) string {
	for _, kv := range sp.Attributes {
		if kv.Key == attribute.Key(key) {
			return kv.Value.Emit()
		}
	}
	return ""
}
