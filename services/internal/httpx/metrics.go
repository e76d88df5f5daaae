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
// with labels, gauges read at scrape time, and the HTTP request metrics.
type Metrics struct {
	mu       sync.Mutex
	counters []*CounterVec
	gauges   []gaugeFunc

	requests *CounterVec
	seconds  *CounterVec
}

type gaugeFunc struct {
	name, help string
	read       func() float64
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
	m.mu.Lock()
	m.gauges = append(m.gauges, gaugeFunc{name: name, help: help, read: read})
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
		b.WriteString(c.name)
		if len(c.labels) > 0 {
			vals := strings.Split(k, "\xff")
			b.WriteByte('{')
			for i, l := range c.labels {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(l)
				b.WriteString(`="`)
				b.WriteString(escapeLabel(vals[i]))
				b.WriteByte('"')
			}
			b.WriteByte('}')
		}
		b.WriteByte(' ')
		b.WriteString(strconv.FormatFloat(values[k], 'g', -1, 64))
		b.WriteByte('\n')
	}
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
	gauges := slices.Clone(m.gauges)
	m.mu.Unlock()

	var b bytes.Buffer
	for _, c := range counters {
		c.write(&b)
	}
	for _, g := range gauges {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s %s\n", g.name, escapeHelp(g.help), g.name,
			g.name, strconv.FormatFloat(g.read(), 'g', -1, 64))
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
