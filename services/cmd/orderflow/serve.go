package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/orderflow/orderflow/services/gateway"
	"github.com/orderflow/orderflow/services/gateway/auth"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/serve"
)

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", os.Getenv("ADDR"), "listen address (env ADDR; default the service's port: "+defaultPorts()+")")
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "the service's PostgreSQL URL, as the role it runs as (env DATABASE_URL)")
	ownerURL := fs.String("owner-database-url", os.Getenv("OWNER_DATABASE_URL"),
		"the same database as the owner of its tables, used only for migrations and read-model rebuilds (env OWNER_DATABASE_URL; default: the database URL)")
	eventStore := fs.String("event-store", os.Getenv("EVENT_STORE_URL"),
		"the service's event store (env EVENT_STORE_URL): empty for its own database (the default), postgres://... for a PostgreSQL database of its own, kurrentdb://... or esdb://... for KurrentDB")
	natsURL := fs.String("nats-url", os.Getenv("NATS_URL"),
		"NATS URL (env NATS_URL); the process registers there as a NATS micro service, and the gateway finds there the services it is given no URL for")
	natsReplicas := fs.Int("nats-replicas", envInt("NATS_REPLICAS", natsbus.DefaultReplicas),
		fmt.Sprintf("replicas of the JetStream streams the service creates or updates, 1..%d; more than one needs a JetStream cluster of that many servers, and every process must give the same number (env NATS_REPLICAS)", natsbus.MaxReplicas))
	tlsCert := fs.String("tls-cert", os.Getenv("TLS_CERT"), "PEM certificate chain: serve HTTPS (env TLS_CERT; needs --tls-key)")
	tlsKey := fs.String("tls-key", os.Getenv("TLS_KEY"), "PEM private key of --tls-cert (env TLS_KEY)")
	advertise := fs.String("advertise-url", os.Getenv("ADVERTISE_URL"),
		"base URL other processes reach this one at, announced on NATS (env ADVERTISE_URL; default the listen address on 127.0.0.1)")
	logFormat := fs.String("log-format", envOr("LOG_FORMAT", "text"), "log format on stderr: text or json (env LOG_FORMAT)")
	gw := gatewayFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: orderflow serve SERVICE [flags]\n\nRuns one service; SERVICE is one of %s.\n\nFlags:\n", strings.Join(serveNames(), ", "))
		fs.PrintDefaults()
	}

	// The service may come before or after the flags.
	var service string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		service, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if service == "" && len(rest) > 0 {
		service, rest = rest[0], rest[1:]
	}
	switch {
	case service == "":
		fs.Usage()
		return usagef("serve: no service given")
	case !slices.Contains(serveNames(), service):
		fs.Usage()
		return usagef("serve: unknown service %q", service)
	case len(rest) > 0:
		fs.Usage()
		return usagef("serve: unexpected arguments %q", rest)
	}
	if err := checkFlagsApply(fs, service); err != nil {
		fs.Usage()
		return err
	}
	if err := checkReplicas(*natsReplicas); err != nil {
		fs.Usage()
		return usagef("serve %s: %v", service, err)
	}
	logger, err := newLogger(*logFormat)
	if err != nil {
		return err
	}
	tuneGC()
	tls := httpx.TLSFiles{Cert: *tlsCert, Key: *tlsKey}
	if err := tls.Validate(); err != nil {
		return usagef("serve %s: --tls-cert and --tls-key: %v", service, err)
	}
	if service == gatewayName {
		cfg, err := gw.config(*addr, *natsURL, logger)
		if err != nil {
			return err
		}
		cfg.TLS, cfg.AdvertiseURL = tls, *advertise
		return gateway.Run(ctx, cfg)
	}
	return serve.Run(ctx, serve.Config{
		Service:          service,
		Addr:             *addr,
		DatabaseURL:      *dbURL,
		OwnerDatabaseURL: *ownerURL,
		EventStoreURL:    *eventStore,
		NATSURL:          *natsURL,
		NATSReplicas:     *natsReplicas,
		TLS:              tls,
		AdvertiseURL:     *advertise,
		Logger:           logger,
	})
}

