package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/services/gateway/auth"
	"github.com/orderflow/orderflow/services/internal/chaos"
)

// chaosOptions are the chaos command's flags.
type chaosOptions struct {
	orders    int
	workers   int
	rate      float64
	customers int
	killEvery time.Duration
	portBase  int
	keep      bool
	seed      uint64
	settle    time.Duration
	min       chaos.Minimums
}

// chaosExit ends the process after a failed run. A failed run has said
// everything it has to say in its report, whose CHAOS lines must stay the
// last ones; returning an error would print another line after them.
var chaosExit = os.Exit

func runChaos(ctx context.Context, args []string) error {
	signal.Ignore(syscall.SIGPIPE)
	tuneGC()
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	var o chaosOptions
	fs.IntVar(&o.orders, "orders", 2000, "orders to place")
	fs.IntVar(&o.workers, "workers", 32, "clients placing orders at once")
	fs.Float64Var(&o.rate, "rate", 0, "orders a second (default: paced so that the load lasts as long as the minimum kills take, and every kill hits sagas in flight)")
	fs.IntVar(&o.customers, "customers", 50, "customers the orders are spread over (the gateway rate-limits each)")
	fs.DurationVar(&o.killEvery, "kill-every", 2500*time.Millisecond, "kill a process this often")
	fs.IntVar(&o.portBase, "port-base", 18080, "first port of the clustered stack (gateway N, replicas N+1..N+4 and N+11..N+14)")
	fs.BoolVar(&o.keep, "keep", false, "keep the stack's data directory at exit (it is kept anyway when the run fails)")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the orders and the kills (default: from the clock; the run prints it)")
	fs.DurationVar(&o.settle, "settle", 5*time.Minute, "how long to wait, after the load, for every saga to end and every projection to catch up")
	fs.IntVar(&o.min.Total, "min-kills", 20, "kill at least this many processes")
	fs.IntVar(&o.min.NATS, "min-nats-kills", 3, "of which at least this many NATS nodes")
	fs.IntVar(&o.min.Coordinator, "min-coordinator-kills", 3, "and at least this many saga coordinator replicas")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: orderflow chaos [flags]

Starts the clustered dev stack (dev --cluster: 3 NATS nodes, 2 replicas of
every service and coordinator, the gateway), places orders through the
gateway (served, refused, over-stock and cancelled) from many clients while
killing a random service replica, coordinator replica or NATS node with
SIGKILL every --kill-every (the stack restarts it), then waits for the
system to settle and checks its invariants. It prints a summary, every
violation, and last:
  CHAOS orders N / kills N / nats_kills N / coordinator_kills N / violations N
and exits 1 on a violation or when the kills fell short of the minimums.
The stack's own output goes to a log file whose path it prints.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	switch {
	case o.orders < 1:
		return usagef("chaos: --orders must be positive")
	case o.workers < 1, o.customers < 1:
		return usagef("chaos: --workers and --customers must be positive")
	case o.killEvery <= 0:
		return usagef("chaos: --kill-every must be positive")
	case o.rate < 0:
		return usagef("chaos: --rate must not be negative")
	case o.portBase < 1 || o.portBase+lastPortOffset(true) > 65535:
		return usagef("chaos: --port-base %d out of range 1..%d", o.portBase, 65535-lastPortOffset(true))
	}
	if o.rate == 0 {
		// A tenth longer than the minimum kills take, so that the last
		// of them still meets orders in flight.
		span := time.Duration(max(o.min.Total, 1)) * o.killEvery * 11 / 10
		o.rate = float64(o.orders) / span.Seconds()
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	failed, err := chaosRun(ctx, o, os.Stdout)
	if err != nil {
		return err
	}
	if failed {
		chaosExit(1)
	}
	return nil
}

