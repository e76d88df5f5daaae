// Package backoff holds the waits between attempts that every process of
// orderflow uses: exponential delays, with or without jitter, and a sleep
// that ends early when its context does. It imports only the standard
// library, so the toolkit packages (commands, projections) may use it too.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff: Min after the first failure, doubled
// after each further one, never more than Max.
type Policy struct {
	Min, Max time.Duration
}

// Delay is the wait after the attempt-th failure (1 for the first). A
// Max below Min is read as Min.
func (p Policy) Delay(attempt int) time.Duration {
	d, most := p.Min, max(p.Max, p.Min)
	for i := 1; i < attempt && d < most; i++ {
		d *= 2
	}
	return min(d, most)
}

// Jittered is a random wait between half of Delay(attempt) and all of it,
// so that callers who failed together do not try again together.
func (p Policy) Jittered(attempt int) time.Duration {
	d := p.Delay(attempt)
	return d/2 + rand.N(d/2+1)
}

// Sleep waits for d, or until ctx is done, whichever comes first; it
// returns ctx.Err() in the second case. A d of zero or less returns at
// once with ctx.Err().
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
