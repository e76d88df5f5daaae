package gateway

import (
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestLimiters(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l := newLimiters(2, 3) // 2/s, burst 3

	for i := range 3 {
		if d := l.take("a", now); d != 0 {
			t.Fatalf("take %d within the burst: wait %s", i+1, d)
		}
	}
	if d := l.take("a", now); d != 500*time.Millisecond {
		t.Errorf("take past the burst: wait %s, want 500ms (one token at 2/s)", d)
	}
	// A refused take spends nothing: the token is there after the wait.
	if d := l.take("a", now.Add(500*time.Millisecond)); d != 0 {
		t.Errorf("take after the wait: wait %s, want 0", d)
	}
	if d := l.take("b", now); d != 0 {
		t.Errorf("another key: wait %s, want its own full bucket", d)
	}

	// wait looks without spending; spend spends while there is a token.
	if d := l.wait("c", now); d != 0 {
		t.Errorf("wait for an unknown key: %s, want 0", d)
	}
	for range 5 {
		l.spend("c", now)
	}
	if d := l.wait("c", now); d != 500*time.Millisecond {
		t.Errorf("wait after spending the burst: %s, want 500ms", d)
	}

	// Buckets idle longer than a refill (at least a minute) are dropped.
	l.prune(now.Add(30 * time.Second))
	if n := l.len(); n != 3 {
		t.Errorf("%d buckets after pruning nothing idle, want 3", n)
	}
	l.prune(now.Add(2 * time.Minute))
	if n := l.len(); n != 0 {
		t.Errorf("%d buckets after pruning the idle ones, want 0", n)
	}

	off := newLimiters(rate.Inf, 0)
	for range 1000 {
		if d := off.take("a", now); d != 0 {
			t.Fatalf("an infinite rate refused: wait %s", d)
		}
	}
	if n := off.len(); n != 0 {
		t.Errorf("an infinite rate keeps %d buckets, want none", n)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want int
	}{
		{-time.Second, 1}, {0, 1}, {time.Millisecond, 1}, {time.Second, 1}, {1001 * time.Millisecond, 2}, {time.Hour, 3600},
	} {
		if got := retryAfterSeconds(tt.d); got != tt.want {
			t.Errorf("retryAfterSeconds(%s) = %d, want %d", tt.d, got, tt.want)
		}
	}
}
