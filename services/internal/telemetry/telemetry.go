// Package telemetry gives the services their traces and the trace ids in
// their logs, with OpenTelemetry.
//
// One order is one trace: the HTTP request that places it (a server
// span), the relay's publish of each event it caused (a producer span),
// the coordinator's decision on that event and the command run it leads
// to in the next service (consumer spans), and so on back. Between the
// hops the W3C trace context travels in each event's metadata and in the
// traceparent header of each NATS message (see docs/adr/0129).
//
// Start installs the process's tracer provider: one that exports over
// OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, otherwise a no-op one under
// which starting a span only passes the caller's trace context on. The
// spans go to whatever provider is installed globally when they start, so
// a test can install an in-memory exporter with WithExporter after the
// services were built.
//
// NewLogHandler adds the trace and span ids of the context a line is
// logged with to every log line.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace/noop"
)

// Environment variables Start reads. The OTLP exporter reads the rest of
// the standard OTEL_EXPORTER_OTLP_* variables (headers, timeout,
// certificates) itself, and the SDK OTEL_TRACES_SAMPLER and
// OTEL_RESOURCE_ATTRIBUTES.
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvTracesExporter = "OTEL_TRACES_EXPORTER"
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
)

// ErrUnsupported is returned by Start for an exporter setting this build
// cannot honour (an exporter other than otlp or none, a protocol other
// than http/protobuf). Failing to start beats running untraced while the
// operator believes otherwise.
var ErrUnsupported = errors.New("telemetry: unsupported setting")

// ServiceName is the service.name of service's spans: "orderflow-orders".
func ServiceName(service string) string { return "orderflow-" + service }

// Option tunes Start.
type Option func(*options)

type options struct {
	exporter sdktrace.SpanExporter
	logger   *slog.Logger
}

// WithExporter makes Start export every span to exp, synchronously as the
// span ends, whatever the environment says. It is meant for tests and
// their in-memory exporter (sdk/trace/tracetest): a span is there to be
// read as soon as it has ended.
func WithExporter(exp sdktrace.SpanExporter) Option {
	return func(o *options) { o.exporter = exp }
}

// WithLogger is where the SDK's own errors (a collector that cannot be
// reached) are logged; default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// Start installs the process's tracer provider and the W3C trace context
// propagator as OpenTelemetry's globals, and returns the function that
// flushes the spans still buffered and uninstalls the provider (a no-op
// one takes its place). service names the process ("orders"); its spans
// get the resource attribute service.name=orderflow-<service>.
//
// Without WithExporter, spans are exported over OTLP/HTTP when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set,
// and OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn that off;
// otherwise the provider is a no-op.
func Start(ctx context.Context, service string, opts ...Option) (shutdown func(context.Context) error, err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	otel.SetTextMapPropagator(Propagator)

	exp := o.exporter
	if exp == nil {
		on, err := exportConfigured()
		if err != nil {
			return nil, err
		}
		if !on {
			otel.SetTracerProvider(noop.NewTracerProvider())
			return func(context.Context) error { return nil }, nil
		}
		// The exporter reads its endpoint, headers and timeout from the
		// standard variables; it connects only when it first exports.
		if exp, err = otlptracehttp.New(ctx); err != nil {
			return nil, fmt.Errorf("telemetry: OTLP exporter: %w", err)
		}
	}

	res, err := resource.New(ctx,
		resource.WithFromEnv(), // OTEL_RESOURCE_ATTRIBUTES; ours below win
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(ServiceName(service)), semconv.ServiceNamespace("orderflow")),
	)
	if err != nil {
		// A detector that failed still leaves the rest of the resource.
		o.logger.Warn("telemetry: resource detection incomplete", "error", err)
	}
	var proc sdktrace.SpanProcessor
	if o.exporter != nil {
		proc = sdktrace.NewSimpleSpanProcessor(exp)
	} else {
		proc = sdktrace.NewBatchSpanProcessor(exp)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSpanProcessor(proc))
	log := o.logger
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("telemetry: span export failed", "error", err)
	}))
	otel.SetTracerProvider(tp)
	return func(ctx context.Context) error {
		otel.SetTracerProvider(noop.NewTracerProvider())
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("telemetry: shutdown: %w", err)
		}
		return nil
	}, nil
}

// exportConfigured reports whether the environment asks for OTLP export,
// and an error for a setting Start cannot honour.
func exportConfigured() (bool, error) {
	if v, err := strconv.ParseBool(strings.TrimSpace(os.Getenv(EnvSDKDisabled))); err == nil && v {
		return false, nil
	}
	switch e := strings.TrimSpace(os.Getenv(EnvTracesExporter)); e {
	case "none":
		return false, nil
	case "", "otlp":
	default:
		return false, fmt.Errorf("%w: %s=%q (want otlp or none)", ErrUnsupported, EnvTracesExporter, e)
	}
	if os.Getenv(EnvEndpoint) == "" && os.Getenv(EnvTracesEndpoint) == "" {
		return false, nil
	}
	protocol := os.Getenv(EnvTracesProtocol)
	if protocol == "" {
		protocol = os.Getenv(EnvProtocol)
	}
	if p := strings.TrimSpace(protocol); p != "" && p != "http/protobuf" {
		return false, fmt.Errorf("%w: OTLP protocol %q (this build exports over http/protobuf)", ErrUnsupported, p)
	}
	return true, nil
}