// chaosRun runs the clustered stack, the load and the kills, judges the
// result and writes the report to out. It reports whether the run failed;
// an error means it could not be judged at all.
func chaosRun(ctx context.Context, o chaosOptions, out io.Writer) (failed bool, err error) {
	start := time.Now()
	logDir, err := os.MkdirTemp("", "orderflow-chaos-")
	if err != nil {
		return false, fmt.Errorf("chaos: log dir: %w", err)
	}
	logPath := filepath.Join(logDir, "stack.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return false, fmt.Errorf("chaos: stack log: %w", err)
	}
	defer logFile.Close()
	fmt.Fprintf(out, "chaos: seed %d, %d orders at %.1f/s, a kill every %s; the stack's output goes to %s\n", o.seed, o.orders, o.rate, o.killEvery, logPath)

	d := &devStack{
		opts: devOptions{portBase: o.portBase, keep: o.keep, cluster: true,
			// Killing is the point: a child that dies often must be
			// restarted, not stop the stack.
			maxExits: 1 << 20},
		con:    newConsole(logFile),
		pgTail: newLineTail(30),
		// Nobody asks for the status table; the log has every change.
		statusRequests: make(chan os.Signal),
		ready:          make(chan struct{}),
	}
	stackCtx, stopStack := context.WithCancel(ctx)
	defer stopStack()
	stackDone := make(chan error, 1)
	go func() { stackDone <- d.run(stackCtx) }()
	stopped := false
	stop := func(keep bool) error {
		if stopped {
			return nil
		}
		stopped = true
		if keep {
			// Read by run's shutdown after the cancel below, which orders
			// this write before it.
			d.opts.keep = true
		}
		stopStack()
		return <-stackDone
	}
	defer func() {
		// Whatever stopped the run early, its data may explain it.
		if sErr := stop(failed || err != nil); sErr != nil {
			err = errors.Join(err, fmt.Errorf("chaos: the stack: %w (its log: %s)", sErr, logPath))
		}
	}()

	fmt.Fprintf(out, "chaos: starting the clustered dev stack on ports %d..%d\n", o.portBase, o.portBase+lastPortOffset(true))
	select {
	case <-d.ready:
	case err := <-stackDone:
		stopped = true
		if err == nil {
			err = errors.New("stopped before it was ready")
		}
		return false, fmt.Errorf("chaos: the stack did not start: %w (its log: %s)", err, logPath)
	}
	fmt.Fprintf(out, "chaos: stack ready in %s (data in %s)\n", seconds(time.Since(start)), d.dir)

	admin, err := auth.Sign(d.secret, auth.Principal{Subject: "admin", Role: auth.RoleAdmin}, devTokenTTL)
	if err != nil {
		return false, fmt.Errorf("chaos: admin token: %w", err)
	}
	cfg := chaos.LoadConfig{
		RunID:  strconv.FormatUint(o.seed%1_000_000, 36),
		Orders: o.orders, Workers: o.workers, Customers: o.customers, Seed: o.seed, Rate: o.rate,
		AdminToken: admin,
		CustomerToken: func(c string) (string, error) {
			return auth.Sign(d.secret, auth.Principal{Subject: c, Role: auth.RoleCustomer}, devTokenTTL)
		},
	}
	client := chaos.NewClient(d.gatewayURL())
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	restocked, err := chaos.Restock(rctx, client, cfg)
	cancel()
	if err != nil {
		return false, fmt.Errorf("chaos: %w", err)
	}

	// The load and the kills run together; the kills go on after the
	// load until the minimums are met.
	var targets []chaos.Target
	for _, p := range d.processes() {
		targets = append(targets, chaos.Target{Name: p.Name, Kind: p.Kind, Kill: p.Kill})
	}
	var prog chaos.Progress
	var kills atomic.Int64
	loadDone := make(chan struct{})
	killDone := make(chan error, 1)
	var counts chaos.Counts
	killCtx, stopKills := context.WithCancel(ctx)
	defer stopKills()
	go func() {
		var err error
		counts, err = chaos.Kill(killCtx, targets, chaos.KillConfig{
			Every: o.killEvery, Min: o.min, Seed: o.seed,
			NATSQuorum: func(ctx context.Context) error { return natsQuorum(ctx, d.natsURL, 2*time.Minute) },
			Killed: func(t chaos.Target, c chaos.Counts) {
				kills.Store(int64(c.Total))
				fmt.Fprintf(out, "chaos: kill %d: %s (%s); %d NATS, %d coordinator so far\n", c.Total, t.Name, t.Kind, c.NATS, c.Coordinator)
			},
		}, loadDone)
		killDone <- err
	}()
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-loadDone:
				return
			case <-tick.C:
				fmt.Fprintf(out, "chaos: %d/%d orders acknowledged, %d cancelled, %d retried writes, %d kills\n",
					prog.Placed.Load(), o.orders, prog.Cancelled.Load(), prog.Retries.Load(), kills.Load())
			}
		}
	}()
	loadStart := time.Now()
	load, loadErr := chaos.Run(ctx, client, cfg, &prog)
	close(loadDone)
	<-progressDone
	loadTook := time.Since(loadStart)
	fmt.Fprintf(out, "chaos: load done in %s: %d acknowledged, %d without a final answer; the kills stop once their minimums are met\n",
		seconds(loadTook), len(load.Intents), load.Unacknowledged)
	if err := <-killDone; err != nil {
		return false, fmt.Errorf("chaos: kills: %w", err)
	}
	if loadErr != nil {
		return false, fmt.Errorf("chaos: load: %w", loadErr)
	}

	settleStart := time.Now()
	world, err := settle(ctx, client, d.natsURL, cfg, restocked, load.Intents, o.settle, out)
	if err != nil {
		return false, err
	}
	settleTook := time.Since(settleStart)

	checkStart := time.Now()
	if err := judge(ctx, d, client, cfg, &world, out); err != nil {
		return false, err
	}
	world.Intents = load.Intents
	world.Restocked = restocked
	violations := append(load.Refusals, chaos.Check(world)...)
	rep := chaos.Report{Load: load, Kills: counts, Min: o.min, Outcomes: chaos.Tally(world), Violations: violations,
		LoadTook: loadTook, SettleTook: settleTook, CheckTook: time.Since(checkStart)}
	failed = rep.Failed()
	if sErr := stop(failed); sErr != nil {
		return failed, fmt.Errorf("chaos: the stack: %w (its log: %s)", sErr, logPath)
	}
	fmt.Fprintf(out, "chaos: finished in %s; the stack's log: %s\n", seconds(time.Since(start)), logPath)
	if failed {
		fmt.Fprintf(out, "chaos: the stack's data is kept in %s\n", d.dir)
	}
	rep.Write(out)
	return failed, nil
}

