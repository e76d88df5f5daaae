package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/pgserver"
	"github.com/orderflow/orderflow/services/internal/bench"
)

// runBench measures the event store against same-run references on a
// private PostgreSQL cluster (fsync on) or the server named by
// --database-url, then sagas end to end on a dev stack this binary runs,
// then on the same stack orders placed through the gateway against
// straight to the orders service, then sagas again on a clustered dev
// stack.
func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: orderflow bench [flags]\n\nMeasures event store appends against one-row INSERT and CopyFrom references\nmeasured in the same run, and commands on one hot stream against the same\ncommands on 1,000 streams. Then it runs the stack as orderflow dev does\n(every service its own process, PostgreSQL with fsync on) and measures\ncompleted sagas per second and order-to-confirmed latency through the HTTP\nAPI, then, on the same stack, orders placed per second through the gateway\nagainst straight to the orders service, then completed sagas per second\nagain on the stack orderflow dev --cluster runs. It prints a table and\nBENCH lines.\n\n")
		fs.PrintDefaults()
	}
	adminURL := fs.String("database-url", "", "superuser URL of the server to measure (default: a private cluster started from the local PostgreSQL binaries, fsync on)")
	var cfg bench.Config
	fs.DurationVar(&cfg.Duration, "duration", 3*time.Second, "length of each timed phase")
	fs.IntVar(&cfg.Rounds, "rounds", 3, "rounds of every event store and command phase, interleaved; medians are reported (-1 skips those phases)")
	fs.IntVar(&cfg.Writers, "writers", 64, "concurrent writers for single-event appends")
	fs.IntVar(&cfg.BatchWriters, "batch-writers", 8, "concurrent writers for 100-event appends")
	fs.IntVar(&cfg.CopyRows, "copy-rows", 300_000, "rows written by the CopyFrom reference")
	fs.IntVar(&cfg.ReplayEvents, "replay-events", 1_000_000, "events seeded and replayed into the orders read model (-1 skips)")
	fs.IntVar(&cfg.LagRate, "lag-rate", 5_000, "append rate in events/s while measuring projection lag (-1 skips)")
	fs.IntVar(&cfg.CommandCallers, "command-callers", 32, "concurrent callers of restocks on one sku and on 1,000 skus (-1 skips)")
	fs.IntVar(&cfg.HotStreamEvents, "hot-stream-events", 100_000, "events of the stock stream on which a restock, loaded from its snapshot by a new handler, is measured against one on a fresh stream (-1 skips)")
	fs.IntVar(&cfg.SagaClients, "saga-clients", 256, "clients placing orders in the saga peak, each waiting for its order to read confirmed (-1 skips the saga phase)")
	fs.DurationVar(&cfg.SagaDuration, "saga-duration", 10*time.Second, "measured length of the saga peak and of the saga latency phase, each after a warm-up")
	fs.IntVar(&cfg.SagaSKUs, "saga-skus", 100, "skus the saga phase's orders spread over")
	fs.DurationVar(&cfg.SagaPoll, "saga-poll", 5*time.Millisecond, "how often the orders read model is read in the saga latency phase")
	fs.IntVar(&cfg.GatewayClients, "gateway-clients", 64, "clients placing orders, one after the other, straight to the orders service and through the gateway, to measure the gateway's overhead (-1 skips the gateway phase)")
	fs.IntVar(&cfg.GatewayRounds, "gateway-rounds", 3, "interleaved rounds of the gateway phase's two legs; medians are reported")
	fs.DurationVar(&cfg.GatewayDuration, "gateway-duration", 3*time.Second, "measured length of each leg of the gateway phase, after a warm-up")
	fs.IntVar(&cfg.ClusterClients, "cluster-clients", 256, "clients of the saga peak run again on the stack of orderflow dev --cluster (3 NATS nodes, streams with 3 replicas, 2 replicas of every service), after the single-node stack, for saga_completed_per_s_cluster (-1 skips the cluster phase)")
	fs.IntVar(&cfg.SagaPortBase, "saga-port-base", 0, "measure the stack already running with this --port-base (e.g. make run's 8080) instead of starting one; for profiling")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if cfg.SagaClients >= 0 || cfg.GatewayClients >= 0 || cfg.ClusterClients >= 0 {
		// The stack is `orderflow dev` run by this very binary.
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: find own executable: %w", err)
		}
		cfg.SagaBinary = exe
	}
	if cfg.Rounds < 0 && cfg.ReplayEvents < 0 && cfg.LagRate < 0 {
		// Only the saga and gateway phases run, on the stack's own
		// PostgreSQL.
		_, err := bench.Run(ctx, os.Stdout, nil, cfg)
		return err
	}
	if *adminURL == "" {
		fmt.Fprintln(os.Stderr, "starting a private PostgreSQL cluster (fsync on) ...")
		start := time.Now()
		srv, err := pgserver.Start(ctx, pgserver.Config{})
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer srv.Stop(context.Background())
		fmt.Fprintf(os.Stderr, "PostgreSQL ready in %s\n", time.Since(start).Round(10*time.Millisecond))
		*adminURL = srv.URL("postgres")
	}
	admin, err := pgx.Connect(ctx, *adminURL)
	if err != nil {
		return fmt.Errorf("bench: connect: %w", err)
	}
	defer admin.Close(context.Background())
	var created []string
	defer func() {
		for _, db := range created {
			admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)") //nolint:errcheck // best effort
		}
	}()
	u, err := url.Parse(*adminURL)
	if err != nil || u.Scheme == "" {
		return fmt.Errorf("bench: --database-url must be a postgres:// URL")
	}
	newDB := func(ctx context.Context) (string, error) {
		name := fmt.Sprintf("orderflow_bench_%d_%d", os.Getpid(), len(created))
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			return "", err
		}
		created = append(created, name)
		du := *u
		du.Path = "/" + name
		return du.String(), nil
	}
	_, err = bench.Run(ctx, os.Stdout, newDB, cfg)
	return err
}
