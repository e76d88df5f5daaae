package chaos

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is a finished run, as the command prints it.
type Report struct {
	Load       LoadResult
	Kills      Counts
	Min        Minimums
	Outcomes   Outcomes
	Violations []Violation
	// Durations of the phases.
	LoadTook, SettleTook, CheckTook time.Duration
}

// Failed reports whether the run failed: a violation, or too few kills.
func (r Report) Failed() bool {
	return len(r.Violations) > 0 || !r.Kills.Met(r.Min)
}

// Write prints the summary table, every violation and, last, the five
// CHAOS lines that scripts read.
func (r Report) Write(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nkind\tacknowledged\tconfirmed\trejected\tcancelled\tshipped\tpending\tmissing")
	for _, k := range Kinds {
		m := r.Outcomes.ByKind[k]
		total := 0
		for _, n := range m {
			total += n
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", k, total, m["confirmed"], m["rejected"], m["cancelled"], m["shipped"], m["pending"], m["missing"])
	}
	tw.Flush()
	fmt.Fprintf(w, "\nunacknowledged orders (no final answer, not judged): %d; retried writes: %d; rejected by a step timeout: %d\n",
		r.Load.Unacknowledged, r.Load.Retries, r.Outcomes.TimedOut)
	fmt.Fprintf(w, "load %s, settle %s, checks %s\n", r.LoadTook.Round(100*time.Millisecond), r.SettleTook.Round(100*time.Millisecond), r.CheckTook.Round(100*time.Millisecond))

	names := make([]string, 0, len(r.Kills.ByName))
	for n := range r.Kills.ByName {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %d", n, r.Kills.ByName[n])
	}
	fmt.Fprintf(w, "kills: %d (services %d, coordinators %d, NATS nodes %d): %s\n", r.Kills.Total, r.Kills.Service, r.Kills.Coordinator, r.Kills.NATS, strings.Join(parts, ", "))
	if !r.Kills.Met(r.Min) {
		fmt.Fprintf(w, "FAIL: the kills did not reach the minimums (%d in all, %d NATS, %d coordinator)\n", r.Min.Total, r.Min.NATS, r.Min.Coordinator)
	}
	if len(r.Violations) > 0 {
		fmt.Fprintf(w, "\nviolations:\n")
		for _, v := range r.Violations {
			fmt.Fprintf(w, "  %s\n", v)
		}
	} else {
		fmt.Fprintf(w, "\nevery invariant holds\n")
	}
	fmt.Fprintf(w, "CHAOS orders %d\n", len(r.Load.Intents))
	fmt.Fprintf(w, "CHAOS kills %d\n", r.Kills.Total)
	fmt.Fprintf(w, "CHAOS nats_kills %d\n", r.Kills.NATS)
	fmt.Fprintf(w, "CHAOS coordinator_kills %d\n", r.Kills.Coordinator)
	fmt.Fprintf(w, "CHAOS violations %d\n", len(r.Violations))
}
