package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/orderflow/orderflow/services/internal/telemetry"
)

const callerParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// clearEnv unsets the variables Start reads, for the test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{telemetry.EnvEndpoint, telemetry.EnvTracesEndpoint, telemetry.EnvProtocol,
		telemetry.EnvTracesProtocol, telemetry.EnvTracesExporter, telemetry.EnvSDKDisabled} {
		t.Setenv(k, "")
	}
}

// start runs Start and shuts it down when the test ends.
func start(t *testing.T, service string, opts ...telemetry.Option) {
	t.Helper()
	shutdown, err := telemetry.Start(context.Background(), service, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

func TestStartWithoutCollectorIsNoop(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
	}{
		{"nothing set", nil},
		{"sdk disabled", map[string]string{telemetry.EnvEndpoint: "http://127.0.0.1:1", telemetry.EnvSDKDisabled: "true"}},
		{"exporter none", map[string]string{telemetry.EnvTracesEndpoint: "http://127.0.0.1:1", telemetry.EnvTracesExporter: "none"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			start(t, "orders")
			ctx, span := telemetry.NewTracer("orders").Start(context.Background(), "x", trace.SpanKindServer)
			defer span.End()
			if span.IsRecording() {
				t.Fatal("span records without a collector")
			}
			if telemetry.TraceID(ctx) != "" {
				t.Errorf("a root span without a provider has trace id %q", telemetry.TraceID(ctx))
			}
			// The caller's trace context still goes through.
			ctx = telemetry.Extract(context.Background(), callerParent, "k=v")
			ctx, child := telemetry.NewTracer("orders").Start(ctx, "y", trace.SpanKindConsumer)
			defer child.End()
			if p, s := telemetry.Inject(ctx); p != callerParent || s != "k=v" {
				t.Errorf("Inject = %q, %q; want the caller's %q, k=v", p, s, callerParent)
			}
		})
	}
}

func TestStartRejectsWhatItCannotHonour(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
	}{
		{"grpc protocol", map[string]string{telemetry.EnvEndpoint: "http://127.0.0.1:4317", telemetry.EnvProtocol: "grpc"}},
		{"grpc traces protocol", map[string]string{telemetry.EnvTracesEndpoint: "http://127.0.0.1:4317", telemetry.EnvTracesProtocol: "grpc"}},
		{"unknown exporter", map[string]string{telemetry.EnvTracesExporter: "zipkin"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			shutdown, err := telemetry.Start(context.Background(), "orders")
			if !errors.Is(err, telemetry.ErrUnsupported) {
				if shutdown != nil {
					_ = shutdown(context.Background())
				}
				t.Fatalf("Start = %v, want ErrUnsupported", err)
			}
		})
	}
}

// collector is an OTLP/HTTP trace receiver.
type collector struct {
	mu   sync.Mutex
	reqs []*coltrace.ExportTraceServiceRequest
	errs []string
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	body, err := io.ReadAll(r.Body)
	req := new(coltrace.ExportTraceServiceRequest)
	switch {
	case r.URL.Path != "/v1/traces":
		c.errs = append(c.errs, "path "+r.URL.Path)
	case r.Header.Get("Content-Type") != "application/x-protobuf":
		c.errs = append(c.errs, "content type "+r.Header.Get("Content-Type"))
	case err != nil:
		c.errs = append(c.errs, err.Error())
	default:
		if err := proto.Unmarshal(body, req); err != nil {
			c.errs = append(c.errs, err.Error())
		} else {
			c.reqs = append(c.reqs, req)
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

func TestStartExportsOverOTLP(t *testing.T) {
	clearEnv(t)
	col := &collector{}
	srv := httptest.NewServer(col)
	t.Cleanup(srv.Close)
	t.Setenv(telemetry.EnvEndpoint, srv.URL)

	shutdown, err := telemetry.Start(context.Background(), "inventory")
	if err != nil {
		t.Fatal(err)
	}
	ctx := telemetry.Extract(context.Background(), callerParent, "")
	_, span := telemetry.NewTracer("inventory").Start(ctx, "run inventory.reserve_stock/v1", trace.SpanKindConsumer)
	if !span.IsRecording() {
		t.Fatal("span does not record with a collector configured")
	}
	span.End()
	// Shutting down flushes the batch.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := otel.GetTracerProvider().Tracer("x").Start(context.Background(), "after"); ok.IsRecording() {
		t.Error("the provider still records after shutdown")
	}

	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.errs) > 0 {
		t.Fatalf("collector: %v", col.errs)
	}
	var names []string
	for _, req := range col.reqs {
		for _, rs := range req.GetResourceSpans() {
			service := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			if service != "orderflow-inventory" {
				t.Errorf("resource service.name %q, want orderflow-inventory", service)
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					names = append(names, sp.GetName())
					if got := trace.TraceID(sp.GetTraceId()).String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
						t.Errorf("exported trace id %s, want the caller's", got)
					}
				}
			}
		}
	}
	if len(names) != 1 || names[0] != "run inventory.reserve_stock/v1" {
		t.Errorf("exported spans %q, want the one run span", names)
	}
}

