// Package gateway is orderflow's single HTTP entry point, run by
// `orderflow serve gateway`. Every /api and /admin request is
// authenticated with a JWT bearer token (package auth), checked against
// the roles and ownership rules of the API contract, rate limited per
// subject (and, before authentication, per client address), its body
// bounded, and then forwarded to the service that owns its path:
//
//	/api/orders...      orders
//	/api/inventory...   inventory
//	/api/shipments...   shipping
//	/api/sagas...       sagas
//	/admin/projections  every service, the items merged
//	/admin/projections/{name}/replay  the service that has the projection
//	/admin/events       every service, the events stitched in causal order
//	/admin/updates      server-sent events of the console (updates.go)
//	/admin/sagas/..., /admin/saga-definitions  sagas
//
// The gateway itself answers /healthz, /readyz (ready when every upstream
// is), /metrics and /openapi.yaml.
//
// Each upstream service has instances (base URLs) found through a
// Resolver, taken in turn; an instance that fails to connect is skipped
// for a while. Each has one circuit breaker: after consecutive failures
// (connection errors, timeouts, 5xx) it opens and the gateway answers 503
// with Retry-After without calling the service, until a probe succeeds.
// Only GET and HEAD are retried, with backoff, on connection errors and
// 502/503/504. Answers pass through untouched (ETag, 304, Cache-Control,
// Location, problems), and the gateway's own refusals are problems of the
// contract (401, 403, 413, 429, 503, 504). docs/adr/0123-0126 record why.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"

	"github.com/orderflow/orderflow/internal/backoff"
	"github.com/orderflow/orderflow/services/api"
	"github.com/orderflow/orderflow/services/gateway/auth"
	"github.com/orderflow/orderflow/services/gateway/console"
	"github.com/orderflow/orderflow/services/internal/discovery"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/telemetry"
)

// Name is the gateway's service name: in its logs, spans and NATS
// registration.
const Name = "gateway"

// DefaultPort is the port the gateway listens on unless told otherwise;
// the services follow it (orders 8081, ..., sagas 8084).
const DefaultPort = 8080

// The upstream services, by the names a Resolver is asked for.
const (
	Orders    = "orders"
	Inventory = "inventory"
	Shipping  = "shipping"
	Sagas     = "sagas"
)

// Services lists the upstream services, in the order the merged
// /admin/projections lists their items.
func Services() []string { return []string{Orders, Inventory, Shipping, Sagas} }

// routes maps the API's path prefixes to the services that own them.
var routes = []struct{ prefix, service string }{
	{"/api/orders", Orders},
	{"/api/inventory", Inventory},
	{"/api/shipments", Shipping},
	{"/api/sagas", Sagas},
}

// DefaultUpstreamTimeout is Config.UpstreamTimeout's default. A service's
// own request timeout (serve.DefaultRequestTimeout) is shorter, so that a
// service stuck on its database answers its own 503 before this runs out.
const DefaultUpstreamTimeout = 10 * time.Second

