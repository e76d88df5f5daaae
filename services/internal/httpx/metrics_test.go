package httpx

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/orderflow/orderflow/services/internal/httpx/metricstest"
)

// scrape serves m's /metrics as a scraper without preferences gets it,
// checks that it is the text format, and parses and lints it.
func scrape(t *testing.T, m *Metrics) metricstest.Families {
	t.Helper()
	rr := httptest.NewRecorder()
	m.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rr.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rr.Code, rr.Body)
	}
	if ct := rr.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("Content-Type %q, want the text format 0.0.4", ct)
	}
	return metricstest.Parse(t, rr.Body.Bytes())
}

// TestMetricsExposition registers one metric of every kind, records HTTP
// requests through the middleware, and reads the scrape back as
// Prometheus would: every family has its type, name and labels, and the
// linter finds nothing to say.
func TestMetricsExposition(t *testing.T) {
	m := NewMetrics()
	jobs := m.Counter("orderflow_test_jobs_total", "Jobs.", "kind")
	jobs.Inc(`we"ird`)
	jobs.Add(2.5, "plain")
	waits := m.Histogram("orderflow_test_wait_seconds", "Waits.", []float64{0.1, 1}, "queue")
	for _, v := range []float64{0.05, 0.5, 0.5, 3} {
		waits.Observe(v, "q1")
	}
	m.GaugeFunc("orderflow_test_level", "A gauge.", func() float64 { return 2.5 })
	m.GaugeVecFunc("orderflow_test_lag", "Lag.", []string{"projection"}, func() []Sample {
		return []Sample{{Labels: []string{"orders"}, Value: 3}, {Labels: []string{"stock"}, Value: 0}}
	})
	// A sample with the wrong number of labels is left out, not written
	// half, and the rest of the scrape is served.
	m.GaugeVecFunc("orderflow_test_bad", "Bad.", []string{"a", "b"}, func() []Sample {
		return []Sample{{Labels: []string{"only-one"}, Value: 1}, {Labels: []string{"x", "y"}, Value: 7}}
	})
	m.CounterVecFunc("orderflow_test_published_total", "Published.", nil, func() []Sample {
		return []Sample{{Value: 42}}
	})

	r := chi.NewRouter()
	r.Use(m.Middleware)
	r.Get("/api/orders/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	r.NotFound(NotFound)
	for _, p := range []string{"/api/orders/1", "/api/orders/2", "/nope"} {
		r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, p, nil))
	}

	fams := scrape(t, m)
	types := []struct {
		name string
		typ  dto.MetricType
	}{
		{"orderflow_http_request_duration_seconds", dto.MetricType_HISTOGRAM},
		{"orderflow_http_requests_total", dto.MetricType_COUNTER},
		{"orderflow_http_request_seconds_total", dto.MetricType_COUNTER},
		{"orderflow_test_jobs_total", dto.MetricType_COUNTER},
		{"orderflow_test_wait_seconds", dto.MetricType_HISTOGRAM},
		{"orderflow_test_level", dto.MetricType_GAUGE},
		{"orderflow_test_lag", dto.MetricType_GAUGE},
		{"orderflow_test_bad", dto.MetricType_GAUGE},
		{"orderflow_test_published_total", dto.MetricType_COUNTER},
		// The standard collectors.
		{"go_goroutines", dto.MetricType_GAUGE},
		{"go_gc_duration_seconds", dto.MetricType_SUMMARY},
		{"process_cpu_seconds_total", dto.MetricType_COUNTER},
		{"process_resident_memory_bytes", dto.MetricType_GAUGE},
		{"promhttp_metric_handler_errors_total", dto.MetricType_COUNTER},
	}
	for _, tt := range types {
		fams.Want(t, tt.name, tt.typ)
	}

	values := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"orderflow_http_requests_total", []string{"method", "GET", "route", "/api/orders/{id}", "status", "418"}, 2},
		{"orderflow_http_requests_total", []string{"method", "GET", "route", "unmatched", "status", "404"}, 1},
		{"orderflow_test_jobs_total", []string{"kind", `we"ird`}, 1},
		{"orderflow_test_jobs_total", []string{"kind", "plain"}, 2.5},
		{"orderflow_test_level", nil, 2.5},
		{"orderflow_test_lag", []string{"projection", "orders"}, 3},
		{"orderflow_test_lag", []string{"projection", "stock"}, 0},
		{"orderflow_test_bad", []string{"a", "x", "b", "y"}, 7},
		{"orderflow_test_published_total", nil, 42},
		{"promhttp_metric_handler_errors_total", []string{"cause", "gathering"}, 0},
	}
	for _, tt := range values {
		got, ok := fams.Value(tt.name, tt.labels...)
		if !ok || got != tt.want {
			t.Errorf("%s%q = %v (found %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
	if n := len(fams["orderflow_test_bad"].GetMetric()); n != 1 {
		t.Errorf("orderflow_test_bad has %d samples, want the one well-formed", n)
	}

	h := fams.Histogram("orderflow_http_request_duration_seconds", "method", "GET", "route", "/api/orders/{id}", "status", "418")
	if h.GetSampleCount() != 2 || h.GetSampleSum() <= 0 {
		t.Errorf("request duration histogram: count %d sum %v, want 2 requests that took some time", h.GetSampleCount(), h.GetSampleSum())
	}
	// The parser adds the +Inf bucket the text format writes.
	if got := len(h.GetBucket()); got != len(HTTPDurationBuckets)+1 {
		t.Errorf("request duration histogram has %d buckets, want %d and +Inf", got, len(HTTPDurationBuckets))
	}

	w := fams.Histogram("orderflow_test_wait_seconds", "queue", "q1")
	if w.GetSampleCount() != 4 || w.GetSampleSum() != 4.05 {
		t.Errorf("wait histogram: count %d sum %v, want 4 and 4.05", w.GetSampleCount(), w.GetSampleSum())
	}
	wantBuckets := map[float64]uint64{0.1: 1, 1: 3, math.Inf(1): 4}
	for _, b := range w.GetBucket() {
		if want, ok := wantBuckets[b.GetUpperBound()]; !ok || b.GetCumulativeCount() != want {
			t.Errorf("wait bucket le=%v holds %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
}

// TestMetricsLint: the linter run on every scrape does catch what
// Prometheus's conventions forbid, so a clean scrape means something.
func TestMetricsLint(t *testing.T) {
	tests := []struct {
		name     string
		register func(m *Metrics)
	}{
		{"counter without _total", func(m *Metrics) { m.Counter("orderflow_test_jobs", "Jobs.").Inc() }},
		{"duration in milliseconds", func(m *Metrics) { m.Histogram("orderflow_test_wait_milliseconds", "Waits.", nil).Observe(1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMetrics()
			tt.register(m)
			rr := httptest.NewRecorder()
			m.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			rec := &recordingTB{TB: t}
			metricstest.Parse(rec, rr.Body.Bytes())
			if len(rec.errors) == 0 {
				t.Fatal("the linter found no problem")
			}
			t.Logf("lint: %s", rec.errors)
		})
	}
}

// recordingTB keeps the errors reported to it instead of failing the test.
type recordingTB struct {
	testing.TB
	errors []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.errors = append(r.errors, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

// TestCounterConcurrentAdds: adds from many goroutines, to new and to
// existing label values, are all counted.
func TestCounterConcurrentAdds(t *testing.T) {
	m := NewMetrics()
	c := m.Counter("orderflow_test_adds_total", "Adds.", "kind", "shard")
	const goroutines, adds = 8, 1000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range adds {
				c.Add(0.5, "k", strconv.Itoa(i%4))
				c.Inc("own", strconv.Itoa(g))
			}
		})
	}
	wg.Wait()
	for s := range 4 {
		if got, want := c.Value("k", strconv.Itoa(s)), 0.5*goroutines*adds/4; got != want {
			t.Errorf("shard %d: %v, want %v", s, got, want)
		}
	}
	if got := c.Value("own", "3"); got != adds {
		t.Errorf("own 3: %v, want %d", got, adds)
	}
	if got := c.Value("never", "seen"); got != 0 {
		t.Errorf("unseen labels: %v, want 0", got)
	}
	fams := scrape(t, m)
	if got, _ := fams.Value("orderflow_test_adds_total", "kind", "own", "shard", "7"); got != adds {
		t.Errorf("scraped own 7: %v, want %d", got, adds)
	}
	if n := len(fams["orderflow_test_adds_total"].GetMetric()); n != 4+goroutines {
		t.Errorf("%d samples, want %d", n, 4+goroutines)
	}
}

// TestMetricNamesAreUnique: a name registered twice, whatever the kinds,
// and a name Prometheus refuses, panic where they are registered.
func TestMetricNamesAreUnique(t *testing.T) {
	gauge := func() float64 { return 0 }
	tests := []struct {
		name     string
		register func(m *Metrics)
	}{
		{"counter twice", func(m *Metrics) { m.Counter("orderflow_x_total", "X.") }},
		{"gauge over counter", func(m *Metrics) { m.GaugeFunc("orderflow_x_total", "X.", gauge) }},
		{"histogram over counter", func(m *Metrics) { m.Histogram("orderflow_x_total", "X.", nil) }},
		{"vec func over counter", func(m *Metrics) { m.CounterVecFunc("orderflow_x_total", "X.", nil, nil) }},
		{"collector over counter", func(m *Metrics) {
			m.Register(prometheus.NewCounter(prometheus.CounterOpts{Name: "orderflow_x_total", Help: "X."}))
		}},
		{"built-in name", func(m *Metrics) { m.Counter("orderflow_http_requests_total", "Again.") }},
		{"standard collector's name", func(m *Metrics) { m.GaugeFunc("go_goroutines", "Again.", gauge) }},
		{"invalid name", func(m *Metrics) { m.Counter("orderflow-x-total", "X.") }},
		{"invalid label", func(m *Metrics) { m.Counter("orderflow_y_total", "Y.", "bad-label") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMetrics()
			m.Counter("orderflow_x_total", "X.")
			defer func() {
				if recover() == nil {
					t.Fatal("the registration did not panic")
				}
			}()
			tt.register(m)
		})
	}
}

// TestMetricsAreSeparate: two registries (two services in one process)
// do not see each other's metrics.
func TestMetricsAreSeparate(t *testing.T) {
	a, b := NewMetrics(), NewMetrics()
	a.Counter("orderflow_test_only_a_total", "A.").Inc()
	b.Counter("orderflow_test_only_a_total", "Registered in b too: no clash.")
	if v, ok := scrape(t, a).Value("orderflow_test_only_a_total"); !ok || v != 1 {
		t.Errorf("a: %v %v, want 1", v, ok)
	}
	if v, ok := scrape(t, b).Value("orderflow_test_only_a_total"); ok {
		t.Errorf("b shows a's count %v", v)
	}
}

func TestStatusLabel(t *testing.T) {
	for _, s := range []int{0, 99, 100, 200, 418, 599, 600, math.MaxInt32} {
		if got, want := statusLabel(s), strconv.Itoa(s); got != want {
			t.Errorf("statusLabel(%d) = %q, want %q", s, got, want)
		}
	}
}