func TestWithExporterRecordsEverySpanAsItEnds(t *testing.T) {
	clearEnv(t)
	exp := tracetest.NewInMemoryExporter()
	start(t, "stack", telemetry.WithExporter(exp))

	ctx, parent := telemetry.NewTracer("orders").Start(context.Background(), "POST /api/orders", trace.SpanKindServer)
	_, child := telemetry.NewTracer("sagas").Start(ctx, "decide OrderPlaced", trace.SpanKindConsumer)
	child.End()
	if got := len(exp.GetSpans()); got != 1 {
		t.Fatalf("%d spans exported once the child ended, want 1", got)
	}
	parent.End()
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	for i, want := range []struct {
		name, service string
		kind          trace.SpanKind
	}{
		{"decide OrderPlaced", "orderflow-sagas", trace.SpanKindConsumer},
		{"POST /api/orders", "orderflow-orders", trace.SpanKindServer},
	} {
		sp := spans[i]
		service := ""
		for _, kv := range sp.Attributes {
			if kv.Key == "service.name" {
				service = kv.Value.AsString()
			}
		}
		if sp.Name != want.name || service != want.service || sp.SpanKind != want.kind {
			t.Errorf("span %d: %q of %q, %s; want %q of %q, %s", i, sp.Name, service, sp.SpanKind, want.name, want.service, want.kind)
		}
		if sp.InstrumentationScope.Name != telemetry.ScopePrefix+want.service[len("orderflow-"):] {
			t.Errorf("span %d: scope %q", i, sp.InstrumentationScope.Name)
		}
	}
	if spans[0].Parent.SpanID() != spans[1].SpanContext.SpanID() || spans[0].SpanContext.TraceID() != spans[1].SpanContext.TraceID() {
		t.Error("the child is not the parent's")
	}
	if got, _ := spans[1].Resource.Set().Value("service.name"); got.AsString() != "orderflow-stack" {
		t.Errorf("resource service.name %q", got.AsString())
	}
}

func TestExtractInject(t *testing.T) {
	for _, tt := range []struct {
		name, parent, state string
		wantParent          string
		wantState           string
	}{
		{"valid", callerParent, "a=1,b=2", callerParent, "a=1,b=2"},
		{"no state", callerParent, "", callerParent, ""},
		{"empty", "", "a=1", "", ""},
		{"malformed", "00-xyz-00f067aa0ba902b7-01", "", "", ""},
		{"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "", "", ""},
		{"bad state dropped", callerParent, "not a state", callerParent, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := telemetry.Extract(context.Background(), tt.parent, tt.state)
			p, s := telemetry.Inject(ctx)
			if p != tt.wantParent || s != tt.wantState {
				t.Errorf("Inject(Extract(%q, %q)) = %q, %q; want %q, %q", tt.parent, tt.state, p, s, tt.wantParent, tt.wantState)
			}
		})
	}
	h := http.Header{}
	telemetry.InjectHTTP(telemetry.Extract(context.Background(), callerParent, "k=v"), h)
	if h.Get("Traceparent") != callerParent || h.Get("Tracestate") != "k=v" {
		t.Errorf("InjectHTTP set %v", h)
	}
	if got := telemetry.TraceID(telemetry.ExtractHTTP(context.Background(), h)); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("TraceID(ExtractHTTP) = %q", got)
	}
}

