package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/services/internal/telemetry"
	"github.com/orderflow/orderflow/services/internal/telemetry/telemetrytest"
)

const (
	callerTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan   = "00f067aa0ba902b7"
	callerParent = "00-" + callerTrace + "-" + callerSpan + "-01"
)

// recordSpans installs a tracer provider exporting to memory for the
// rest of the test.
func recordSpans(t *testing.T) *tracetest.InMemoryExporter {
	t.Helper()
	return telemetrytest.Record(t, "test")
}

// noTracing installs the no-op provider for the rest of the test.
func noTracing(t *testing.T) {
	t.Helper()
	for _, k := range []string{telemetry.EnvEndpoint, telemetry.EnvTracesEndpoint} {
		t.Setenv(k, "")
	}
	shutdown, err := telemetry.Start(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
}

// tracedServer is a service's chain of middleware in front of a chi
// router whose handlers record the command metadata a request gets; logs
// go to buf as JSON.
func tracedServer(t *testing.T, buf *bytes.Buffer, metas chan<- commands.Meta) http.Handler {
	t.Helper()
	logger := telemetry.Logger(slog.New(slog.NewJSONHandler(buf, nil)))
	r := chi.NewRouter()
	r.Use(RequestID, Trace("orders", "/healthz"), AccessLog(logger), Recover)
	r.Post("/api/orders/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		metas <- CommandMeta(r)
		Logger(r.Context()).Info("handler line without context")
		w.WriteHeader(http.StatusAccepted)
	})
	r.Get("/boom", func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	r.Get("/healthz", Healthz)
	return r
}

func TestTraceServerSpans(t *testing.T) {
	exp := recordSpans(t)
	for _, tt := range []struct {
		name       string
		method     string
		path       string
		header     map[string]string
		wantSpan   string // "" for none
		wantStatus int
		wantError  bool
		fromCaller bool
	}{
		{"caller's traceparent is the parent", http.MethodPost, "/api/orders/o-1/cancel",
			map[string]string{"Traceparent": callerParent, "Tracestate": "caller=1", RequestIDHeader: "req-1"},
			"POST /api/orders/{id}/cancel", http.StatusAccepted, false, true},
		{"no traceparent: a new trace", http.MethodPost, "/api/orders/o-2/cancel", nil,
			"POST /api/orders/{id}/cancel", http.StatusAccepted, false, false},
		{"malformed traceparent: a new trace", http.MethodPost, "/api/orders/o-3/cancel",
			map[string]string{"Traceparent": "00-zz-yy-01"}, "POST /api/orders/{id}/cancel", http.StatusAccepted, false, false},
		{"a 5xx fails the span", http.MethodGet, "/boom", nil, "GET /boom", http.StatusInternalServerError, true, false},
		{"probes are not traced", http.MethodGet, "/healthz", map[string]string{"Traceparent": callerParent}, "", http.StatusOK, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			exp.Reset()
			var buf bytes.Buffer
			metas := make(chan commands.Meta, 1)
			srv := httptest.NewServer(tracedServer(t, &buf, metas))
			t.Cleanup(srv.Close)
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.wantStatus)
			}
			// The server span ends before the handler chain returns, so
			// before the response is complete.
			spans := exp.GetSpans()
			if tt.wantSpan == "" {
				if len(spans) != 0 {
					t.Fatalf("%d spans for an untraced path", len(spans))
				}
				return
			}
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			sp := spans[0]
			if sp.Name != tt.wantSpan || sp.SpanKind != trace.SpanKindServer {
				t.Errorf("span %q (%s), want %q (server)", sp.Name, sp.SpanKind, tt.wantSpan)
			}
			attrs := map[string]string{}
			for _, kv := range sp.Attributes {
				attrs[string(kv.Key)] = kv.Value.Emit()
			}
			if attrs["service.name"] != "orderflow-orders" || attrs["http.response.status_code"] != strconv.Itoa(tt.wantStatus) ||
				attrs["http.route"] == "" || attrs["orderflow.request_id"] != res.Header.Get(RequestIDHeader) {
				t.Errorf("attributes %v", attrs)
			}
			if (sp.Status.Code == codes.Error) != tt.wantError {
				t.Errorf("status %v, want error %t", sp.Status, tt.wantError)
			}
			if tt.fromCaller {
				if sp.SpanContext.TraceID().String() != callerTrace || sp.Parent.SpanID().String() != callerSpan || !sp.Parent.IsRemote() {
					t.Errorf("span %s under %s, want the caller's trace and span", sp.SpanContext.TraceID(), sp.Parent.SpanID())
				}
			} else if sp.Parent.IsValid() {
				t.Errorf("span has parent %s, want a root", sp.Parent.SpanID())
			}

			// The request's command carries the server span on.
			if tt.method == http.MethodPost {
				m := <-metas
				want := "00-" + sp.SpanContext.TraceID().String() + "-" + sp.SpanContext.SpanID().String() + "-01"
				if m.TraceParent != want {
					t.Errorf("command traceparent %q, want the server span's %q", m.TraceParent, want)
				}
				if tt.fromCaller && m.TraceState != "caller=1" {
					t.Errorf("command tracestate %q, want the caller's", m.TraceState)
				}
			}
			// Every line of the request names its trace and request.
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatal(err)
				}
				if m["trace_id"] != sp.SpanContext.TraceID().String() || m["request_id"] != res.Header.Get(RequestIDHeader) {
					t.Errorf("log line %s lacks trace %s or request id", line, sp.SpanContext.TraceID())
				}
			}
		})
	}
}

