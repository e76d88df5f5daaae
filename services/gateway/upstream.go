package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/orderflow/orderflow/internal/backoff"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// Resolver finds the instances of an upstream service: the base URLs
// ("http://10.0.0.5:8081") its HTTP API is served on. The gateway asks on
// every request, so an implementation answers from what it holds (a
// static list, the last round of a discovery) and never blocks; an empty
// answer means no instance is known now. The caller does not modify the
// slice.
type Resolver interface {
	Instances(service string) []string
}

// Static is a Resolver with a fixed list of base URLs per service.
type Static map[string][]string

// Instances returns the base URLs listed for service.
func (s Static) Instances(service string) []string { return s[service] }

// FirstOf is a Resolver that asks each of rs in turn and answers with the
// first non-empty list: static addresses first, say, then discovery.
func FirstOf(rs ...Resolver) Resolver { return firstOf(rs) }

type firstOf []Resolver

func (f firstOf) Instances(service string) []string {
	for _, r := range f {
		if urls := r.Instances(service); len(urls) > 0 {
			return urls
		}
	}
	return nil
}

var (
	// ErrNoInstance is the failure of a request to a service of which
	// the Resolver knows no instance.
	ErrNoInstance = errors.New("gateway: no instance of the service is known")
	// errServerError marks an upstream's 5xx answer for the circuit
	// breaker, which counts it as a failure; the answer itself is still
	// passed on.
	errServerError = errors.New("gateway: upstream answered 5xx")
)

// upstream is one service behind the gateway: its instances, taken in
// turn, and its circuit breaker.
type upstream struct {
	name      string
	resolver  Resolver
	transport http.RoundTripper
	timeout   time.Duration
	retries   int
	backoff   backoff.Policy
	cooldown  time.Duration
	openFor   time.Duration
	log       *slog.Logger
	durations *httpx.HistogramVec

	breaker  *gobreaker.CircuitBreaker[*http.Response]
	openedAt atomic.Int64 // unix nanoseconds of the breaker's last opening

	next    atomic.Uint64 // round-robin position
	mu      sync.Mutex
	failing map[string]time.Time // instance -> skipped until
}

func newUpstream(name string, resolver Resolver, cfg Config, durations *httpx.HistogramVec) *upstream {
	u := &upstream{
		name:      name,
		resolver:  resolver,
		transport: cfg.Transport,
		timeout:   cfg.UpstreamTimeout,
		retries:   cfg.Retries,
		backoff:   cfg.RetryBackoff,
		cooldown:  cfg.InstanceCooldown,
		openFor:   cfg.BreakerOpen,
		log:       cfg.Logger.With("upstream", name),
		durations: durations,
		failing:   make(map[string]time.Time),
	}
	failures := cfg.BreakerFailures
	u.breaker = gobreaker.NewCircuitBreaker[*http.Response](gobreaker.Settings{
		Name:        name,
		MaxRequests: cfg.BreakerProbes,
		Timeout:     cfg.BreakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		// Runs under the breaker's lock: record and log only.
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				u.openedAt.Store(time.Now().UnixNano())
			}
			level := slog.LevelInfo
			if to == gobreaker.StateOpen {
				level = slog.LevelWarn
			}
			u.log.Log(context.Background(), level, "circuit breaker state changed", "from", from.String(), "to", to.String())
		},
		// A caller who hung up says nothing about the upstream.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
	})
	return u
}

// call is one request to send to an upstream, the same for every attempt.
type call struct {
	method string
	// target is the path and query, escaped: "/api/orders?status=pending".
	target string
	header http.Header
	body   []byte
}

// idempotent reports whether the call may be sent again after a failure:
// only reads, whose repetition changes nothing.
func (c call) idempotent() bool {
	return c.method == http.MethodGet || c.method == http.MethodHead
}

// do sends c to one of the service's instances and returns the answer,
// whose body must be closed. A GET or HEAD that fails to connect, or is
// answered 502/503/504, is tried again (on the next instance) after a
// backoff, u.retries times at most, all within u.timeout; the last
// answer is returned whatever its status. The error is the breaker's
// (gobreaker.ErrOpenState, gobreaker.ErrTooManyRequests), ErrNoInstance,
// the context's or the transport's.
func (u *upstream) do(ctx context.Context, c call) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	attempts := 1
	if c.idempotent() {
		attempts += u.retries
	}
	for attempt := 1; ; attempt++ {
		res, err := u.attempt(ctx, c)
		last := attempt >= attempts
		switch {
		case err == nil && (last || !retryStatus(res.StatusCode)):
			// The deadline stays on while the caller reads the body.
			res.Body = &cancelOnClose{ReadCloser: res.Body, cancel: cancel}
			return res, nil
		case err != nil && (last || !retryError(ctx, err)):
			cancel()
			return nil, err
		}
		if res != nil {
			drain(res.Body)
		}
		if backoff.Sleep(ctx, u.backoff.Jittered(attempt)) != nil {
			cancel()
			if err == nil {
				err = fmt.Errorf("%s answered %d", u.name, res.StatusCode)
			}
			return nil, errors.Join(ctx.Err(), err)
		}
	}
}

// retryStatus reports whether an answer says that the same request may
// succeed shortly, on this instance or another.
func retryStatus(code int) bool {
	return code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

// retryError reports whether a failed attempt may be tried again: a
// connection that failed, not an open breaker (which the next attempt
// would meet too) or a deadline that passed.
func retryError(ctx context.Context, err error) bool {
	switch {
	case ctx.Err() != nil,
		errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests),
		errors.Is(err, ErrNoInstance):
		return false
	}
	return true
}