// gatewayName is the gateway's name for serve; it is no module of serve's
// registry (it has no database, events or read models of its own).
const gatewayName = "gateway"

// gatewayOnly and servicesOnly name the flags that apply to the gateway
// alone and to the services alone; giving one to the other is a usage
// error rather than a setting silently ignored.
var (
	gatewayOnly = []string{"orders-url", "inventory-url", "shipping-url", "sagas-url",
		"jwt-secret", "jwt-secret-file", "jwks-url", "rate-limit", "rate-burst", "upstream-timeout"}
	servicesOnly = []string{"database-url", "owner-database-url", "event-store", "nats-replicas"}
)

// checkReplicas refuses a stream replica count JetStream would not take,
// and a NATS_REPLICAS that is no number, which envInt would otherwise
// quietly replace with the default.
func checkReplicas(n int) error {
	if v := os.Getenv("NATS_REPLICAS"); v != "" {
		if _, err := strconv.Atoi(v); err != nil {
			return fmt.Errorf("NATS_REPLICAS=%q is no number", v)
		}
	}
	if n < 1 || n > natsbus.MaxReplicas {
		return fmt.Errorf("--nats-replicas %d: want 1..%d", n, natsbus.MaxReplicas)
	}
	return nil
}

// checkFlagsApply refuses flags given on the command line that service
// does not use.
func checkFlagsApply(fs *flag.FlagSet, service string) error {
	misplaced := gatewayOnly
	if service == gatewayName {
		misplaced = servicesOnly
	}
	var bad []string
	fs.Visit(func(f *flag.Flag) {
		if slices.Contains(misplaced, f.Name) {
			bad = append(bad, "--"+f.Name)
		}
	})
	if len(bad) > 0 {
		return usagef("serve %s: %s does not apply to it", service, strings.Join(bad, ", "))
	}
	return nil
}

// gatewayOptions are the gateway's flags.
type gatewayOptions struct {
	upstreams       map[string]*string
	secret          *string
	secretFile      *string
	jwksURL         *string
	rateLimit       *float64
	rateBurst       *int
	upstreamTimeout *time.Duration
}

// gatewayFlags defines the gateway's flags on fs, each defaulting to its
// environment variable.
func gatewayFlags(fs *flag.FlagSet) *gatewayOptions {
	o := &gatewayOptions{upstreams: make(map[string]*string)}
	for _, svc := range gateway.Services() {
		env := strings.ToUpper(svc) + "_URL"
		o.upstreams[svc] = fs.String(svc+"-url", os.Getenv(env),
			fmt.Sprintf("gateway: base URL of the %s service, or several separated by commas (env %s)", svc, env))
	}
	o.secret = fs.String("jwt-secret", os.Getenv(auth.SecretEnv),
		"gateway: HS256 secret of the tokens, at least 32 bytes; prefer the environment, which ps does not show (env "+auth.SecretEnv+")")
	o.secretFile = fs.String("jwt-secret-file", os.Getenv("ORDERFLOW_JWT_SECRET_FILE"),
		"gateway: file holding the HS256 secret (env ORDERFLOW_JWT_SECRET_FILE)")
	o.jwksURL = fs.String("jwks-url", os.Getenv("JWKS_URL"),
		"gateway: JWK Set URL of the RS256/ES256 keys of the tokens, refreshed while running (env JWKS_URL)")
	o.rateLimit = fs.Float64("rate-limit", envFloat("RATE_LIMIT", 50), "gateway: requests per second per subject (env RATE_LIMIT)")
	o.rateBurst = fs.Int("rate-burst", envInt("RATE_BURST", 100), "gateway: requests a subject may send at once (env RATE_BURST)")
	o.upstreamTimeout = fs.Duration("upstream-timeout", envDuration("UPSTREAM_TIMEOUT", 10*time.Second),
		"gateway: time an upstream service has to answer, retries included (env UPSTREAM_TIMEOUT)")
	return o
}

