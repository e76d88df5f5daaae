package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	p := Policy{Min: 50 * time.Millisecond, Max: time.Second}
	for _, c := range []struct {
		attempt int
		want    time.Duration
	}{
		{0, 50 * time.Millisecond}, {1, 50 * time.Millisecond}, {2, 100 * time.Millisecond},
		{3, 200 * time.Millisecond}, {5, 800 * time.Millisecond}, {6, time.Second}, {1000, time.Second},
	} {
		if got := p.Delay(c.attempt); got != c.want {
			t.Errorf("Delay(%d) = %v, want %v", c.attempt, got, c.want)
		}
	}
	if got := (Policy{Min: time.Second, Max: time.Millisecond}).Delay(3); got != time.Second {
		t.Errorf("Max below Min: Delay(3) = %v, want Min", got)
	}
}

func TestJitteredStaysWithinHalfToAll(t *testing.T) {
	p := Policy{Min: time.Millisecond, Max: 100 * time.Millisecond}
	for attempt := 1; attempt < 12; attempt++ {
		d := p.Delay(attempt)
		seen := map[time.Duration]bool{}
		for range 200 {
			j := p.Jittered(attempt)
			if j < d/2 || j > d {
				t.Fatalf("Jittered(%d) = %v, outside [%v, %v]", attempt, j, d/2, d)
			}
			seen[j] = true
		}
		if len(seen) < 2 {
			t.Errorf("Jittered(%d) gave one value in 200 draws: no jitter", attempt)
		}
	}
}

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Sleep on a live context: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep on a cancelled context = %v, want context.Canceled", err)
	}
	if time.Since(start) > time.Minute {
		t.Error("Sleep on a cancelled context waited")
	}
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep(0) on a cancelled context = %v", err)
	}
	if err := Sleep(context.Background(), -time.Second); err != nil {
		t.Errorf("Sleep(-1s) = %v", err)
	}
}
