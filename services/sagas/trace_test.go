package sagas_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
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
	"github.com/orderflow/orderflow/services/gateway"
	"github.com/orderflow/orderflow/services/gateway/auth"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
	"github.com/orderflow/orderflow/services/internal/stacktest"
	"github.com/orderflow/orderflow/services/internal/telemetry"
	"github.com/orderflow/orderflow/services/internal/telemetry/telemetrytest"
)

// hop is one span an order's trace must hold: the service that records
// it and its name.
type hop struct{ service, name string }

// placing is the server span of the service an order is placed through
// (the entry: the gateway, or the orders service itself).
func placing(service string) hop { return hop{service, "POST /api/orders"} }

// orderChain is the happy path of one order as its trace shows it, each
// span a descendant of the one before: the orders service's request
// placing it, then for each event the relay's publish and the decision or
// command run it leads to. Placed through the gateway, the gateway's
// server span comes before it all (see chainFrom).
var orderChain = []hop{
	placing("orders"),
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

// chainFrom is orderChain for an order placed through entry.
func chainFrom(entry string) []hop {
	if entry == "orders" {
		return orderChain
	}
	return append([]hop{placing(entry)}, orderChain...)
}

// traceSecret signs the tokens of the gateway of TestOneTracePerOrder.
var traceSecret = []byte("the trace test's gateway secret, 32 bytes or more")

// TestOneTracePerOrder places orders over HTTP and follows each through
// the services until it is confirmed: placed straight at the orders
// service or through a real gateway in front of it, in a trace of the
// caller's (a traceparent sent along) or in one the entry starts. Every
// span about the order is in one trace; each service records some (the
// gateway too when the order passed it); the entry's server span is the
// root, and through the gateway the orders service's server span is its
// child; every other span's parent is in the trace and the chain from the
// request to the coordinator's last decision is unbroken; the events
// carry the trace on.
func TestOneTracePerOrder(t *testing.T) {
	spans := recordSpans(t)
	s := newStack(t, generous, allServices...)
	c := frontWithGateway(t, s)
	customer, err := auth.Sign(traceSecret, auth.Principal{Subject: "c-42", Role: auth.RoleCustomer}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		entry string // the process the order is placed through
		// caller says whether the client sends a traceparent of its own
		// (the order's trace is then the caller's) or not (the entry
		// starts the trace).
		caller bool
	}{
		{"orders service, caller's trace", "orders", true},
		{"gateway, caller's trace", gateway.Name, true},
		{"gateway starts the trace", gateway.Name, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sku := fmt.Sprintf("TRACE-%d", i+1)
			s.Restock(t, sku, 5)
			requestID := "trace-test-" + newSpanID(t)
			header := []string{"X-Request-Id", requestID}
			var callerTrace, callerSpan string
			if tc.caller {
				callerTrace, callerSpan = newTraceParent(t)
				header = append(header, "Traceparent", fmt.Sprintf("00-%s-%s-01", callerTrace, callerSpan), "Tracestate", "caller=1")
			}
			if tc.entry == gateway.Name {
				header = append(header, "Authorization", "Bearer "+customer)
			}
			body := fmt.Sprintf(`{"customer_id": "c-42", "items": [{"sku": %q, "quantity": 2, "unit_price_cents": 1299}], "shipping_address": {"name": "Ada L.", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}}`, sku)
			res := c.Do(t, tc.entry, http.MethodPost, "/api/orders", body, header...)
			if res.Status != http.StatusAccepted {
				t.Fatalf("POST /api/orders on %s: %d %s", tc.entry, res.Status, res.Body)
			}
			var placed struct {
				OrderID string `json:"order_id"`
				SagaID  string `json:"saga_id"`
			}
			mustUnmarshal(t, res.Body, &placed)
			s.WaitOrder(t, placed.OrderID, "confirmed", "")

			// The entry's server span, found by the request id the test
			// chose, names the trace. The last hops (the decision on
			// OrderConfirmed) may end after the order reads confirmed,
			// and a parent ends after its children.
			chain := chainFrom(tc.entry)
			var tr orderTrace
			var root tracetest.SpanStub
			coordinatortest.Eventually(t, within, "the order's trace complete", func() (bool, string) {
				all := spans.GetSpans()
				roots := requestSpans(all, placing(tc.entry), requestID)
				if len(roots) > 1 {
					t.Fatalf("%d server spans of %s for request %s, want 1:\n%s", len(roots), tc.entry, requestID, describe(roots))
				}
				if len(roots) == 0 {
					return false, fmt.Sprintf("no server span of %s for request %s yet", tc.entry, requestID)
				}
				root = roots[0]
				tr = newOrderTrace(all, root.SpanContext.TraceID().String())
				missing := tr.missing(chain)
				detached := tr.detached(root)
				return len(missing) == 0 && len(detached) == 0,
					fmt.Sprintf("%d spans; missing %v; parent not in the trace: %v", len(tr.spans), missing, detached)
			})
			traceID := root.SpanContext.TraceID().String()
			if tc.caller && traceID != callerTrace {
				t.Errorf("the order's trace is %s, want the caller's %s", traceID, callerTrace)
			}

			// Every span about this order, whichever trace it is in, is in
			// the order's: no hop started a trace of its own.
			for _, sp := range spans.GetSpans() {
				if about(sp, placed.OrderID, placed.SagaID) && sp.SpanContext.TraceID().String() != traceID {
					t.Errorf("span %q of %s is about the order but in trace %s, not %s",
						sp.Name, attr(sp, "service.name"), sp.SpanContext.TraceID(), traceID)
				}
			}

			// The root is the entry's server span: the child of the
			// caller's, or without one the first of its trace.
			if root.SpanKind != trace.SpanKindServer {
				t.Errorf("root span %q is %s, want server", root.Name, root.SpanKind)
			}
			if tc.caller {
				if root.Parent.SpanID().String() != callerSpan || !root.Parent.IsRemote() {
					t.Errorf("root span's parent %s (remote %t), want the caller's %s", root.Parent.SpanID(), root.Parent.IsRemote(), callerSpan)
				}
			} else if root.Parent.IsValid() {
				t.Errorf("root span's parent %s, want none: the client sent no trace context", root.Parent.SpanID())
			}
			wantState := ""
			if tc.caller {
				wantState = "1"
			}
			if got := root.SpanContext.TraceState().Get("caller"); got != wantState {
				t.Errorf("root span's tracestate caller=%q, want %q", got, wantState)
			}
			if n := len(tr.named(placing(tc.entry))); n != 1 {
				t.Errorf("%d server spans of %s for the order in its trace, want 1", n, tc.entry)
			}

			// The orders service's server span, the one that appended
			// OrderPlaced, is the root or, through the gateway, the
			// child of the gateway's, across the HTTP hop.
			served := tr.named(placing("orders"))
			if len(served) != 1 {
				t.Fatalf("%d server spans of orders in the order's trace, want 1:\n%s", len(served), describe(served))
			}
			ordersSpan := served[0]
			if tc.entry == gateway.Name {
				if ordersSpan.SpanKind != trace.SpanKindServer || ordersSpan.Parent.SpanID() != root.SpanContext.SpanID() || !ordersSpan.Parent.IsRemote() {
					t.Errorf("orders server span: kind %s, parent %s (remote %t); want a server span under the gateway's %s",
						ordersSpan.SpanKind, ordersSpan.Parent.SpanID(), ordersSpan.Parent.IsRemote(), root.SpanContext.SpanID())
				}
				if got := ordersSpan.SpanContext.TraceState().Get("caller"); got != wantState {
					t.Errorf("orders server span's tracestate caller=%q, want %q", got, wantState)
				}
				if got := attr(ordersSpan, string(telemetry.KeyRequestID)); got != requestID {
					t.Errorf("orders server span's request id %q, want the gateway's %q", got, requestID)
				}
			}

			// Each service records spans of the order; the gateway does
			// when the order passed it, and only then.
			for _, svc := range append([]string{gateway.Name}, allServices...) {
				n := tr.countService(svc)
				switch {
				case n == 0 && (svc != gateway.Name || tc.entry == gateway.Name):
					t.Errorf("no span of %s in the order's trace", svc)
				case n > 0 && svc == gateway.Name && tc.entry != gateway.Name:
					t.Errorf("%d spans of the gateway in the trace of an order that did not pass it", n)
				}
			}

			// The chain: from the coordinator's last decision up to the
			// root, every hop of the chain comes in order.
			last := tr.named(chain[len(chain)-1])
			if len(last) == 0 {
				t.Fatalf("no span %v", chain[len(chain)-1])
			}
			path := tr.ancestry(last[0])
			if path[0].SpanContext.SpanID() != root.SpanContext.SpanID() {
				t.Errorf("the ancestry of %v starts at %q, not at the root:\n%s", chain[len(chain)-1], path[0].Name, describe(path))
			}
			if i := chainBreak(path, chain); i >= 0 {
				t.Errorf("ancestry of %v lacks %v after the hops before it:\n%s", chain[len(chain)-1], chain[i], describe(path))
			}
			kinds := map[string]trace.SpanKind{"POST": trace.SpanKindServer, "publish": trace.SpanKindProducer, "decide": trace.SpanKindConsumer, "run": trace.SpanKindConsumer}
			for _, sp := range path {
				verb, _, _ := strings.Cut(sp.Name, " ")
				if want, ok := kinds[verb]; ok && sp.SpanKind != want {
					t.Errorf("span %q is %s, want %s", sp.Name, sp.SpanKind, want)
				}
			}

			// The events carry the trace on: OrderPlaced names the orders
			// service's server span, the saga's events the coordinator's
			// decisions.
			placedEvents := s.events(t, "orders", order.Stream(placed.OrderID))
			if len(placedEvents) == 0 || placedEvents[0].Type != order.TypeOrderPlaced {
				t.Fatalf("order stream: %v", placedEvents)
			}
			if want := fmt.Sprintf("00-%s-%s-01", traceID, ordersSpan.SpanContext.SpanID()); placedEvents[0].Metadata.TraceParent != want {
				t.Errorf("OrderPlaced traceparent %q, want the orders server span's %q", placedEvents[0].Metadata.TraceParent, want)
			}
			decisions := map[string]bool{}
			for _, sp := range tr.spans {
				if strings.HasPrefix(sp.Name, "decide ") {
					decisions[sp.SpanContext.SpanID().String()] = true
				}
			}
			sagaEvents := s.events(t, "sagas", engine.Stream(placed.SagaID))
			if len(sagaEvents) == 0 {
				t.Fatalf("saga %s has no events", placed.SagaID)
			}
			for _, e := range sagaEvents {
				parts := strings.Split(e.Metadata.TraceParent, "-")
				if len(parts) != 4 || parts[1] != traceID || !decisions[parts[2]] {
					t.Errorf("saga event %s has traceparent %q, want one of a decision span of trace %s", e.Type, e.Metadata.TraceParent, traceID)
				}
			}
		})
	}
}