// config is the gateway's configuration from the flags.
func (o *gatewayOptions) config(addr, natsURL string, logger *slog.Logger) (gateway.Config, error) {
	cfg := gateway.Config{
		Addr:            addr,
		NATSURL:         natsURL,
		Upstreams:       make(map[string][]string),
		JWKSURL:         *o.jwksURL,
		RateLimit:       rate.Limit(*o.rateLimit),
		RateBurst:       *o.rateBurst,
		UpstreamTimeout: *o.upstreamTimeout,
		Logger:          logger,
	}
	for svc, v := range o.upstreams {
		for u := range strings.SplitSeq(*v, ",") {
			if u = strings.TrimSpace(u); u != "" {
				cfg.Upstreams[svc] = append(cfg.Upstreams[svc], u)
			}
		}
	}
	switch {
	case *o.secret != "" && *o.secretFile != "":
		return cfg, usagef("serve gateway: give --jwt-secret or --jwt-secret-file, not both")
	case *o.secretFile != "":
		secret, err := auth.ReadSecretFile(*o.secretFile)
		if err != nil {
			return cfg, err
		}
		cfg.JWTSecret = secret
	case *o.secret != "":
		cfg.JWTSecret = []byte(*o.secret)
	}
	var errs []error
	for key, parse := range map[string]func(string) error{
		"RATE_LIMIT":       func(v string) error { _, err := strconv.ParseFloat(v, 64); return err },
		"RATE_BURST":       func(v string) error { _, err := strconv.Atoi(v); return err },
		"UPSTREAM_TIMEOUT": func(v string) error { _, err := time.ParseDuration(v); return err },
	} {
		if v := os.Getenv(key); v != "" && parse(v) != nil {
			errs = append(errs, fmt.Errorf("%s=%q is no valid value", key, v))
		}
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w (the upstreams: --orders-url, --inventory-url, --shipping-url, --sagas-url, or --nats-url to find them; the tokens: --jwt-secret, --jwt-secret-file or --jwks-url)", err))
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, usageError{fmt.Errorf("serve gateway: %w", err)}
	}
	return cfg, nil
}

// serveNames lists what serve can run, sorted: the services of serve's
// registry and the gateway.
func serveNames() []string {
	names := append(serve.Names(), gatewayName)
	slices.Sort(names)
	return names
}

// defaultPorts says which port each process listens on by default, e.g.
// ":8080 gateway, :8081 orders, :8082 inventory".
func defaultPorts() string {
	ports := []string{fmt.Sprintf(":%d %s", gateway.DefaultPort, gatewayName)}
	for _, m := range serve.Modules() {
		ports = append(ports, fmt.Sprintf(":%d %s", m.Port, m.Name))
	}
	return strings.Join(ports, ", ")
}

// newLogger logs to stderr; serve.Run adds the service name to every line.
func newLogger(format string) (*slog.Logger, error) {
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(os.Stderr, nil)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, nil)
	default:
		return nil, usagef("log format %q: want text or json", format)
	}
	return slog.New(h), nil
}

// defaultGCPercent is the garbage collector's target when GOGC is not
// set. A service's live heap is small (tens of MB: the caches of streams and
// saga states) and it allocates mostly short-lived buffers per message, so
// the runtime's default of 100 collects very often: at the saga bench's
// peak the sagas service spent over a fifth of its CPU in the collector,
// and with 400 the whole stack spent about 15% less CPU per saga (ADR
// 0117). GOGC and GOMEMLIMIT set in the environment win.
const defaultGCPercent = 400

// tuneGC sets the collector's target to defaultGCPercent unless GOGC says
// otherwise.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}

// envFloat is the number in the environment variable key, or def when it
// is unset or no number (gatewayOptions.config reports a bad one).
func envFloat(key string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(key), 64); err == nil {
		return v
	}
	return def
}

// envInt is the integer in the environment variable key, or def.
func envInt(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return v
	}
	return def
}

// envDuration is the duration in the environment variable key, or def.
func envDuration(key string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return v
	}
	return def
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