// settle waits up to limit for the run to come to rest (every saga ended,
// every projection caught up, no message in flight on JetStream) and
// returns what the read models show.
// A run that does not settle is judged as it is: its sagas still running
// are violations.
func settle(ctx context.Context, c *chaos.Client, natsURL string, cfg chaos.LoadConfig, restocked map[string]int64, intents []chaos.Intent, limit time.Duration, out io.Writer) (chaos.World, error) {
	deadline := time.Now().Add(limit)
	lastSaid := time.Now()
	for {
		octx, cancel := context.WithTimeout(ctx, time.Minute)
		ob, err := chaos.Observe(octx, c, cfg, restocked)
		cancel()
		if err != nil && ctx.Err() != nil {
			return chaos.World{}, ctx.Err()
		}
		quiet, moving := false, err
		if err == nil {
			var what string
			quiet, what = chaos.Quiet(ob, intents)
			moving = errors.New(what)
		}
		if quiet {
			// The sagas have ended, but a command cut short by a kill
			// may still be redelivered to undo what it did.
			bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			busy, err := chaos.JetStreamBusy(bctx, natsURL)
			cancel()
			switch {
			case err != nil:
				quiet, moving = false, err
			case len(busy) > 0:
				quiet, moving = false, fmt.Errorf("in flight on JetStream: %s", strings.Join(busy, "; "))
			}
		}
		if quiet || time.Now().After(deadline) {
			if !quiet {
				fmt.Fprintf(out, "chaos: not settled after %s (%v); judging it as it is\n", limit, moving)
			}
			return chaos.World{Orders: ob.Orders, Sagas: ob.Sagas, Shipments: ob.Shipments, Stock: ob.Stock, Projections: ob.Projections}, nil
		}
		if time.Since(lastSaid) > 10*time.Second {
			fmt.Fprintf(out, "chaos: settling: %v\n", moving)
			lastSaid = time.Now()
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return chaos.World{}, ctx.Err()
		case <-t.C:
		}
	}
}

// judge completes w with what only a settled stack can tell: each read
// model against a fresh replay of its store, the projections' state after
// the replays, the stock each order holds by the inventory's events, and
// the parked counts of the relays (durable) and of the
// coordinators and command consumers (since each process last started).
func judge(ctx context.Context, d *devStack, c *chaos.Client, cfg chaos.LoadConfig, w *chaos.World, out io.Writer) error {
	for _, p := range w.Projections {
		fmt.Fprintf(out, "chaos: replaying projection %s to compare it with the live one\n", p.Name)
		rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		w.Replays = append(w.Replays, chaos.CompareReplay(rctx, c, cfg.AdminToken, p.Name))
		cancel()
	}
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ps, err := chaos.Projections(pctx, c, cfg.AdminToken)
	if err != nil {
		return fmt.Errorf("chaos: projections after the replays: %w", err)
	}
	w.Projections = ps
	if w.Holdings, err = chaos.Holdings(pctx, d.dbURLs["inventory"].Service); err != nil {
		return fmt.Errorf("chaos: the orders' stock holdings: %w", err)
	}
	w.Parked = map[string]int64{}
	for _, svc := range services {
		n, err := chaos.RelayParked(pctx, d.dbURLs[svc].Service)
		if err != nil {
			return fmt.Errorf("chaos: parked events of the %s relay: %w", svc, err)
		}
		w.Parked["relay of "+svc] = n
		for r := 1; r <= serviceReplicas; r++ {
			name := replicaName(svc, r)
			base := fmt.Sprintf("http://127.0.0.1:%d", replicaPort(d.opts.portBase, svc, r))
			for _, m := range chaos.ParkedMetrics {
				v, err := chaos.MetricSum(pctx, base, m)
				switch {
				case errors.Is(err, chaos.ErrNoMetrics):
					// Not this kind of process's counter.
				case err != nil:
					return fmt.Errorf("chaos: %s of %s: %w", m, name, err)
				default:
					w.Parked[m+" of "+name+" (since its last start)"] = int64(v)
				}
			}
		}
	}
	return nil
}

// natsQuorum waits up to limit until every NATS node of urls (comma-
// separated) accepts a client and answers a JetStream request, so that
// killing one leaves a quorum.
func natsQuorum(ctx context.Context, urls string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for {
		last = nil
		for _, u := range strings.Split(urls, ",") {
			if err := natsNodeAnswers(ctx, u); err != nil {
				last = fmt.Errorf("%s: %w", u, err)
				break
			}
		}
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not every NATS node answered within %s: %w", limit, last)
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// natsNodeAnswers connects to the one node at url and asks JetStream for
// the account's info, which needs the cluster's meta leader.
func natsNodeAnswers(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(actx)
	return err
}
