package httpx

import (
	"bytes"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
)

// Metrics is a small registry of counters and gauges served in the
// Prometheus text exposition format. It is deliberately minimal: counters
// with labels, gauges (and counters kept elsewhere) read at scrape time,
// and the HTTP request metrics.
type Metrics struct {
	mu       sync.Mutex
	names    map[string]struct{}
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

// CounterVec is a counter with labels. Add runs on every request, so it
// takes no lock once a label combination exists: values maps the label
// values joined by \xff to a *atomicFloat.
type CounterVec struct {
	name, help string
	labels     []string
	values     sync.Map
}

// atomicFloat is a float64 updated by compare-and-swap of its bits.
type atomicFloat struct{ bits atomic.Uint64 }

func (f *atomicFloat) add(v float64) {
	for {
		old := f.bits.Load()
		if f.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (f *atomicFloat) load() float64 { return math.Float64frombits(f.bits.Load()) }

// Counter registers a counter; label values are given to Add in the order
// of labels.
func (m *Metrics) Counter(name, help string, labels ...string) *CounterVec {
	c := &CounterVec{name: name, help: help, labels: labels}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.claimName(name)
	m.counters = append(m.counters, c)
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
	defer m.mu.Unlock()
	m.claimName(f.name)
	m.funcs = append(m.funcs, f)
}

// claimName panics when name is registered twice: a scrape holding one
// metric twice is refused by Prometheus as a whole, so the mistake must
// surface where the metrics are wired, not on the first scrape. m.mu is
// held.
func (m *Metrics) claimName(name string) {
	if _, dup := m.names[name]; dup {
		panic("metric " + name + " registered twice")
	}
	if m.names == nil {
		m.names = make(map[string]struct{})
	}
	m.names[name] = struct{}{}
}

// Add adds v (>= 0) to the counter with the given label values.
func (c *CounterVec) Add(v float64, labelValues ...string) {
	if len(labelValues) != len(c.labels) {
		panic(fmt.Sprintf("metric %s: got %d label values, want %d", c.name, len(labelValues), len(c.labels)))
	}
	key := strings.Join(labelValues, "\xff")
	f, ok := c.values.Load(key)
	if !ok {
		f, _ = c.values.LoadOrStore(key, new(atomicFloat))
	}
	f.(*atomicFloat).add(v)
}

// Inc adds 1.
func (c *CounterVec) Inc(labelValues ...string) { c.Add(1, labelValues...) }

// Value returns the counter's value for the label values (for tests and
// diagnostics).
func (c *CounterVec) Value(labelValues ...string) float64 {
	if f, ok := c.values.Load(strings.Join(labelValues, "\xff")); ok {
		return f.(*atomicFloat).load()
	}
	return 0
}

func (c *CounterVec) write(b *bytes.Buffer) {
	type sample struct {
		key   string
		value float64
	}
	var samples []sample
	c.values.Range(func(k, f any) bool {
		samples = append(samples, sample{k.(string), f.(*atomicFloat).load()})
		return true
	})
	slices.SortFunc(samples, func(a, b sample) int { return strings.Compare(a.key, b.key) })

	fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s counter\n", c.name, escapeHelp(c.help), c.name)
	for _, s := range samples {
		var vals []string
		if len(c.labels) > 0 {
			vals = strings.Split(s.key, "\xff")
		}
		writeSample(b, c.name, c.labels, vals, s.value)
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
