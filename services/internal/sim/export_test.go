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
	// OrdersOutages lets the orders service stay down long enough for
	// confirm_order to time out (off in Run; see docs/adr/0140).
	OrdersOutages bool
}

// RunWith is Run with test-only switches.
func RunWith(ctx context.Context, cfg Config, o Options) (Result, error) {
	return run(ctx, cfg, options{bug: o.Bug, ordersOutages: o.OrdersOutages})
}
