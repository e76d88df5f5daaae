package httpx

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
)

// Metrics is a service's metrics registry, served in the Prometheus
// exposition formats by ServeHTTP. It is a thin layer over a
// prometheus.Registry of its own (never the library's global default one:
// tests run several services in one process, and each must expose only its
// own figures). The methods keep the wiring short for the two kinds of
// metric the services have: the ones they update as things happen
// (Counter, Histogram) and the ones read at scrape time from figures a
// component keeps anyway (GaugeFunc, GaugeVecFunc, CounterVecFunc).
// Components that own their own collectors add them with Register.
//
// Registering a name twice, or a metric or label name outside the classic
// rules ([a-zA-Z_:][a-zA-Z0-9_:]*, which every scraper and query accepts
// unquoted), panics: a scrape holding one metric twice is refused by
// Prometheus as a whole, and a name the text format must escape could
// clash with another once escaped, so the mistake must surface where the
// metrics are wired, not on the first scrape.
//
// The registry also holds the standard Go runtime (go_*) and process
// (process_*) collectors, and the HTTP metrics Middleware records.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	requests *prometheus.CounterVec
	seconds  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// HTTPDurationBuckets are the upper bounds, in seconds, of the HTTP request
// duration histogram: a service answers in milliseconds, so the buckets
// are finer there than prometheus.DefBuckets, and end at the request
// timeout's order of magnitude.
var HTTPDurationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewMetrics returns a registry holding the Go and process collectors and
// the HTTP request metrics of Middleware:
//
//   - orderflow_http_request_duration_seconds{method,route,status}, a
//     histogram;
//   - orderflow_http_requests_total{method,route,status}, a counter (the
//     histogram's _count holds the same; kept for the readers of the name);
//   - orderflow_http_request_seconds_total{method,route}, a counter
//     (the histogram's _sum without the status; kept likewise).
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "orderflow_http_request_duration_seconds",
		Help:    "Time spent answering HTTP requests, by method, route pattern and status.",
		Buckets: HTTPDurationBuckets,
	}, []string{"method", "route", "status"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orderflow_http_requests_total",
		Help: "HTTP requests answered, by method, route pattern and status.",
	}, []string{"method", "route", "status"})
	m.seconds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orderflow_http_request_seconds_total",
		Help: "Time spent answering HTTP requests, by method and route pattern (the sum of orderflow_http_request_duration_seconds).",
	}, []string{"method", "route"})
	m.reg.MustRegister(m.duration, m.requests, m.seconds)
	// Errors while gathering (a reader that gives one label set twice,
	// say) are counted in promhttp_metric_handler_errors_total, and the
	// rest of the scrape is served rather than nothing.
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:      m.reg,
		ErrorHandling: promhttp.ContinueOnError,
	})
	return m
}

// Register adds collectors that a component owns (a histogram it observes
// into, say) to the registry. It panics on a name registered before; the
// component keeps to the classic name rules itself.
func (m *Metrics) Register(cs ...prometheus.Collector) {
	m.reg.MustRegister(cs...)
}

// checkNames panics unless name and labels follow the classic rules (see
// Metrics).
func checkNames(name string, labels []string) {
	if !model.LegacyValidation.IsValidMetricName(name) {
		panic(fmt.Sprintf("metric name %q is not [a-zA-Z_:][a-zA-Z0-9_:]*", name))
	}
	for _, l := range labels {
		if !model.LegacyValidation.IsValidLabelName(l) {
			panic(fmt.Sprintf("metric %s: label name %q is not [a-zA-Z_][a-zA-Z0-9_]*", name, l))
		}
	}
}

// CounterVec is a counter with labels, given in the order of the label
// names the counter was registered with.
type CounterVec struct {
	vec    *prometheus.CounterVec
	labels []string
}

// Counter registers a counter; label values are given to Add in the order
// of labels.
func (m *Metrics) Counter(name, help string, labels ...string) *CounterVec {
	checkNames(name, labels)
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	m.reg.MustRegister(vec)
	return &CounterVec{vec: vec, labels: labels}
}

// Add adds v (>= 0; a negative v panics) to the counter with the given
// label values. A wrong number of label values panics.
func (c *CounterVec) Add(v float64, labelValues ...string) {
	c.vec.WithLabelValues(labelValues...).Add(v)
}

// Inc adds 1.
func (c *CounterVec) Inc(labelValues ...string) { c.vec.WithLabelValues(labelValues...).Inc() }

// Value returns the counter's value for the label values, 0 for label
// values never counted (which it does not create). It gathers the whole
// vector, so it is for tests and diagnostics, not for hot paths.
func (c *CounterVec) Value(labelValues ...string) float64 {
	if len(labelValues) != len(c.labels) {
		return 0
	}
	for _, s := range collect(c.vec) {
		if matches(s, c.labels, labelValues) {
			return s.GetCounter().GetValue()
		}
	}
	return 0
}

