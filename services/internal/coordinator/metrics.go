package coordinator

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/sagas"
)

// StepDurationBuckets are the upper bounds, in seconds, of the step
// duration histogram. A step answered by a service that runs takes
// milliseconds; one that needs retries takes the retry policy's backoff
// (half a second and up by default), and one that times out takes its
// whole budget (a 5 s timeout per attempt, three attempts, by default).
var StepDurationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120}

// Step outcomes, the outcome label of the step duration histogram.
const (
	StepOutcomeSucceeded = "succeeded"
	StepOutcomeFailed    = "failed"
	StepOutcomeTimedOut  = "timed_out"
)

// stepMetrics is the step duration histogram of one coordinator, made on
// first use so that the zero Coordinator needs nothing more.
type stepMetrics struct {
	once sync.Once
	vec  *prometheus.HistogramVec
}

func (m *stepMetrics) durations() *prometheus.HistogramVec {
	m.once.Do(func() {
		m.vec = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "orderflow_saga_step_duration_seconds",
			Help: "Time from a saga step's first command to its end (succeeded, failed, or timed out through its budget), " +
				"by saga type, step and outcome.",
			Buckets: StepDurationBuckets,
		}, []string{"saga", "step", "outcome"})
	})
	return m.vec
}

// StepDurations returns the coordinator's histogram
// orderflow_saga_step_duration_seconds{saga,step,outcome}, for the sagas
// service to register on its /metrics. A step's duration runs from the
// first command of its first attempt to the decision that ended it, so it
// includes the retries, and, for a step a failed saga was parked on and
// an operator resumed, the time it waited for the operator.
func (c *Coordinator) StepDurations() prometheus.Collector { return c.steps.durations() }

// observeSteps records in the step duration histogram the forward steps
// that events, just appended and applied to st, ended.
func (c *Coordinator) observeSteps(st *sagas.State, events []any) {
	var sum *sagas.Summary // built once, and only when a step ended
	for _, ev := range events {
		var step, outcome string
		var at time.Time
		switch e := ev.(type) {
		case sagas.StepSucceeded:
			step, outcome, at = e.Step, StepOutcomeSucceeded, e.At
		case sagas.StepFailed:
			step, outcome, at = e.Step, StepOutcomeFailed, e.At
		case sagas.StepTimedOut:
			step, outcome, at = e.Step, StepOutcomeTimedOut, e.At
		default:
			continue
		}
		if sum == nil {
			s := st.Summarize()
			sum = &s
		}
		started, ok := stepStarted(sum, step)
		if !ok {
			// Never sent (a step given up before it ran): nothing to time.
			continue
		}
		c.steps.durations().WithLabelValues(sum.Type, step, outcome).Observe(max(at.Sub(started), 0).Seconds())
	}
}

// stepStarted returns when step of sum started; false when it did not.
func stepStarted(sum *sagas.Summary, step string) (time.Time, bool) {
	for _, v := range sum.Steps {
		if v.Name != step || v.StartedAt == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v.StartedAt)
		return t, err == nil
	}
	return time.Time{}, false
}