// logLines decodes the JSON lines in buf.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(buf)
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func TestLogHandler(t *testing.T) {
	traced := telemetry.Extract(context.Background(), callerParent, "")
	const traceID, spanID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, tt := range []struct {
		name      string
		log       func(l *slog.Logger)
		wantTrace any
		wantSpan  any
		wantKeys  int // how often "trace_id" appears in the raw line
	}{
		{"with a traced context", func(l *slog.Logger) { l.InfoContext(traced, "m") }, traceID, spanID, 1},
		{"without context", func(l *slog.Logger) { l.Info("m") }, nil, nil, 0},
		{"untraced context", func(l *slog.Logger) { l.InfoContext(context.Background(), "m") }, nil, nil, 0},
		{"WithTrace, then no context", func(l *slog.Logger) { telemetry.WithTrace(traced, l).Info("m") }, traceID, nil, 1},
		{"WithTrace and the context: once", func(l *slog.Logger) { telemetry.WithTrace(traced, l).With("k", 1).InfoContext(traced, "m") }, traceID, spanID, 1},
		{"WithTrace of an untraced context", func(l *slog.Logger) { telemetry.WithTrace(context.Background(), l).Info("m") }, nil, nil, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := telemetry.Logger(slog.New(slog.NewJSONHandler(&buf, nil)))
			if telemetry.Logger(l) != l {
				t.Error("wrapping a wrapped logger again made another")
			}
			tt.log(l)
			if got := bytes.Count(buf.Bytes(), []byte(`"trace_id"`)); got != tt.wantKeys {
				t.Errorf("trace_id appears %d times in %s, want %d", got, buf.Bytes(), tt.wantKeys)
			}
			lines := logLines(t, &buf)
			if len(lines) != 1 {
				t.Fatalf("%d lines", len(lines))
			}
			if lines[0]["trace_id"] != tt.wantTrace || lines[0]["span_id"] != tt.wantSpan {
				t.Errorf("line %v: want trace_id %v span_id %v", lines[0], tt.wantTrace, tt.wantSpan)
			}
		})
	}
}

func TestLogHandlerInGroup(t *testing.T) {
	ctx := telemetry.Extract(context.Background(), callerParent, "")
	for _, tt := range []struct {
		name      string
		log       func(l *slog.Logger)
		wantTop   any // the line's trace_id
		wantGroup map[string]any
	}{
		{"ids go to the open group, as every attribute of the line",
			func(l *slog.Logger) { l.WithGroup("g").InfoContext(ctx, "m") },
			nil, map[string]any{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}},
		{"a trace_id given before the group counts",
			func(l *slog.Logger) { telemetry.WithTrace(ctx, l).WithGroup("g").InfoContext(ctx, "m") },
			"4bf92f3577b34da6a3ce929d0e0e4736", map[string]any{"span_id": "00f067aa0ba902b7"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tt.log(telemetry.Logger(slog.New(slog.NewJSONHandler(&buf, nil))))
			lines := logLines(t, &buf)
			if len(lines) != 1 {
				t.Fatalf("%d lines", len(lines))
			}
			g, _ := lines[0]["g"].(map[string]any)
			if lines[0]["trace_id"] != tt.wantTop || len(g) != len(tt.wantGroup) {
				t.Fatalf("line %v", lines[0])
			}
			for k, v := range tt.wantGroup {
				if g[k] != v {
					t.Errorf("line %v: g.%s = %v, want %v", lines[0], k, g[k], v)
				}
			}
		})
	}
}
