package sim

import "context"

// Bug is the planted-defect switch, for the tests only.
type Bug = bug

// The defects a test may plant.
const (
	NoBug              = noBug
	BugAckBeforeAppend = bugAckBeforeAppend
)

// Options are the test-only switches of a run.
type Options struct {
	// Bug plants a defect.
	Bug Bug
}

// RunWith is Run with test-only switches.
func RunWith(ctx context.Context, cfg Config, o Options) (Result, error) {
	return run(ctx, cfg, options{bug: o.Bug})
}
