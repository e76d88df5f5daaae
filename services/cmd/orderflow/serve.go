package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/orderflow/orderflow/services/internal/serve"
)

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", os.Getenv("ADDR"), "listen address (env ADDR; default the service's port: "+defaultPorts()+")")
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "the service's PostgreSQL URL, as the role it runs as (env DATABASE_URL)")
	ownerURL := fs.String("owner-database-url", os.Getenv("OWNER_DATABASE_URL"),
		"the same database as the owner of its tables, used only for migrations and read-model rebuilds (env OWNER_DATABASE_URL; default: the database URL)")
	natsURL := fs.String("nats-url", os.Getenv("NATS_URL"), "NATS URL (env NATS_URL)")
	logFormat := fs.String("log-format", envOr("LOG_FORMAT", "text"), "log format on stderr: text or json (env LOG_FORMAT)")
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
	logger, err := newLogger(*logFormat)
	if err != nil {
		return err
	}
	tuneGC()
	return serve.Run(ctx, serve.Config{
		Service:          service,
		Addr:             *addr,
		DatabaseURL:      *dbURL,
		OwnerDatabaseURL: *ownerURL,
		NATSURL:          *natsURL,
		Logger:           logger,
	})
}

// serveNames lists what serve.Run can run, sorted.
func serveNames() []string { return serve.Names() }

// defaultPorts says which port each service listens on by default, e.g.
// ":8081 orders, :8082 inventory".
func defaultPorts() string {
	var ports []string
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

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