// Config configures a gateway. Upstreams (or a Resolver) and one way to
// verify tokens (JWTSecret, JWKSURL or Verifier) are required; the rest
// defaults.
type Config struct {
	// Addr is the listen address of Run; default ":8080".
	Addr string

	// Upstreams holds, per service (Orders, ...), the base URLs of its
	// instances, e.g. {"orders": {"http://10.0.0.5:8081"}}. A service
	// listed here is found here, whatever Resolver says.
	Upstreams map[string][]string
	// Resolver finds the instances of the services Upstreams does not
	// list (NATS micro discovery, say). Without it Upstreams must list
	// every service, unless Run is given NATSURL.
	Resolver Resolver

	// NATSURL, for Run: the gateway registers there as the NATS micro
	// service orderflow-gateway and, for every service Upstreams does not
	// list, finds its instances by discovery (services/internal/discovery)
	// when Resolver is nil.
	NATSURL string
	// TLS, for Run: serve HTTPS with this certificate.
	TLS httpx.TLSFiles
	// AdvertiseURL, for Run: the base URL announced in the micro
	// registration; default the listener's address on this machine.
	AdvertiseURL string

	// JWTSecret verifies HS256 tokens (development; see auth.DevSecret).
	JWTSecret []byte
	// JWKSURL verifies RS256/ES256 tokens with the keys the URL
	// publishes, refreshed while the gateway runs (production).
	JWKSURL string
	// Verifier, when set, verifies tokens instead; exactly one of
	// JWTSecret, JWKSURL and Verifier is given.
	Verifier auth.Verifier

	// RateLimit is the sustained rate, in requests per second, one
	// subject may send; default 50. rate.Inf turns the limit off.
	RateLimit rate.Limit
	// RateBurst is how many requests a subject may send at once above
	// the rate; default 100.
	RateBurst int
	// AddressRateLimit and AddressRateBurst limit the requests that do
	// not authenticate, per client address; default 10/s, burst 20.
	AddressRateLimit rate.Limit
	AddressRateBurst int

	// MaxBodyBytes bounds a request body; default 1 MiB (the contract's
	// limit, which the services enforce as well).
	MaxBodyBytes int64
	// UpstreamTimeout bounds the whole exchange with the upstream for one
	// request, retries included; default 10s.
	UpstreamTimeout time.Duration
	// Retries is how many times a GET or HEAD is tried again after a
	// connection error or a 502/503/504; default 2, negative for none.
	Retries int
	// RetryBackoff spaces the retries (jittered); default 50ms doubling
	// to 500ms.
	RetryBackoff backoff.Policy
	// BreakerFailures is the number of consecutive failures that opens an
	// upstream's circuit breaker; default 5.
	BreakerFailures uint32
	// BreakerOpen is how long an open breaker refuses requests before it
	// lets a probe through (half-open); default 5s.
	BreakerOpen time.Duration
	// BreakerProbes is how many requests a half-open breaker lets
	// through, all of which must succeed to close it; default 1.
	BreakerProbes uint32
	// InstanceCooldown is how long an instance that failed to connect is
	// skipped while the service has others; default 5s.
	InstanceCooldown time.Duration
	// Transport carries the requests to the upstreams; default
	// NewTransport(). Wrap that one to trace or instrument them.
	Transport http.RoundTripper

	// ReadyTimeout bounds GET /readyz's probes of the upstreams; default 2s.
	ReadyTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown of Serve; default 10s.
	ShutdownTimeout time.Duration
	// Logger defaults to slog.Default(); the gateway adds
	// service=gateway to every line.
	Logger *slog.Logger
}

// Validate reports a config New cannot use.
func (c Config) Validate() error {
	var errs []error
	for _, svc := range slices.Sorted(maps.Keys(c.Upstreams)) {
		if !slices.Contains(Services(), svc) {
			errs = append(errs, fmt.Errorf("upstream %q: want one of %v", svc, Services()))
			continue
		}
		if len(c.Upstreams[svc]) == 0 {
			errs = append(errs, fmt.Errorf("upstream %s: no base URL", svc))
		}
		for _, u := range c.Upstreams[svc] {
			if err := checkBaseURL(u); err != nil {
				errs = append(errs, fmt.Errorf("upstream %s: %w", svc, err))
			}
		}
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Resolver == nil && c.NATSURL == "" {
		var missing []string
		for _, svc := range Services() {
			if len(c.Upstreams[svc]) == 0 {
				missing = append(missing, svc)
			}
		}
		if len(missing) > 0 {
			errs = append(errs, fmt.Errorf("no base URL for %s and no resolver to find them", strings.Join(missing, ", ")))
		}
	}
	verifiers := 0
	for _, set := range []bool{len(c.JWTSecret) > 0, c.JWKSURL != "", c.Verifier != nil} {
		if set {
			verifiers++
		}
	}
	if verifiers != 1 {
		errs = append(errs, errors.New("give exactly one of a JWT secret, a JWKS URL or a verifier"))
	}
	if c.JWKSURL != "" {
		if u, err := url.Parse(c.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, errors.New("JWKS URL: want an http or https URL"))
		}
	}
	if c.RateLimit < 0 || c.AddressRateLimit < 0 || c.RateBurst < 0 || c.AddressRateBurst < 0 {
		errs = append(errs, errors.New("rate limits and bursts must not be negative"))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, errors.New("the body limit must not be negative"))
	}
	for _, d := range []time.Duration{c.UpstreamTimeout, c.BreakerOpen, c.InstanceCooldown, c.ReadyTimeout, c.ShutdownTimeout, c.RetryBackoff.Min, c.RetryBackoff.Max} {
		if d < 0 {
			errs = append(errs, errors.New("durations must not be negative"))
			break
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("gateway config: %w", err)
	}
	return nil
}

