package httpx

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
)

// Metrics is a small registry of counters and gauges served in the
// Prometheus text exposition format. It is deliberately minimal: counters
// with labels, gauges (and counters kept elsewhere) read at scrape time,
// and the HTTP request metrics.
type Metrics struct {
	mu       sync.Mutex
	counters []*CounterVec
	funcs    []funcMetric

	requests *CounterVec
	seconds  *CounterVec
}

// funcMetric is a metric whose samples are read at every scrape.
type funcMetric struct {
	name, help, kind string
	labels           []string
	read             func() []Sample
}

// Sample is one value of a metric read at scrape time; Labels holds the
// label values in the order of the metric's label names.
type Sample struct {
	Labels []string
	Value  float64
}

// NewMetrics returns a registry holding the HTTP request counters
// orderflow_http_requests_total{method,route,status} and
// orderflow_http_request_seconds_total{method,route}.
func NewMetrics() *Metrics {
	m := &Metrics{}
	m.requests = m.Counter("orderflow_http_requests_total",
		"HTTP requests answered, by method, route pattern and status.", "method", "route", "status")
	m.seconds = m.Counter("orderflow_http_request_seconds_total",
		"Time spent answering HTTP requests, by method and route pattern.", "method", "route")
	return m
}

// CounterVec is a counter with labels.
type CounterVec struct {
	name, help string
	labels     []string
	mu         sync.Mutex
	values     map[string]float64 // key: label values joined by \xff
}

// Counter registers a counter; label values are given to Add in the order
// of labels.
func (m *Metrics) Counter(name, help string, labels ...string) *CounterVec {
	c := &CounterVec{name: name, help: help, labels: labels, values: make(map[string]float64)}
	m.mu.Lock()
	m.counters = append(m.counters, c)
	m.mu.Unlock()
	return c
}

// GaugeFunc registers a gauge whose value is read at every scrape.
func (m *Metrics) GaugeFunc(name, help string, read func() float64) {
	m.addFunc(funcMetric{name: name, help: help, kind: "gauge", read: func() []Sample {
		return []Sample{{Value: read()}}
	}})
}

// GaugeVecFunc registers a gauge with labels whose samples are read at
// every scrape, for figures owned by another component (one sample per
// projection, say).
func (m *Metrics) GaugeVecFunc(name, help string, labels []string, read func() []Sample) {
	m.addFunc(funcMetric{name: name, help: help, kind: "gauge", labels: labels, read: read})
}

// CounterVecFunc registers a counter with labels whose samples are read at
// every scrape: a monotonic count another component keeps. labels may be
// empty.
func (m *Metrics) CounterVecFunc(name, help string, labels []string, read func() []Sample) {
	m.addFunc(funcMetric{name: name, help: help, kind: "counter", labels: labels, read: read})
}

func (m *Metrics) addFunc(f funcMetric) {
	m.mu.Lock()
	m.funcs = append(m.funcs, f)
	m.mu.Unlock()
}

// Add adds v (>= 0) to the counter with the given label values.
func (c *CounterVec) Add(v float64, labelValues ...string) {
	if len(labelValues) != len(c.labels) {
		panic(fmt.Sprintf("metric %s: got %d label values, want %d", c.name, len(labelValues), len(c.labels)))
	}
	key := strings.Join(labelValues, "\xff")
	c.mu.Lock()
	c.values[key] += v
	c.mu.Unlock()
}

// Inc adds 1.
func (c *CounterVec) Inc(labelValues ...string) { c.Add(1, labelValues...) }

// Value returns the counter's value for the label values (for tests and
// diagnostics).
func (c *CounterVec) Value(labelValues ...string) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.values[strings.Join(labelValues, "\xff")]
}

func (c *CounterVec) write(b *bytes.Buffer) {
	c.mu.Lock()
	keys := make([]string, 0, len(c.values))
	for k := range c.values {
		keys = append(keys, k)
	}
	values := make(map[string]float64, len(c.values))
	for k, v := range c.values {
		values[k] = v
	}
	c.mu.Unlock()
	slices.Sort(keys)

	fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s counter\n", c.name, escapeHelp(c.help), c.name)
	for _, k := range keys {
		var vals []string
		if len(c.labels) > 0 {
			vals = strings.Split(k, "\xff")
		}
		writeSample(b, c.name, c.labels, vals, values[k])
	}
}

func (f funcMetric) write(b *bytes.Buffer) {
	samples := f.read()
	fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", f.name, escapeHelp(f.help), f.name, f.kind)
	for _, s := range samples {
		if len(s.Labels) != len(f.labels) {
			// A reader bug must not break the whole scrape.
			continue
		}
		writeSample(b, f.name, f.labels, s.Labels, s.Value)
	}
}

func writeSample(b *bytes.Buffer, name string, labels, values []string, v float64) {
	b.WriteString(name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(l)
			b.WriteString(`="`)
			b.WriteString(escapeLabel(values[i]))
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	b.WriteByte('\n')
}

// Middleware counts every request by method, route pattern and status.
// Route patterns (not raw paths) keep the label set bounded.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := NewStatusRecorder(w)
		next.ServeHTTP(rec, r)
		route := RoutePattern(r)
		m.requests.Inc(r.Method, route, strconv.Itoa(rec.Status()))
		m.seconds.Add(time.Since(start).Seconds(), r.Method, route)
	})
}

// ServeHTTP writes every registered metric in the Prometheus text format.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	m.mu.Lock()
	counters := slices.Clone(m.counters)
	funcs := slices.Clone(m.funcs)
	m.mu.Unlock()

	var b bytes.Buffer
	for _, c := range counters {
		c.write(&b)
	}
	for _, f := range funcs {
		f.write(&b)
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}

// RoutePattern returns the chi route pattern that served r, or "unmatched".
// It is complete only after the router has routed the request.
func RoutePattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if p := rc.RoutePattern(); p != "" {
			return p
		}
	}
	return "unmatched"
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