// frontWithGateway starts a gateway (HS256 tokens signed with
// traceSecret) in front of the services of s, at the addresses they run
// on now, and returns a client of s that also finds the gateway, under
// gateway.Name, and checks its answers against the contract. The gateway
// stops before the services do.
func frontWithGateway(t *testing.T, s *stack) *stacktest.Client {
	t.Helper()
	upstreams := make(map[string][]string)
	for _, svc := range gateway.Services() {
		base, ok := s.base(svc)
		if !ok {
			t.Fatalf("%s does not run", svc)
		}
		upstreams[svc] = []string{base}
	}
	g, err := gateway.New(context.Background(), gateway.Config{
		Upstreams: upstreams,
		JWTSecret: traceSecret,
		Logger:    testLogger(t, gateway.Name),
	})
	if err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	t.Cleanup(g.Close)
	hs := httptest.NewServer(g.Handler())
	t.Cleanup(hs.Close)
	contract, err := servetest.LoadContract()
	if err != nil {
		t.Fatalf("load OpenAPI contract: %v", err)
	}
	return stacktest.New(stacktest.Config{
		Base: func(name string) (string, bool) {
			if name == gateway.Name {
				return hs.URL, true
			}
			return s.base(name)
		},
		Within:   within,
		Contract: contract,
	})
}

