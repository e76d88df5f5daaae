package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/orderflow/orderflow/services/gateway/auth"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// limiters holds one token bucket per key (a subject, a client address).
// A bucket left alone long enough to fill up again is the same as a new
// one, so prune forgets those: the map holds only recent callers.
type limiters struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time // of the last request; guarded by limiters.mu
}

func newLimiters(limit rate.Limit, burst int) *limiters {
	return &limiters{limit: limit, burst: burst, buckets: make(map[string]*bucket)}
}

// get returns key's bucket, creating a full one for a new key.
func (l *limiters) get(key string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.last = now
	return b.lim
}

// take spends one token of key's bucket and returns 0, or, when the
// bucket is empty, spends nothing and returns how long until a token is
// there.
func (l *limiters) take(key string, now time.Time) time.Duration {
	if l.limit == rate.Inf {
		return 0
	}
	r := l.get(key, now).ReserveN(now, 1)
	if !r.OK() {
		// A burst of 0 never has a token.
		return time.Hour
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// wait returns how long until key's bucket has a token, without spending
// one (0 for a key not seen lately).
func (l *limiters) wait(key string, now time.Time) time.Duration {
	if l.limit == rate.Inf {
		return 0
	}
	l.mu.Lock()
	b, ok := l.buckets[key]
	l.mu.Unlock()
	if !ok {
		return 0
	}
	tokens := b.lim.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	if l.limit <= 0 {
		return time.Hour
	}
	return time.Duration((1 - tokens) / float64(l.limit) * float64(time.Second))
}

// spend takes a token from key's bucket if it has one.
func (l *limiters) spend(key string, now time.Time) {
	if l.limit != rate.Inf {
		l.get(key, now).AllowN(now, 1)
	}
}

// prune forgets the buckets idle for longer than a refill takes.
func (l *limiters) prune(now time.Time) {
	refill := time.Minute
	if l.limit > 0 && l.limit != rate.Inf {
		refill = max(refill, time.Duration(float64(l.burst)/float64(l.limit)*float64(time.Second)))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, b := range l.buckets {
		if now.Sub(b.last) > refill {
			delete(l.buckets, k)
		}
	}
}

// len is the number of buckets held.
func (l *limiters) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// pruneLimiters prunes both kinds of bucket every minute until ctx ends.
func (g *Gateway) pruneLimiters(ctx context.Context) {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			g.subjects.prune(now)
			g.addresses.prune(now)
		}
	}
}

// authSeen is set by limitSubject, which only an authenticated request
// reaches; limitAddress reads it when the request is done.
type authSeen struct{ ok atomic.Bool }

type authSeenKey struct{}

// limitAddress limits the requests that do not authenticate, per client
// address. An address whose budget is spent is refused before its token
// is even looked at; each request that then fails to authenticate spends
// from the budget. Authenticated requests spend nothing here (their
// subject's budget applies), so a client that holds a valid token is
// refused only while its address keeps sending requests that fail
// (ADR 0124).
func (g *Gateway) limitAddress(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := clientAddress(r)
		if d := g.addresses.wait(addr, time.Now()); d > 0 {
			g.tooMany(w, "address", d, "too many requests without a valid token from this address")
			return
		}
		seen := &authSeen{}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), authSeenKey{}, seen)))
		if !seen.ok.Load() {
			g.addresses.spend(addr, time.Now())
		}
	})
}

// limitSubject limits the requests of each authenticated subject.
func (g *Gateway) limitSubject(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := auth.FromContext(r.Context())
		if !ok {
			next.ServeHTTP(w, r) // authorize refuses it
			return
		}
		if seen, ok := r.Context().Value(authSeenKey{}).(*authSeen); ok {
			seen.ok.Store(true)
		}
		if d := g.subjects.take(p.Subject, time.Now()); d > 0 {
			g.tooMany(w, "subject", d, "too many requests for this token's subject")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// tooMany answers 429 with the wait in Retry-After.
func (g *Gateway) tooMany(w http.ResponseWriter, limit string, wait time.Duration, detail string) {
	g.limited.Inc(limit)
	p := httpx.NewProblem(http.StatusTooManyRequests, httpx.SlugRateLimited, detail+"; retry after Retry-After seconds")
	p.RetryAfter = retryAfterSeconds(wait)
	httpx.WriteProblem(w, p)
}

// limitBody reads the request body, MaxBodyBytes at most, before anything
// is forwarded: a larger one is 413 whether it announced its length or
// streamed it, and nothing of it reaches a service. The body is kept for
// the forwarding (and its retries) and left readable in r.Body.
func (g *Gateway) limitBody(next http.Handler) http.Handler {
	limit := g.cfg.MaxBodyBytes
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			g.tooLarge(w)
			return
		}
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		switch {
		case int64(len(body)) > limit:
			g.tooLarge(w)
			return
		case err != nil:
			httpx.WriteProblem(w, httpx.BadRequest(httpx.SlugBadRequest, "the request body could not be read"))
			return
		}
		r = r.WithContext(withBody(r.Context(), body))
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		next.ServeHTTP(w, r)
	})
}

func (g *Gateway) tooLarge(w http.ResponseWriter) {
	// The rest of the body is not read: the connection closes after
	// the answer.
	w.Header().Set("Connection", "close")
	httpx.WriteProblem(w, httpx.NewProblem(http.StatusRequestEntityTooLarge, httpx.SlugPayloadTooLarge,
		fmt.Sprintf("the request body exceeds %d bytes", g.cfg.MaxBodyBytes)))
}