// Without a provider, the caller's trace context reaches the command as
// it came, and the logs name the caller's trace.
func TestTraceWithoutProvider(t *testing.T) {
	noTracing(t)
	for _, tt := range []struct {
		name        string
		header      map[string]string
		wantParent  string
		wantState   string
		wantTraceID any
	}{
		{"caller's", map[string]string{"Traceparent": callerParent, "Tracestate": "caller=1"}, callerParent, "caller=1", callerTrace},
		{"none", nil, "", "", nil},
		{"malformed", map[string]string{"Traceparent": "not-a-traceparent"}, "", "", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			metas := make(chan commands.Meta, 1)
			h := tracedServer(t, &buf, metas)
			req := httptest.NewRequest(http.MethodPost, "/api/orders/o-1/cancel", nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted {
				t.Fatalf("status %d", rec.Code)
			}
			m := <-metas
			if m.TraceParent != tt.wantParent || m.TraceState != tt.wantState {
				t.Errorf("command trace context %q %q, want %q %q", m.TraceParent, m.TraceState, tt.wantParent, tt.wantState)
			}
			var line map[string]any
			if err := json.Unmarshal(bytes.SplitN(buf.Bytes(), []byte("\n"), 2)[0], &line); err != nil {
				t.Fatal(err)
			}
			if line["trace_id"] != tt.wantTraceID {
				t.Errorf("log line %v, want trace_id %v", line, tt.wantTraceID)
			}
		})
	}
}

// CommandMeta outside Trace takes the caller's header, when well-formed.
func TestCommandMetaWithoutTrace(t *testing.T) {
	for _, tt := range []struct {
		name, parent, state   string
		wantParent, wantState string
	}{
		{"well-formed", callerParent, "k=v", callerParent, "k=v"},
		{"malformed", "00-" + callerTrace + "-" + callerSpan, "k=v", "", ""},
		{"tracestate too long", callerParent, "k=" + strings.Repeat("v", 255) + ",l=" + strings.Repeat("w", 255), callerParent, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/x", nil)
			req.Header.Set("Traceparent", tt.parent)
			req.Header.Set("Tracestate", tt.state)
			m := CommandMeta(req)
			if m.TraceParent != tt.wantParent || m.TraceState != tt.wantState {
				t.Errorf("CommandMeta trace context %q %q, want %q %q", m.TraceParent, m.TraceState, tt.wantParent, tt.wantState)
			}
		})
	}
}

// BenchmarkTrace measures what Trace adds to a request with no collector
// configured (the no-op provider) and with one recording to memory,
// against the same chain without it.
func BenchmarkTrace(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = CommandMeta(r)
		w.WriteHeader(http.StatusAccepted)
	})
	router := func(traced bool) http.Handler {
		r := chi.NewRouter()
		if traced {
			r.Use(RequestID, Trace("orders"), AccessLog(slog.New(slog.DiscardHandler)))
		} else {
			r.Use(RequestID, AccessLog(slog.New(slog.DiscardHandler)))
		}
		r.Post("/api/orders", ok)
		return r
	}
	run := func(b *testing.B, h http.Handler, header map[string]string) {
		b.ReportAllocs()
		for b.Loop() {
			req := httptest.NewRequest(http.MethodPost, "/api/orders", nil)
			for k, v := range header {
				req.Header.Set(k, v)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
	}
	caller := map[string]string{"Traceparent": callerParent}
	b.Run("untraced", func(b *testing.B) { run(b, router(false), nil) })
	b.Run("noop", func(b *testing.B) {
		shutdown, err := telemetry.Start(context.Background(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		defer shutdown(context.Background())
		run(b, router(true), nil)
	})
	b.Run("noop with caller traceparent", func(b *testing.B) {
		shutdown, err := telemetry.Start(context.Background(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		defer shutdown(context.Background())
		run(b, router(true), caller)
	})
	b.Run("recording", func(b *testing.B) {
		shutdown, err := telemetry.Start(context.Background(), "bench", telemetry.WithExporter(tracetest.NewNoopExporter()))
		if err != nil {
			b.Fatal(err)
		}
		defer shutdown(context.Background())
		run(b, router(true), caller)
	})
}