// HistogramVec is a histogram with labels, given in the order of the label
// names the histogram was registered with.
type HistogramVec struct {
	vec *prometheus.HistogramVec
}

// Histogram registers a histogram with the given bucket upper bounds (nil
// means prometheus.DefBuckets); label values are given to Observe in the
// order of labels. A duration is observed in seconds, and its name ends in
// _seconds.
func (m *Metrics) Histogram(name, help string, buckets []float64, labels ...string) *HistogramVec {
	checkNames(name, labels)
	if buckets == nil {
		buckets = prometheus.DefBuckets
	}
	vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	m.reg.MustRegister(vec)
	return &HistogramVec{vec: vec}
}

// Observe records v in the histogram with the given label values. A wrong
// number of label values panics.
func (h *HistogramVec) Observe(v float64, labelValues ...string) {
	h.vec.WithLabelValues(labelValues...).Observe(v)
}

// Sample is one value of a metric read at scrape time; Labels holds the
// label values in the order of the metric's label names.
type Sample struct {
	Labels []string
	Value  float64
}

// GaugeFunc registers a gauge whose value is read at every scrape.
func (m *Metrics) GaugeFunc(name, help string, read func() float64) {
	checkNames(name, nil)
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, read))
}

// GaugeVecFunc registers a gauge with labels whose samples are read at
// every scrape, for figures owned by another component (one sample per
// projection, say).
func (m *Metrics) GaugeVecFunc(name, help string, labels []string, read func() []Sample) {
	m.reg.MustRegister(newFuncCollector(name, help, prometheus.GaugeValue, labels, read))
}

// CounterVecFunc registers a counter with labels whose samples are read at
// every scrape: a monotonic count another component keeps. labels may be
// empty.
func (m *Metrics) CounterVecFunc(name, help string, labels []string, read func() []Sample) {
	m.reg.MustRegister(newFuncCollector(name, help, prometheus.CounterValue, labels, read))
}

// funcCollector is a metric family whose samples are read at every
// scrape: a prometheus.Collector of const metrics.
type funcCollector struct {
	desc   *prometheus.Desc
	kind   prometheus.ValueType
	labels int
	read   func() []Sample
}

func newFuncCollector(name, help string, kind prometheus.ValueType, labels []string, read func() []Sample) *funcCollector {
	checkNames(name, labels)
	return &funcCollector{
		desc:   prometheus.NewDesc(name, help, labels, nil),
		kind:   kind,
		labels: len(labels),
		read:   read,
	}
}

// Describe sends the one descriptor, which lets the registry refuse a
// name registered twice when it is registered.
func (f *funcCollector) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }

// Collect sends the samples read now. A sample with the wrong number of
// label values (or label values that are not UTF-8) is a reader's bug; it
// is left out rather than failing the whole scrape.
func (f *funcCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range f.read() {
		if len(s.Labels) != f.labels {
			continue
		}
		m, err := prometheus.NewConstMetric(f.desc, f.kind, s.Value, s.Labels...)
		if err != nil {
			continue
		}
		ch <- m
	}
}

// Middleware records every request's duration by method, route pattern
// and status. Route patterns (not raw paths) keep the label set bounded.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := NewStatusRecorder(w)
		next.ServeHTTP(rec, r)
		seconds := time.Since(start).Seconds()
		route := RoutePattern(r)
		status := statusLabel(rec.Status())
		m.duration.WithLabelValues(r.Method, route, status).Observe(seconds)
		m.requests.WithLabelValues(r.Method, route, status).Inc()
		m.seconds.WithLabelValues(r.Method, route).Add(seconds)
	})
}

// statusLabel spells status as a label value without allocating for the
// statuses the services answer with.
func statusLabel(status int) string {
	if status >= 100 && status < 600 {
		return statusLabels[status-100]
	}
	return strconv.Itoa(status)
}

var statusLabels = func() [500]string {
	var s [500]string
	for i := range s {
		s[i] = strconv.Itoa(i + 100)
	}
	return s
}()

// ServeHTTP writes every registered metric in the exposition format the
// scraper asks for (the Prometheus text format when it asks for none).
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.handler.ServeHTTP(w, r)
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

// collect returns the samples c holds now.
func collect(c prometheus.Collector) []*dto.Metric {
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var out []*dto.Metric
	for m := range ch {
		s := new(dto.Metric)
		if m.Write(s) == nil {
			out = append(out, s)
		}
	}
	return out
}

// matches reports whether sample s has the label values values for the
// label names names (a sample's labels are sorted by name, not in the
// order they were declared).
func matches(s *dto.Metric, names, values []string) bool {
	if len(s.GetLabel()) != len(names) {
		return false
	}
	for i, name := range names {
		found := false
		for _, l := range s.GetLabel() {
			if l.GetName() == name {
				found = l.GetValue() == values[i]
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
