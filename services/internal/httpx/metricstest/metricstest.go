// Package metricstest reads a service's /metrics in tests the way a
// scraper would: it parses the exposition with the Prometheus library's
// text parser, runs the library's linter (promlint, what `promtool check
// metrics` runs) over it, and looks families and samples up by name and
// labels, so that a test asserts on what Prometheus would store rather
// than on lines of text.
package metricstest

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are the metric families of one scrape, by name.
type Families map[string]*dto.MetricFamily

// Parse parses body, a scrape in the Prometheus text format, and fails t
// when it does not parse or when promlint reports any problem with it.
// Names are held to the classic rules ([a-zA-Z_:][a-zA-Z0-9_:]*), which
// every scraper accepts.
func Parse(t testing.TB, body []byte) Families {
	t.Helper()
	fams, err := Read(body)
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("lint the exposition: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	return fams
}

// Read parses body, a scrape in the Prometheus text format, without
// linting it: for the scrapes a test polls until they show what it waits
// for (Parse the last one).
func Read(body []byte) (Families, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parse the exposition: %w", err)
	}
	return fams, nil
}

// Want fails t unless family name was scraped with type typ, and returns
// it.
func (fs Families) Want(t testing.TB, name string, typ dto.MetricType) *dto.MetricFamily {
	t.Helper()
	f, ok := fs[name]
	if !ok {
		t.Fatalf("no metric family %s among %s", name, strings.Join(fs.names(), ", "))
	}
	if f.GetType() != typ {
		t.Fatalf("metric family %s is a %s, want a %s", name, f.GetType(), typ)
	}
	return f
}

// Sample returns the sample of family name whose labels include labels,
// given as name, value pairs; nil when there is none.
func (fs Families) Sample(name string, labels ...string) *dto.Metric {
	if len(labels)%2 != 0 {
		panic(fmt.Sprintf("metricstest: odd label list %q", labels))
	}
	f, ok := fs[name]
	if !ok {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i < len(labels); i += 2 {
			if value(m, labels[i]) != labels[i+1] {
				continue next
			}
		}
		return m
	}
	return nil
}

// Value returns the value of a counter, gauge or untyped sample of family
// name (see Sample), and false when there is no such sample.
func (fs Families) Value(name string, labels ...string) (float64, bool) {
	m := fs.Sample(name, labels...)
	switch {
	case m == nil:
		return 0, false
	case m.Counter != nil:
		return m.GetCounter().GetValue(), true
	case m.Gauge != nil:
		return m.GetGauge().GetValue(), true
	case m.Untyped != nil:
		return m.GetUntyped().GetValue(), true
	}
	return 0, false
}

// Histogram returns the histogram sample of family name (see Sample), nil
// when there is none.
func (fs Families) Histogram(name string, labels ...string) *dto.Histogram {
	return fs.Sample(name, labels...).GetHistogram()
}

func (fs Families) names() []string { return slices.Sorted(maps.Keys(fs)) }

// value is the value of m's label name, "" when it has none.
func value(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