// requestSpans returns the spans of h's service called h's name that
// served the request with id requestID.
func requestSpans(all tracetest.SpanStubs, h hop, requestID string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, sp := range all {
		if sp.Name == h.name && attr(sp, "service.name") == telemetry.ServiceName(h.service) &&
			attr(sp, string(telemetry.KeyRequestID)) == requestID {
			out = append(out, sp)
		}
	}
	return out
}

// recordSpans installs a tracer provider exporting to memory as the
// process's for the rest of the test, and returns its exporter.
func recordSpans(t *testing.T) *tracetest.InMemoryExporter {
	t.Helper()
	return telemetrytest.Record(t, "stack")
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

// newSpanID returns 8 random bytes in hex.
func newSpanID(t *testing.T) string {
	t.Helper()
	_, id := newTraceParent(t)
	return id
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

// detached lists the spans but root whose parent is not in the trace: a
// span there is cut off from the root, its context lost on some hop.
func (tr orderTrace) detached(root tracetest.SpanStub) []string {
	var out []string
	for _, sp := range tr.spans {
		if sp.SpanContext.SpanID() == root.SpanContext.SpanID() {
			continue
		}
		p := sp.Parent.SpanID().String()
		if _, ok := tr.byID[p]; !ok {
			out = append(out, fmt.Sprintf("%s: %s (parent %s)", attr(sp, "service.name"), sp.Name, p))
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