// attempt sends c once, through the breaker, to the next instance.
func (u *upstream) attempt(ctx context.Context, c call) (*http.Response, error) {
	inst := u.pick()
	if inst == "" {
		return nil, fmt.Errorf("%w: %s", ErrNoInstance, u.name)
	}
	start := time.Now()
	res, err := u.breaker.Execute(func() (*http.Response, error) {
		var body io.Reader = http.NoBody
		if c.body != nil {
			body = bytes.NewReader(c.body)
		}
		req, err := http.NewRequestWithContext(ctx, c.method, strings.TrimSuffix(inst, "/")+c.target, body)
		if err != nil {
			return nil, err
		}
		req.Header = c.header
		res, err := u.transport.RoundTrip(req)
		if err != nil {
			if ctx.Err() != nil {
				// Name the cause whatever the transport made of it: a
				// caller who hung up (not counted) or the deadline.
				err = errors.Join(ctx.Err(), err)
			}
			return nil, err
		}
		if res.StatusCode >= 500 {
			return res, errServerError
		}
		return res, nil
	})
	outcome := "error"
	switch {
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		// Not sent: nothing to time.
		return nil, err
	case errors.Is(err, errServerError):
		outcome, err = strconv.Itoa(res.StatusCode), nil
	case err == nil:
		outcome = strconv.Itoa(res.StatusCode)
	case !errors.Is(err, context.Canceled):
		// The instance could not be reached, dropped the connection or
		// hung until the deadline; its siblings serve while it recovers.
		// (A client that hung up says nothing about it.)
		u.skip(inst)
	}
	u.durations.Observe(time.Since(start).Seconds(), u.name, outcome)
	return res, err
}

// pick returns the next instance in turn that is not being skipped after
// a failure; when all are, the next one all the same (the breaker then
// sees whether the service is back). It returns "" when none is known.
func (u *upstream) pick() string {
	insts := u.resolver.Instances(u.name)
	if len(insts) == 0 {
		return ""
	}
	n := u.next.Add(1)
	first := insts[n%uint64(len(insts))]
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.failing) == 0 {
		return first
	}
	now := time.Now()
	for i := range uint64(len(insts)) {
		inst := insts[(n+i)%uint64(len(insts))]
		if until, ok := u.failing[inst]; !ok || now.After(until) {
			delete(u.failing, inst)
			return inst
		}
	}
	return first
}

// skip takes inst out of the rotation for the cooldown.
func (u *upstream) skip(inst string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := time.Now()
	for k, until := range u.failing {
		// Instances that went away (discovery dropped them) leave no
		// entries behind.
		if now.After(until) {
			delete(u.failing, k)
		}
	}
	u.failing[inst] = now.Add(u.cooldown)
}

// retryAfter is how long, in whole seconds, the open breaker will still
// refuse requests.
func (u *upstream) retryAfter() int {
	left := u.openFor - time.Since(time.Unix(0, u.openedAt.Load()))
	return retryAfterSeconds(left)
}

// ready reports whether one of the service's instances answers GET
// /readyz with 200. It goes around the breaker: readiness is asked of
// the service itself.
func (u *upstream) ready(ctx context.Context) error {
	insts := u.resolver.Instances(u.name)
	if len(insts) == 0 {
		return fmt.Errorf("%w: %s", ErrNoInstance, u.name)
	}
	var errs []error
	for _, inst := range insts {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(inst, "/")+"/readyz", http.NoBody)
		if err != nil {
			return err
		}
		res, err := u.transport.RoundTrip(req)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		drain(res.Body)
		if res.StatusCode == http.StatusOK {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s answered %d", inst, res.StatusCode))
	}
	return errors.Join(errs...)
}

// SlugGatewayTimeout is the problem type of a request the upstream
// service did not answer within the gateway's timeout (504).
const SlugGatewayTimeout = "gateway-timeout"

// problem is the answer to a client whose request to u failed with err:
// 504 gateway-timeout when u did not answer in time, else 503
// unavailable, both with Retry-After and saying whether a command may
// have been applied. Only a request that was never sent (an open breaker,
// no instance) is known not to have been.
func (u *upstream) problem(method string, err error) *httpx.Problem {
	command := method != http.MethodGet && method != http.MethodHead
	var why string
	retryAfter := 1
	sent := true
	status, slug := http.StatusServiceUnavailable, httpx.SlugUnavailable
	switch {
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		why = "the " + u.name + " service is failing and is given time to recover"
		retryAfter, sent = u.retryAfter(), false
	case errors.Is(err, ErrNoInstance):
		why = "no instance of the " + u.name + " service is available"
		sent = false
	case errors.Is(err, context.DeadlineExceeded):
		why = fmt.Sprintf("the %s service did not answer within %s", u.name, u.timeout)
		status, slug = http.StatusGatewayTimeout, SlugGatewayTimeout
	default:
		why = "the " + u.name + " service could not be reached"
	}
	detail := why + "; retry shortly"
	switch {
	case command && sent:
		detail = why + ", so the command may or may not have been applied; " +
			"retrying it with the same Idempotency-Key is safe and applies it at most once"
	case command:
		detail = why + "; the command was not sent, retry it shortly"
	}
	p := httpx.NewProblem(status, slug, detail)
	p.RetryAfter = retryAfter
	return p
}

// cancelOnClose ends a request's context when its answer's body is
// closed, so that the deadline covers reading the body too.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// drain reads what is left of an answer we do not pass on (a little, so
// that the connection can be reused) and closes it.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}
