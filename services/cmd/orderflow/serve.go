package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/orderflow/orderflow/services/internal/serve"
)

// services are the services serve runs, in dev's start order; their
// default ports follow the dev stack's layout (orders 8081, ...).
var services = []string{"orders", "inventory", "shipping"}

const defaultPortBase = 8080

func servicePort(base int, service string) int {
	return base + 1 + slices.Index(services, service)
}

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", os.Getenv("ADDR"), "listen address (env ADDR; default :8081 orders, :8082 inventory, :8083 shipping)")
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "the service's PostgreSQL URL (env DATABASE_URL)")
	natsURL := fs.String("nats-url", os.Getenv("NATS_URL"), "NATS URL (env NATS_URL)")
	logFormat := fs.String("log-format", envOr("LOG_FORMAT", "text"), "log format on stderr: text or json (env LOG_FORMAT)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: orderflow serve SERVICE [flags]\n\nRuns one service; SERVICE is one of %s.\n\nFlags:\n", strings.Join(services, ", "))
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
	case !slices.Contains(services, service):
		fs.Usage()
		return usagef("serve: unknown service %q", service)
	case len(rest) > 0:
		fs.Usage()
		return usagef("serve: unexpected arguments %q", rest)
	}
	if *addr == "" {
		*addr = ":" + strconv.Itoa(servicePort(defaultPortBase, service))
	}
	logger, err := newLogger(*logFormat, service)
	if err != nil {
		return err
	}
	return serve.Run(ctx, serve.Config{
		Service:     service,
		Addr:        *addr,
		DatabaseURL: *dbURL,
		NATSURL:     *natsURL,
		Logger:      logger,
	})
}

func newLogger(format, service string) (*slog.Logger, error) {
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(os.Stderr, nil)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, nil)
	default:
		return nil, usagef("log format %q: want text or json", format)
	}
	return slog.New(h).With("service", service), nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