// checkBaseURL accepts an absolute http(s) URL without query or fragment.
func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("base URL %q: want http(s)://host[:port][/path]", s)
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = fmt.Sprintf(":%d", DefaultPort)
	}
	if c.RateLimit == 0 {
		c.RateLimit = 50
	}
	if c.RateBurst == 0 {
		c.RateBurst = 100
	}
	if c.AddressRateLimit == 0 {
		c.AddressRateLimit = 10
	}
	if c.AddressRateBurst == 0 {
		c.AddressRateBurst = 20
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = httpx.MaxBodyBytes
	}
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = DefaultUpstreamTimeout
	}
	switch {
	case c.Retries == 0:
		c.Retries = 2
	case c.Retries < 0:
		c.Retries = 0
	}
	if c.RetryBackoff.Min == 0 {
		c.RetryBackoff.Min = 50 * time.Millisecond
	}
	if c.RetryBackoff.Max == 0 {
		c.RetryBackoff.Max = 500 * time.Millisecond
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = 5
	}
	if c.BreakerOpen == 0 {
		c.BreakerOpen = 5 * time.Second
	}
	if c.BreakerProbes == 0 {
		c.BreakerProbes = 1
	}
	if c.InstanceCooldown == 0 {
		c.InstanceCooldown = 5 * time.Second
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 2 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.Transport == nil {
		c.Transport = NewTransport()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Logger = c.Logger.With("service", Name)
}

// NewTransport returns the transport the gateway uses by default: no
// proxy from the environment (the upstreams are the system's own), a
// short connect timeout (a dead instance fails fast and is skipped),
// many idle connections per instance (every request reuses one) and no
// transparent decompression (answers pass through as the service sent
// them).
func NewTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// Gateway is a configured gateway: its handler, its upstreams and the
// background work they need.
type Gateway struct {
	cfg       Config
	log       *slog.Logger
	verifier  auth.Verifier
	upstreams map[string]*upstream
	owners    owners
	subjects  *limiters
	addresses *limiters
	metrics   *httpx.Metrics
	limited   *httpx.CounterVec
	handler   http.Handler
	streams   *streams // of GET /admin/updates

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds a gateway: its token verifier (a JWKS verifier fetches the
// keys with ctx and refreshes them until Close), its upstreams and its
// handler. Its background work runs until Close.
func New(ctx context.Context, cfg Config) (_ *Gateway, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g := &Gateway{cfg: cfg, log: cfg.Logger, cancel: cancel, metrics: httpx.NewMetrics(), streams: newStreams()}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()

	switch {
	case cfg.Verifier != nil:
		g.verifier = cfg.Verifier
	case len(cfg.JWTSecret) > 0:
		if g.verifier, err = auth.NewHS256(cfg.JWTSecret); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	default:
		// The verifier's key refresh lives as long as the gateway, not
		// as the caller's context.
		if g.verifier, err = auth.NewJWKS(bg, cfg.JWKSURL); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}

	var resolver Resolver = Static(cfg.Upstreams)
	if cfg.Resolver != nil {
		resolver = FirstOf(Static(cfg.Upstreams), cfg.Resolver)
	}
	durations := g.metrics.Histogram("orderflow_gateway_upstream_request_duration_seconds",
		"Time from sending a request to an upstream service to its answer's headers, by upstream and outcome (the status, or error).",
		httpx.HTTPDurationBuckets, "upstream", "outcome")
	g.upstreams = make(map[string]*upstream, len(Services()))
	for _, svc := range Services() {
		g.upstreams[svc] = newUpstream(svc, resolver, cfg, durations)
	}
	g.owners = owners{g: g}
	g.subjects = newLimiters(cfg.RateLimit, cfg.RateBurst)
	g.addresses = newLimiters(cfg.AddressRateLimit, cfg.AddressRateBurst)
	g.registerMetrics()
	g.handler = g.routes()

	g.wg.Go(func() { g.pruneLimiters(bg) })
	g.log.Info("gateway ready")
	return g, nil
}

// registerMetrics adds the gateway's own figures to its registry.
func (g *Gateway) registerMetrics() {
	g.metrics.GaugeFunc("orderflow_gateway_update_streams", "GET /admin/updates streams open (the operator console's live updates).",
		func() float64 { return float64(g.streams.open.Load()) })
	g.limited = g.metrics.Counter("orderflow_gateway_rate_limited_total",
		"Requests refused with 429, by the limit that refused them: subject (an authenticated caller) or address (requests that did not authenticate).",
		"limit")
	g.metrics.GaugeVecFunc("orderflow_gateway_circuit_breaker_state",
		"State of each upstream's circuit breaker: 0 closed, 1 half-open, 2 open.",
		[]string{"upstream"}, func() []httpx.Sample {
			out := make([]httpx.Sample, 0, len(g.upstreams))
			for _, svc := range Services() {
				out = append(out, httpx.Sample{Labels: []string{svc}, Value: float64(g.upstreams[svc].breaker.State())})
			}
			return out
		})
}

// Handler is the gateway's HTTP handler.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Metrics is the gateway's metrics registry, served at /metrics.
func (g *Gateway) Metrics() *httpx.Metrics { return g.metrics }

// routes builds the handler: the shared middleware and operations
// endpoints, then, for /api and /admin, the limits, authentication and
// authorization in front of the forwarding.
func (g *Gateway) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(httpx.RequestID, httpx.Trace(Name, "/healthz", "/readyz", "/metrics", "/openapi.yaml"), httpx.AccessLog(g.log), g.metrics.Middleware, httpx.Recover)
	r.NotFound(httpx.NotFound)
	r.MethodNotAllowed(httpx.MethodNotAllowed)

	r.Get("/healthz", httpx.Healthz)
	r.Get("/readyz", g.readyz)
	r.Method(http.MethodGet, "/metrics", g.metrics)
	r.Get("/openapi.yaml", serveOpenAPI)
	r.Mount(console.Prefix, console.Handler()) // the page asks for the token itself

	r.Group(func(r chi.Router) {
		// The address limit comes first so that a client without a
		// valid token costs no more than a map lookup once it is over
		// its budget; the body is read only for a caller who may send.
		r.Use(g.limitAddress, auth.Middleware(g.verifier), g.limitSubject, g.limitBody, auth.Enforce(g.owners))
		for _, rt := range routes {
			h := g.proxy(rt.service)
			r.Handle(rt.prefix, h)
			r.Handle(rt.prefix+"/*", h)
		}
		r.Get("/admin/projections", g.listProjections)
		r.Post("/admin/projections/{name}/replay", g.replayProjection)
		r.Get("/admin/events", g.listEvents)
		r.Get("/admin/updates", g.updates)
		r.Handle("/admin/sagas/*", g.proxy(Sagas))
		r.Handle("/admin/saga-definitions", g.proxy(Sagas))
	})
	return r
}

// openAPIETag names the embedded document's version for conditional GETs.
var openAPIETag = func() string {
	h := fnv.New64a() // enough to tell two documents apart
	h.Write(api.OpenAPI())
	return fmt.Sprintf(`"%016x"`, h.Sum64())
}()

// serveOpenAPI answers the API contract, the document the tests validate
// every answer against.
func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", api.ContentType)
	w.Header().Set("ETag", openAPIETag)
	w.Header().Set("Cache-Control", "no-cache")
	if httpx.NoneMatch(r, openAPIETag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	// A plain answer: no ranges, which the contract does not describe.
	_, _ = w.Write(api.OpenAPI())
}

// Close stops the background work and the upstream connections.
func (g *Gateway) Close() {
	if g.streams != nil {
		g.streams.end()
	}
	if g.cancel != nil {
		g.cancel()
	}
	g.wg.Wait()
	if t, ok := g.cfg.Transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// Run serves a gateway built from cfg on cfg.Addr until ctx ends: with
// traces exported as telemetry.Start says, over TLS when cfg.TLS is set,
// and, with cfg.NATSURL, registered on NATS and finding the services
// Upstreams does not list there.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("service", Name)
	stopTelemetry, err := telemetry.Start(ctx, Name, telemetry.WithLogger(logger))
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stopTelemetry(sctx); err != nil {
			logger.Warn("telemetry: spans lost at shutdown", "error", err)
		}
	}()

	var nc *nats.Conn
	if cfg.NATSURL != "" {
		if nc, _, err = natsbus.Connect(ctx, cfg.NATSURL, "orderflow-"+Name); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		defer nc.Close()
		if cfg.Resolver == nil {
			// Found by discovery: the services no static URL names.
			cfg.Resolver = discovery.Watch(ctx, nc, Services(), 0)
		}
	}
	g, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	defer g.Close()
	ln, err := httpx.Listen(g.cfg.Addr, cfg.TLS)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if nc != nil {
		url := cfg.AdvertiseURL
		if url == "" {
			url = discovery.LocalURL(cfg.TLS.Enabled(), ln.Addr())
		}
		stop, err := discovery.Register(nc, discovery.Info{Service: Name, HTTPURL: url})
		if err != nil {
			logger.Warn("cannot register on NATS for discovery", "error", err)
		} else {
			defer func() { _ = stop() }()
		}
	}
	return g.Serve(ctx, ln)
}

// Serve answers HTTP on ln until ctx ends, then stops accepting, lets the
// requests in progress finish (within ShutdownTimeout) and returns.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      g.cfg.UpstreamTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	srv.RegisterOnShutdown(g.streams.end)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	g.log.Info("listening", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("gateway: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("gateway: shutdown: %w", err)
	}
	g.log.Info("stopped")
	return nil
}

// retryAfterSeconds is d as a Retry-After value: whole seconds, rounded
// up, at least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
