package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/backoff"
	"github.com/orderflow/orderflow/internal/childproc"
)

// The saga phase measures the whole system end to end: the stack runs as
// `orderflow dev` runs it (every service its own process, PostgreSQL with
// fsync on, the embedded NATS), and the benchmark drives it through the
// HTTP API only, as a client would. A saga counts as done when the orders
// read model shows its order `confirmed`.

// dtmSagaTPS is the published figure the saga rate is compared with: dtm's
// saga transactions per second on 4 cores with no business SQL. It is not
// measured here.
const dtmSagaTPS = 935

// sagaTarget is the completed sagas per second the system should reach on
// a 2-core machine.
const sagaTarget = 1000

const (
	// devReadyMarker starts the dev command's banner line that says every
	// service answers.
	devReadyMarker = "orderflow dev stack is ready"
	// stackStartTimeout bounds the dev stack's start.
	stackStartTimeout = 2 * time.Minute
	// drainTimeout bounds the wait for the sagas still running when a
	// phase ends.
	drainTimeout = 30 * time.Second
	// peakPoll is how often the read model is polled during the peak
	// phase. The rate's window is long, so its resolution matters little,
	// while each poll costs the orders service a page of rows.
	peakPoll = 50 * time.Millisecond
	// listHorizon is how far back, from the oldest order still awaited,
	// the list of confirmed orders is read; orders awaited longer are
	// looked up one by one (slowPoll), so that one stuck order cannot make
	// every poll read thousands of rows.
	listHorizon = 5 * time.Second
	slowPoll    = time.Second
	// giveUp ends the wait for one order; it then counts as not confirmed.
	giveUp = time.Minute
	// restockQuantity is what each sku gets: the largest restock the API
	// takes, far more than a run can order.
	restockQuantity = 1_000_000
)

// sagas runs the end-to-end phases on one stack: start it, restock
// SagaSKUs skus, then, unless SagaClients is negative, the peak phase
// (SagaClients closed-loop clients, each placing an order and waiting
// until it reads confirmed before placing the next) and the latency phase
// (orders paced at half the peak rate), then, unless GatewayClients is
// negative, the gateway phase (gateway.go), after the sagas have drained
// so that the saga figures are those of the stack alone.
func (r *runner) sagas(ctx context.Context) error {
	return r.withStack(ctx, false, func(ctx context.Context, st *stack) error {
		s := newSagaClient(st, max(r.cfg.SagaClients, r.cfg.GatewayClients))
		if err := r.prepare(ctx, s); err != nil {
			return err
		}
		if r.cfg.SagaClients > 0 {
			if err := r.sagaPhases(ctx, s); err != nil {
				return err
			}
		}
		if r.cfg.GatewayClients > 0 {
			return r.gateway(ctx, s)
		}
		return nil
	})
}

// clusterSagas runs the saga peak again, with ClusterClients clients, on
// the stack `orderflow dev --cluster` runs: three NATS nodes forming one
// JetStream cluster whose streams keep three replicas, two replicas of
// every service and of the coordinator. The orders are spread over the
// orders replicas. It measures what the replication and the leases cost
// against the single-node figure, not the gateway, which the gateway
// phase measures.
func (r *runner) clusterSagas(ctx context.Context) error {
	return r.withStack(ctx, true, func(ctx context.Context, st *stack) error {
		s := newSagaClient(st, r.cfg.ClusterClients)
		if err := r.prepare(ctx, s); err != nil {
			return err
		}
		if err := r.firstSagas(ctx, s); err != nil {
			return err
		}
		peak, err := r.sagaPeak(ctx, s, clusterPhase(r.cfg.ClusterClients))
		if err != nil {
			return err
		}
		if peak <= 0 {
			return errors.New("no order was confirmed in the cluster's peak phase")
		}
		return r.sagaCheck(ctx, s, clusterPhase(r.cfg.ClusterClients))
	})
}

// firstSagas places one order through each orders replica and waits for
// them to read confirmed. A cluster answers its health checks some
// seconds before it completes sagas: its consumers are created on
// replicated streams, and the replicas settle who holds each lease. The
// peak measures the stack at work, not that.
func (r *runner) firstSagas(ctx context.Context, s *sagaClient) error {
	w := newWatcher(s, peakPoll)
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { w.run(wctx) })
	defer wg.Wait()
	defer stop()
	start := time.Now()
	errs := make([]error, len(s.ordersAll))
	var cg sync.WaitGroup
	for c := range s.ordersAll {
		cg.Go(func() {
			o, err := s.placeAndWaitSKU(ctx, w, c, s.skus[c%len(s.skus)])
			if err == nil && o.status != "confirmed" {
				err = fmt.Errorf("the first order through %s ended %s", s.ordersAll[c], o.status)
			}
			errs[c] = err
		})
	}
	cg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(r.w, "  first sagas completed in %s, one through each of the %d orders replicas\n", time.Since(start).Round(100*time.Millisecond), len(s.ordersAll))
	return nil
}

// prepare notes the sagas the stack completed before and restocks the
// skus the orders spread over.
func (r *runner) prepare(ctx context.Context, s *sagaClient) error {
	// A running stack may hold sagas of its own.
	before, err := s.countSagas(ctx, "completed", -1)
	if err != nil {
		return err
	}
	s.completedBefore = before
	t := time.Now()
	if err := s.restock(ctx, r.cfg.SagaSKUs); err != nil {
		return err
	}
	fmt.Fprintf(r.w, "  restocked %d skus with %d units each in %s\n", r.cfg.SagaSKUs, restockQuantity, time.Since(t).Round(100*time.Millisecond))
	return nil
}

// withStack runs fn on a stack: the one running at SagaPortBase, if set
// and not cluster, else one started by `SagaBinary dev` (with --cluster
// if cluster) and stopped after fn. fn's context ends, and its error
// carries the stack's last lines, should the stack die.
func (r *runner) withStack(ctx context.Context, cluster bool, fn func(context.Context, *stack) error) error {
	var st *stack
	if base := r.cfg.SagaPortBase; base > 0 && !cluster {
		st = runningStack(base)
		fmt.Fprintf(r.w, "  using the stack running at ports %d..%d: orders %s, inventory %s, sagas %s, gateway %s (its durability is not checked)\n",
			base, base+4, st.orders, st.inventory, st.sagas, st.gateway)
	} else {
		what := "dev (every service its own process)"
		if cluster {
			what = "dev --cluster (3 NATS nodes, 2 replicas of every service)"
		}
		fmt.Fprintf(r.w, "  starting the stack: %s %s ...\n", r.cfg.SagaBinary, what)
		start := time.Now()
		var err error
		if st, err = startStack(ctx, r.cfg.SagaBinary, cluster); err != nil {
			return err
		}
		defer func() {
			t := time.Now()
			if err := st.stop(); err != nil {
				fmt.Fprintf(r.w, "  stopping the stack: %v\n", err)
				return
			}
			fmt.Fprintf(r.w, "  stack stopped in %s\n", time.Since(t).Round(100*time.Millisecond))
		}()
		fmt.Fprintf(r.w, "  stack ready in %s: orders %s, inventory %s, sagas %s, gateway %s; PostgreSQL fsync=%s synchronous_commit=%s\n",
			time.Since(start).Round(100*time.Millisecond), strings.Join(st.ordersAll, " "), st.inventory, st.sagas, st.gateway, st.fsync, st.syncCommit)
	}

	// The phase ends early, with the stack's last lines, if the stack dies.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-st.done:
			cancel(fmt.Errorf("the dev stack exited (%v); its last lines:\n%s", st.err(), st.log.tailString()))
		case <-ctx.Done():
		}
	}()
	if err := fn(ctx, st); err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return errors.Join(err, cause)
		}
		return err
	}
	return nil
}

// sagaPhases runs the saga peak and latency phases and checks that every
// order's saga completed.
func (r *runner) sagaPhases(ctx context.Context, s *sagaClient) error {
	single := peakPhase{label: "peak", clients: r.cfg.SagaClients}
	peak, err := r.sagaPeak(ctx, s, single)
	if err != nil {
		return err
	}
	if peak <= 0 {
		return errors.New("no order was confirmed in the peak phase")
	}
	if err := r.sagaLatency(ctx, s, peak/2); err != nil {
		return err
	}
	return r.sagaCheck(ctx, s, single)
}

// peakPhase is a stack the saga peak runs on: its clients, the label of
// its progress lines and the suffix of its figures' names ("" for the
// single-node stack).
type peakPhase struct {
	label, suffix string
	clients       int
}

// clusterSuffix ends the names of the figures measured on the cluster.
const clusterSuffix = "_cluster"

// clusterRateFigure is the cluster's completed sagas per second; the
// BENCH lines print it, and its ratio to the single-node figure, right
// under the single-node figure.
const clusterRateFigure = "saga_completed_per_s" + clusterSuffix

// clusterFigures are the cluster's rate and, when the single-node stack
// was measured too, the ratio of the two.
func (r *runner) clusterFigures() []Figure {
	rate := r.get(clusterRateFigure)
	out := []Figure{{clusterRateFigure, rate, r.units[clusterRateFigure]}}
	if single := r.get("saga_completed_per_s"); single > 0 {
		out = append(out, Figure{"saga_cluster_to_single_ratio", rate / single, "x"})
	}
	return out
}

func clusterPhase(clients int) peakPhase {
	return peakPhase{label: "cluster peak", suffix: clusterSuffix, clients: clients}
}

// sagaWarmup is the first part of a phase, not measured: connections,
// caches and batch sizes settle.
func sagaWarmup(d time.Duration) time.Duration {
	return min(max(d/5, 200*time.Millisecond), 2*time.Second)
}

// sagaPeak runs p.clients clients for warm-up plus SagaDuration, each
// placing one order after the other and waiting for it to read confirmed.
// It returns the confirmations per second seen in the measured window.
func (r *runner) sagaPeak(ctx context.Context, s *sagaClient, p peakPhase) (float64, error) {
	d := r.cfg.SagaDuration
	warm := sagaWarmup(d)
	fmt.Fprintf(r.w, "  %s: %d clients, each placing an order and waiting for it to read confirmed, %s (+%s warm-up) ...\n", p.label, p.clients, d, warm)
	w := newWatcher(s, peakPoll)
	wctx, stopWatch := context.WithCancel(ctx)
	var wwg sync.WaitGroup
	wwg.Go(func() { w.run(wctx) })
	defer wwg.Wait()
	defer stopWatch()

	begin := time.Now()
	from, to := begin.Add(warm), begin.Add(warm+d)
	var (
		inWindow, confirmed atomic.Int64
		mu                  sync.Mutex
		lats                []time.Duration
		firstErr            error
		notConfirmed        = make(map[string]int)
	)
	// The CPU time of every process at the window's ends says where the
	// time goes.
	cpu := sampleCPUAt(ctx, s.stackPID, from, to)
	// Once the warm-up has put rows in the tables, the planner gets their
	// statistics, as autovacuum would give them after its first minute;
	// halfway through it, so that the window measures the plans made then.
	analyzed := make(chan error, 1)
	go func() {
		if err := backoff.Sleep(ctx, warm/2); err != nil {
			analyzed <- err
			return
		}
		analyzed <- s.st.analyze(ctx)
	}()
	var wg sync.WaitGroup
	for c := range p.clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			for ctx.Err() == nil && time.Now().Before(to) {
				o, err := s.placeAndWait(ctx, w, c, rng)
				if err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						firstErr = errors.Join(firstErr, err)
						mu.Unlock()
					}
					return
				}
				if o.status != "confirmed" {
					mu.Lock()
					notConfirmed[o.status]++
					mu.Unlock()
					continue
				}
				confirmed.Add(1)
				if !o.at.Before(from) && !o.at.After(to) {
					inWindow.Add(1)
					mu.Lock()
					lats = append(lats, o.at.Sub(o.accepted))
					mu.Unlock()
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	every := time.NewTicker(2 * time.Second)
	defer every.Stop()
	var last int64
	lastAt := begin
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case now := <-every.C:
			n := confirmed.Load()
			fmt.Fprintf(r.w, "  %s: %4.1fs, %d placed, %d confirmed (%.0f/s over the last %.0fs), %d awaited, %d POST errors\n",
				p.label, now.Sub(begin).Seconds(), s.accepted.Load(), n, float64(n-last)/now.Sub(lastAt).Seconds(), now.Sub(lastAt).Seconds(),
				w.awaited(), s.postErrors.Load())
			last, lastAt = n, now
		}
	}
	if firstErr != nil {
		return 0, fmt.Errorf("%s: %w", p.label, firstErr)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := <-analyzed; err != nil {
		return 0, fmt.Errorf("%s: %w", p.label, err)
	}
	rate := float64(inWindow.Load()) / d.Seconds()
	slices.Sort(lats)
	polls, rows := w.stats()
	fmt.Fprintf(r.w, "  %s: %.0f sagas/s (%d confirmed in %s), at that load order-to-confirmed p50 %.1f ms p99 %.1f ms; %s; %d read-model polls, %.0f rows each\n",
		p.label, rate, inWindow.Load(), d, ms(pct(lats, 0.5)), ms(pct(lats, 0.99)), describeNotConfirmed(notConfirmed), polls, float64(rows)/max(float64(polls), 1))
	if samples, ok := <-cpu; ok {
		reportCPU(r.w, samples[0], samples[1], inWindow.Load())
	}
	r.add("saga_completed_per_s"+p.suffix, rate, "sagas/s")
	r.add("saga_peak_p50_ms"+p.suffix, ms(pct(lats, 0.5)), "ms")
	return rate, nil
}

// sagaLatency places orders at rate per second (open loop: each at its
// time, whatever the answers before it) for warm-up plus SagaDuration and
// measures, per order placed after the warm-up, the time from the POST's
// 202 to the order reading confirmed in the orders read model.
func (r *runner) sagaLatency(ctx context.Context, s *sagaClient, rate float64) error {
	rate = max(rate, 1)
	d := r.cfg.SagaDuration
	warm := sagaWarmup(d)
	fmt.Fprintf(r.w, "  latency: %.0f orders/s (half the peak), paced, %s (+%s warm-up), read model polled every %s ...\n", rate, d, warm, r.cfg.SagaPoll)
	w := newWatcher(s, r.cfg.SagaPoll)
	wctx, stopWatch := context.WithCancel(ctx)
	var wwg sync.WaitGroup
	wwg.Go(func() { w.run(wctx) })
	defer wwg.Wait()
	defer stopWatch()

	var (
		mu           sync.Mutex
		lats, posts  []time.Duration
		notConfirmed = make(map[string]int)
		firstErr     error
		confirmed    atomic.Int64
		wg           sync.WaitGroup
	)
	// The semaphore bounds the orders in flight; should the stack fall
	// that far behind, the pacing stops being open-loop, which the
	// achieved rate printed below shows.
	sem := make(chan struct{}, 4096)
	begin := time.Now()
	from, end := begin.Add(warm), begin.Add(warm+d)
	cpu := sampleCPUAt(ctx, s.stackPID, from, end)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	progress := newTicker(2 * time.Second)
	var issued, measured int64
	lastN, lastAt := int64(0), begin
	rng := rand.New(rand.NewPCG(99, 1))
	for now := range tick.C {
		if now.After(end) || ctx.Err() != nil {
			break
		}
		// The target follows the clock, not the ticks, which a busy
		// machine may drop.
		for want := int64(rate * now.Sub(begin).Seconds()); issued < want; issued++ {
			measure := time.Now().After(from)
			if measure {
				measured++
			}
			sem <- struct{}{}
			sku := s.skus[rng.IntN(len(s.skus))]
			client := int(issued % int64(max(r.cfg.SagaClients, 1)))
			wg.Go(func() {
				defer func() { <-sem }()
				o, err := s.placeAndWaitSKU(ctx, w, client, sku)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					if ctx.Err() == nil {
						firstErr = errors.Join(firstErr, err)
					}
				case o.status != "confirmed":
					notConfirmed[o.status]++
				default:
					confirmed.Add(1)
					if measure {
						lats = append(lats, o.at.Sub(o.accepted))
						posts = append(posts, o.accepted.Sub(o.sent))
					}
				}
			})
		}
		if progress.due() {
			n := confirmed.Load()
			fmt.Fprintf(r.w, "  latency: %4.1fs, %d placed, %d confirmed (%.0f/s over the last %.0fs), %d awaited, %d POST errors\n",
				now.Sub(begin).Seconds(), issued, n, float64(n-lastN)/now.Sub(lastAt).Seconds(), now.Sub(lastAt).Seconds(), w.awaited(), s.postErrors.Load())
			lastN, lastAt = n, now
		}
	}
	achieved := float64(measured) / d.Seconds()
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("latency: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(lats) == 0 {
		return errors.New("latency: no order placed after the warm-up was confirmed")
	}
	slices.Sort(lats)
	slices.Sort(posts)
	if samples, ok := <-cpu; ok {
		reportLoad(r.w, samples[0], samples[1])
	}
	polls, rows := w.stats()
	fmt.Fprintf(r.w, "  latency: %d orders measured at %.0f/s: order-to-confirmed p50 %.1f ms p99 %.1f ms (POST 202 p50 %.1f ms p99 %.1f ms); %s; %d read-model polls, %.0f rows each\n",
		len(lats), achieved, ms(pct(lats, 0.5)), ms(pct(lats, 0.99)), ms(pct(posts, 0.5)), ms(pct(posts, 0.99)), describeNotConfirmed(notConfirmed), polls, float64(rows)/max(float64(polls), 1))
	r.add("saga_latency_rate_per_s", achieved, "orders/s")
	r.add("saga_p50_ms", ms(pct(lats, 0.5)), "ms")
	r.add("saga_p99_ms", ms(pct(lats, 0.99)), "ms")
	return nil
}

// sagaCheck waits until no saga is running or compensating and checks,
// in the sagas read model, that every order accepted in the phase has a
// completed saga: the orders read model's `confirmed` is the saga's last
// step, the coordinator's `completed` its end.
func (r *runner) sagaCheck(ctx context.Context, s *sagaClient, p peakPhase) error {
	deadline := time.Now().Add(drainTimeout)
	for {
		busy, err := s.busySagas(ctx)
		if err != nil {
			return err
		}
		if busy == 0 || time.Now().After(deadline) {
			break
		}
		if err := backoff.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	all, err := s.countSagas(ctx, "completed", -1)
	if err != nil {
		return err
	}
	completed := all - s.completedBefore
	accepted := s.accepted.Load()
	fmt.Fprintf(r.w, "  sagas read model: %d completed for %d orders accepted; %d POSTs answered other than 202\n", completed, accepted, s.postErrors.Load())
	r.add("saga_not_completed"+p.suffix, float64(max(accepted-int64(completed), 0)), "count")
	r.add("saga_post_errors"+p.suffix, float64(s.postErrors.Load()), "count")
	return nil
}

// sagaRows adds the rows of the saga phases, on the single-node stack
// and on the cluster, whichever ran, to the report's table. The cluster's
// rate comes right under the single-node one, which is its reference.
func (r *runner) sagaRows(row func(name string, v float64, unit string, ref float64, target string, ok bool)) {
	_, single := r.vals["saga_completed_per_s"]
	_, cluster := r.vals["saga_completed_per_s"+clusterSuffix]
	rate := r.get("saga_completed_per_s")
	if single {
		row(fmt.Sprintf("sagas completed end to end, %d clients", r.cfg.SagaClients), rate, "s/s", dtmSagaTPS,
			fmt.Sprintf(">= %d/s", sagaTarget), rate >= sagaTarget)
	}
	if cluster {
		// No target: the figure says what three copies of every message
		// and two replicas of every service cost on this machine.
		row(fmt.Sprintf("  on the cluster, %d clients (vs. 1 node)", r.cfg.ClusterClients), r.get("saga_completed_per_s"+clusterSuffix), "s/s", rate, "-", true)
	}
	if single {
		row("  order-to-confirmed p50 at the peak", r.get("saga_peak_p50_ms"), "ms", 0, "-", true)
		row(fmt.Sprintf("  order-to-confirmed p50 at %.0f orders/s", r.get("saga_latency_rate_per_s")), r.get("saga_p50_ms"), "ms", 0, "-", true)
		row("  p99", r.get("saga_p99_ms"), "ms", 0, "-", true)
		nc, pe := r.get("saga_not_completed"), r.get("saga_post_errors")
		row("  orders without a completed saga", nc, "", 0, "0", nc == 0)
		row("  POSTs answered other than 202", pe, "", 0, "0", pe == 0)
	}
	if cluster {
		row("  cluster: order-to-confirmed p50 at the peak", r.get("saga_peak_p50_ms"+clusterSuffix), "ms", 0, "-", true)
		nc, pe := r.get("saga_not_completed"+clusterSuffix), r.get("saga_post_errors"+clusterSuffix)
		row("  cluster: orders without a completed saga", nc, "", 0, "0", nc == 0)
		row("  cluster: POSTs answered other than 202", pe, "", 0, "0", pe == 0)
	}
	fmt.Fprintf(r.w, "%-44s %10d %-3s %12s %10s %s\n", "reference: dtm saga transactions", dtmSagaTPS, "s/s", "", "",
		"published (4 cores, no business SQL), not measured here")
}

// describeNotConfirmed says what became of the orders not confirmed, by
// status and reason.
func describeNotConfirmed(byStatus map[string]int) string {
	if len(byStatus) == 0 {
		return "every order confirmed"
	}
	var parts []string
	n := 0
	for st, c := range byStatus {
		parts = append(parts, fmt.Sprintf("%d %s", c, st))
		n += c
	}
	slices.Sort(parts)
	return fmt.Sprintf("%d not confirmed (%s)", n, strings.Join(parts, ", "))
}

// sagaClient talks to the stack's HTTP API.
type sagaClient struct {
	hc                       *http.Client
	orders, inventory, sagas string
	// ordersAll are the URLs of every orders replica, orders first;
	// client c places its orders at ordersAll[c%len(ordersAll)].
	ordersAll []string
	skus      []string
	// stackPID is the dev command's process; 0 for a stack this run did
	// not start.
	stackPID int
	// completedBefore is how many completed sagas the stack had before
	// the phase.
	completedBefore int
	st              *stack
	// accepted counts orders answered 202; postErrors POSTs answered
	// otherwise.
	accepted, postErrors atomic.Int64
}

func newSagaClient(st *stack, clients int) *sagaClient {
	// Every client keeps its connection: without enough idle connections
	// per host, each request would open a new one.
	tr := &http.Transport{
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: max(clients, 64) + 4096,
		IdleConnTimeout:     time.Minute,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	c := &sagaClient{
		hc:     &http.Client{Transport: tr, Timeout: 30 * time.Second},
		orders: st.orders, inventory: st.inventory, sagas: st.sagas,
		ordersAll: st.ordersAll,
	}
	if len(c.ordersAll) == 0 {
		c.ordersAll = []string{st.orders}
	}
	if st.proc != nil {
		c.stackPID = st.proc.Pid()
	}
	c.st = st
	return c
}

// restock gives n skus restockQuantity units each.
func (s *sagaClient) restock(ctx context.Context, n int) error {
	s.skus = make([]string, n)
	for i := range s.skus {
		s.skus[i] = fmt.Sprintf("BENCH-SAGA-%04d", i)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs error
		next atomic.Int64
	)
	for range min(8, n) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				body := fmt.Sprintf(`{"quantity": %d}`, restockQuantity)
				code, resp, err := s.do(ctx, http.MethodPost, s.inventory+"/api/inventory/"+s.skus[i]+"/restock", body)
				if err == nil && code != http.StatusAccepted {
					err = fmt.Errorf("restock %s: %d %s", s.skus[i], code, resp)
				}
				if err != nil {
					mu.Lock()
					errs = errors.Join(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errs
}

// do sends one request and returns the status and body.
func (s *sagaClient) do(ctx context.Context, method, u, body string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// outcome is what became of one order.
type outcome struct {
	sent     time.Time // the POST was sent
	accepted time.Time // its 202 arrived
	at       time.Time // the read model was seen showing status
	status   string    // confirmed, "rejected REASON", ..., or "timeout"
}

// placeAndWait places a single-item order of a random sku as customer
// "bench-<client>" and waits until the watcher sees it leave pending.
func (s *sagaClient) placeAndWait(ctx context.Context, w *watcher, client int, rng *rand.Rand) (outcome, error) {
	return s.placeAndWaitSKU(ctx, w, client, s.skus[rng.IntN(len(s.skus))])
}

func (s *sagaClient) placeAndWaitSKU(ctx context.Context, w *watcher, client int, sku string) (outcome, error) {
	body := orderBody(benchCustomer(client), sku)
	for refused := 0; ; refused++ {
		sent := time.Now()
		code, resp, err := s.do(ctx, http.MethodPost, s.ordersAll[client%len(s.ordersAll)]+"/api/orders", body)
		if err != nil {
			return outcome{}, fmt.Errorf("POST /api/orders: %w", err)
		}
		accepted := time.Now()
		if code != http.StatusAccepted {
			// A 503 or a 409 under load is an answer a client retries after
			// a pause; it is counted, and it shows in the report.
			s.postErrors.Add(1)
			retryable := code == http.StatusServiceUnavailable || code == http.StatusConflict || code == http.StatusTooManyRequests
			if !retryable || refused >= 100 {
				return outcome{}, fmt.Errorf("POST /api/orders: %d %s", code, resp)
			}
			if err := backoff.Sleep(ctx, 50*time.Millisecond); err != nil {
				return outcome{}, err
			}
			continue
		}
		s.accepted.Add(1)
		var placed struct {
			OrderID string `json:"order_id"`
		}
		if err := json.Unmarshal(resp, &placed); err != nil || placed.OrderID == "" {
			return outcome{}, fmt.Errorf("POST /api/orders: answer %q has no order_id", resp)
		}
		select {
		case o := <-w.await(placed.OrderID, sent):
			o.sent, o.accepted = sent, accepted
			return o, nil
		case <-ctx.Done():
			return outcome{}, ctx.Err()
		}
	}
}

// countSagas counts the sagas with status in the sagas read model, up to
// limit (negative: all of them).
func (s *sagaClient) countSagas(ctx context.Context, status string, limit int) (int, error) {
	n, after := 0, ""
	for {
		page := 500
		if limit >= 0 {
			page = max(min(limit-n, 500), 1)
		}
		q := url.Values{"status": {status}, "limit": {strconv.Itoa(page)}}
		if after != "" {
			q.Set("after", after)
		}
		code, body, err := s.do(ctx, http.MethodGet, s.sagas+"/api/sagas?"+q.Encode(), "")
		if err != nil {
			return 0, fmt.Errorf("list sagas: %w", err)
		}
		if code != http.StatusOK {
			return 0, fmt.Errorf("list sagas: %d %s", code, body)
		}
		var list struct {
			Items []json.RawMessage `json:"items"`
			Next  string            `json:"next"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return 0, fmt.Errorf("list sagas: %w", err)
		}
		n += len(list.Items)
		if list.Next == "" || (limit >= 0 && n >= limit) {
			return n, nil
		}
		after = list.Next
	}
}

// watcher learns when orders leave `pending` in the orders read model. It
// reads the list of confirmed orders, newest first, back to the oldest
// order it awaits: one request answers for every order in flight, where a
// GET per order would cost a request per order per poll. Orders awaited
// longer than listHorizon (a stuck or rejected order) are looked up one by
// one instead, so that they do not make every page long.
type watcher struct {
	s     *sagaClient
	every time.Duration

	mu      sync.Mutex
	pending map[string]*awaited
	wake    chan struct{}
	// estimate is how many rows the last poll found in its window: the
	// next poll's page size.
	estimate int

	polls, rows atomic.Int64
}

type awaited struct {
	sent time.Time
	ch   chan outcome
}

func newWatcher(s *sagaClient, every time.Duration) *watcher {
	return &watcher{s: s, every: every, pending: make(map[string]*awaited), wake: make(chan struct{}, 1), estimate: 64}
}

// await registers an order placed at sent; the channel delivers its
// outcome once.
func (w *watcher) await(id string, sent time.Time) <-chan outcome {
	a := &awaited{sent: sent, ch: make(chan outcome, 1)}
	w.mu.Lock()
	w.pending[id] = a
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return a.ch
}

func (w *watcher) awaited() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
}

func (w *watcher) stats() (polls, rows int64) { return w.polls.Load(), w.rows.Load() }

// settle delivers an order's outcome and stops awaiting it.
func (w *watcher) settle(id string, at time.Time, status string) {
	w.mu.Lock()
	a, ok := w.pending[id]
	delete(w.pending, id)
	w.mu.Unlock()
	if ok {
		a.ch <- outcome{at: at, status: status}
	}
}

// run polls until ctx ends.
func (w *watcher) run(ctx context.Context) {
	nextSlow := time.Now().Add(slowPoll)
	for ctx.Err() == nil {
		started := time.Now()
		w.mu.Lock()
		var oldest time.Time
		var old []string
		for id, a := range w.pending {
			switch {
			case started.Sub(a.sent) > listHorizon:
				old = append(old, id)
			case oldest.IsZero() || a.sent.Before(oldest):
				oldest = a.sent
			}
		}
		empty := len(w.pending) == 0
		w.mu.Unlock()
		if empty {
			select {
			case <-w.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		if !oldest.IsZero() {
			// A failed poll is tried again at the next tick; an order
			// that stays unseen ends up in the slow path, then times out.
			_ = w.pollList(ctx, oldest)
		}
		if len(old) > 0 && time.Now().After(nextSlow) {
			w.pollEach(ctx, old)
			nextSlow = time.Now().Add(slowPoll)
		}
		if err := backoff.Sleep(ctx, w.every-time.Since(started)); err != nil {
			return
		}
	}
}

// listedOrder is the part of a read-model order the watcher needs.
type listedOrder struct {
	OrderID   string    `json:"order_id"`
	Status    string    `json:"status"`
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
}

// pollList reads the confirmed orders created since oldest, newest first,
// and settles the awaited ones among them. Every order is created after
// its POST was sent, so a page that reaches an order created before oldest
// has covered every awaited order that is confirmed.
func (w *watcher) pollList(ctx context.Context, oldest time.Time) error {
	w.mu.Lock()
	limit := min(max(w.estimate+w.estimate/4+32, 32), 500)
	w.mu.Unlock()
	inWindow, after := 0, ""
	for {
		q := url.Values{"status": {"confirmed"}, "limit": {strconv.Itoa(limit)}}
		if after != "" {
			q.Set("after", after)
		}
		code, body, err := w.s.do(ctx, http.MethodGet, w.s.orders+"/api/orders?"+q.Encode(), "")
		at := time.Now()
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("list orders: %d %s", code, body)
		}
		var list struct {
			Items []listedOrder `json:"items"`
			Next  string        `json:"next"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return fmt.Errorf("list orders: %w", err)
		}
		w.polls.Add(1)
		w.rows.Add(int64(len(list.Items)))
		covered := false
		for _, o := range list.Items {
			if o.CreatedAt.Before(oldest) {
				covered = true
				break
			}
			inWindow++
			w.settle(o.OrderID, at, o.Status)
		}
		if covered || list.Next == "" {
			break
		}
		after, limit = list.Next, 500
	}
	w.mu.Lock()
	w.estimate = inWindow
	w.mu.Unlock()
	return nil
}

// pollEach looks up orders awaited longer than listHorizon one by one:
// a rejected order never shows in the list of confirmed ones. After giveUp
// an order counts as not confirmed.
func (w *watcher) pollEach(ctx context.Context, ids []string) {
	for _, id := range ids {
		code, body, err := w.s.do(ctx, http.MethodGet, w.s.orders+"/api/orders/"+id, "")
		at := time.Now()
		var o listedOrder
		if err == nil && code == http.StatusOK && json.Unmarshal(body, &o) == nil && o.Status != "" && o.Status != "pending" {
			status := o.Status
			if o.Reason != "" {
				status += " " + o.Reason
			}
			w.settle(id, at, status)
			continue
		}
		w.mu.Lock()
		a, ok := w.pending[id]
		w.mu.Unlock()
		if ok && at.Sub(a.sent) > giveUp {
			w.settle(id, at, "timeout")
		}
	}
}

// stack is an `orderflow dev` child process.
type stack struct {
	proc                     *childproc.Child
	done                     <-chan struct{}
	log                      *stackLog
	orders, inventory, sagas string
	// ordersAll are the URLs of every orders replica (one but on a
	// cluster), orders first.
	ordersAll []string
	// gateway is the gateway's URL; empty if the banner named none.
	gateway           string
	fsync, syncCommit string
	// adminURL is the superuser URL of the stack's PostgreSQL; empty for
	// a stack this run did not start.
	adminURL string
	// secret signs the tokens its gateway accepts; nil for a stack this
	// run did not start (the gateway phase then uses auth.DevSecret, as
	// `orderflow token` does).
	secret []byte
	// rateLimited says that the gateway runs with the rate limit this
	// run gave it (benchRateLimit), not one it does not know.
	rateLimited bool
}

var (
	// A cluster's banner names every replica: "orders-1", "orders-2".
	bannerServiceRE = regexp.MustCompile(`(?m)^\s+(orders|inventory|shipping|sagas)(?:-[0-9]+)?\s+(http://\S+)\s*$`)
	// The gateway's line goes on to say what it is for.
	bannerGatewayRE = regexp.MustCompile(`(?m)^\s+gateway\s+(https?://\S+)(?:\s.*)?$`)
	bannerPGRE      = regexp.MustCompile(`(?m)^\s+PostgreSQL\s+(postgres(?:ql)?://\S+)\s*$`)
)

// bannerURLs are the addresses the dev command's banner names. On a
// cluster's, orders, inventory and sagas are each service's first
// replica.
type bannerURLs struct {
	orders, inventory, sagas, gateway string
	// ordersAll lists every orders replica, in the banner's order.
	ordersAll []string
	// postgres is the superuser URL of the stack's PostgreSQL.
	postgres string
}

// parseBanner reads the service, gateway and PostgreSQL URLs from the
// dev command's banner. The orders, inventory and sagas URLs and
// PostgreSQL's are required; the gateway's is not (only the gateway
// phase needs it, and says so).
func parseBanner(banner string) (bannerURLs, error) {
	var b bannerURLs
	for _, m := range bannerServiceRE.FindAllStringSubmatch(banner, -1) {
		switch m[1] {
		case "orders":
			b.ordersAll = append(b.ordersAll, m[2])
			b.orders = cmp.Or(b.orders, m[2])
		case "inventory":
			b.inventory = cmp.Or(b.inventory, m[2])
		case "sagas":
			b.sagas = cmp.Or(b.sagas, m[2])
		}
	}
	if m := bannerGatewayRE.FindStringSubmatch(banner); m != nil {
		b.gateway = m[1]
	}
	if m := bannerPGRE.FindStringSubmatch(banner); m != nil {
		b.postgres = m[1]
	}
	if b.orders == "" || b.inventory == "" || b.sagas == "" || b.postgres == "" {
		return b, fmt.Errorf("the dev stack's banner lacks the orders, inventory or sagas URL or PostgreSQL's:\n%s", banner)
	}
	return b, nil
}

// runningStack is a stack someone else started at port base.
func runningStack(base int) *stack {
	u := func(off int) string { return fmt.Sprintf("http://127.0.0.1:%d", base+off) }
	return &stack{orders: u(1), ordersAll: []string{u(1)}, inventory: u(2), sagas: u(4), gateway: u(0)}
}

// startStack runs `binary dev` (with --cluster if cluster) on free ports
// with its own PostgreSQL and NATS, waits for its banner and checks that
// PostgreSQL runs durable.
func startStack(ctx context.Context, binary string, cluster bool) (*stack, error) {
	var lastErr error
	// Another process may take a port between our check and the stack's
	// bind; the dev command then says so, and a different base is tried.
	for range 3 {
		base, err := freePortBase(stackPorts(cluster))
		if err != nil {
			return nil, err
		}
		st, err := startStackAt(ctx, binary, base, cluster)
		if err == nil {
			return st, nil
		}
		lastErr = err
		if ctx.Err() != nil || !strings.Contains(err.Error(), "is not free") {
			break
		}
	}
	return nil, lastErr
}

// stackPorts is how many consecutive ports from its port base a stack
// takes: the gateway and the four services, and on a cluster the second
// replicas' at base+11..base+14.
func stackPorts(cluster bool) int {
	if cluster {
		return 15
	}
	return 5
}

func startStackAt(ctx context.Context, binary string, base int, cluster bool) (*stack, error) {
	secret, err := newStackSecret()
	if err != nil {
		return nil, err
	}
	args := []string{"dev", "--port-base", strconv.Itoa(base)}
	timeout := stackStartTimeout
	if cluster {
		// Three NATS nodes electing their leaders and twice the
		// processes take longer on two cores.
		args = append(args, "--cluster")
		timeout *= 2
	}
	cmd := exec.Command(binary, args...)
	// The stack starts its own PostgreSQL and NATS, as `make run` does.
	// Its gateway gets the benchmark's token secret and rate limit
	// (gatewayEnv), not whatever the caller's environment holds.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		for _, k := range append([]string{"DATABASE_URL=", "NATS_URL=", "ADDR="}, gatewayEnvKeys...) {
			if strings.HasPrefix(kv, k) {
				return true
			}
		}
		return false
	})
	cmd.Env = append(cmd.Env, gatewayEnv(secret)...)
	log := newStackLog()
	cmd.Stdout, cmd.Stderr = log, log
	// The kernel stops the stack should the benchmark die.
	cmd.SysProcAttr = childproc.SysProcAttr(nil, syscall.SIGTERM)
	cmd.WaitDelay = 5 * time.Second
	proc, err := childproc.Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start the dev stack: %w", err)
	}
	st := &stack{proc: proc, done: proc.Done(), log: log, secret: secret, rateLimited: true}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-log.ready:
	case <-st.done:
		return nil, fmt.Errorf("the dev stack exited (%v) before it was ready; its last lines:\n%s", st.err(), log.tailString())
	case <-timer.C:
		_ = st.stop()
		return nil, fmt.Errorf("the dev stack was not ready within %s; its last lines:\n%s", timeout, log.tailString())
	case <-ctx.Done():
		_ = st.stop()
		return nil, ctx.Err()
	}
	urls, err := parseBanner(log.bannerString())
	if err != nil {
		_ = st.stop()
		return nil, err
	}
	st.orders, st.inventory, st.sagas, st.gateway = urls.orders, urls.inventory, urls.sagas, urls.gateway
	st.ordersAll = urls.ordersAll
	st.adminURL = urls.postgres
	if err := st.checkDurable(ctx, urls.postgres); err != nil {
		_ = st.stop()
		return nil, err
	}
	return st, nil
}

// checkDurable reads fsync and synchronous_commit from the stack's
// PostgreSQL: the figures are those of a durable stack or none.
func (st *stack) checkDurable(ctx context.Context, adminURL string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to the stack's PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, "SHOW fsync").Scan(&st.fsync); err != nil {
		return fmt.Errorf("SHOW fsync: %w", err)
	}
	if err := conn.QueryRow(ctx, "SHOW synchronous_commit").Scan(&st.syncCommit); err != nil {
		return fmt.Errorf("SHOW synchronous_commit: %w", err)
	}
	if st.fsync != "on" || st.syncCommit == "off" {
		return fmt.Errorf("the stack's PostgreSQL runs with fsync=%s synchronous_commit=%s; the saga phase measures a durable stack", st.fsync, st.syncCommit)
	}
	return nil
}

// analyze runs ANALYZE in every database of the stack's PostgreSQL.
//
// A fresh stack's tables are empty when the services prepare their
// statements, and autovacuum first analyzes a table a minute or more
// later; until then PostgreSQL plans, and caches, sequential scans for
// lookups by key. That is the first minute of a stack, not its steady
// state, which is what the figures are about.
func (st *stack) analyze(ctx context.Context) error {
	if st.adminURL == "" {
		return nil
	}
	conn, err := pgx.Connect(ctx, st.adminURL)
	if err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate AND datname <> 'postgres'")
	if err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	u, err := url.Parse(st.adminURL)
	if err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	for _, db := range dbs {
		du := *u
		du.Path = "/" + db
		c, err := pgx.Connect(ctx, du.String())
		if err != nil {
			return fmt.Errorf("analyze %s: %w", db, err)
		}
		_, err = c.Exec(ctx, "ANALYZE")
		c.Close(context.Background())
		if err != nil {
			return fmt.Errorf("analyze %s: %w", db, err)
		}
	}
	return nil
}

func (st *stack) err() error {
	if st.proc == nil {
		return nil
	}
	select {
	case <-st.done:
		return st.proc.Err()
	default:
		return nil
	}
}

// stop asks the dev command to stop, as Ctrl-C does, so that it stops its
// services and PostgreSQL in order and removes its data; after a minute it
// kills the process group.
func (st *stack) stop() error {
	if st.proc == nil {
		return nil
	}
	_ = st.proc.Signal(syscall.SIGINT)
	timer := time.NewTimer(time.Minute)
	defer timer.Stop()
	select {
	case <-st.done:
	case <-timer.C:
		_ = st.proc.SignalGroup(syscall.SIGKILL)
		<-st.done
		return fmt.Errorf("the dev stack did not stop within a minute and was killed; its last lines:\n%s", st.log.tailString())
	}
	if err := st.proc.Err(); err != nil {
		return fmt.Errorf("the dev stack exited with %v; its last lines:\n%s", err, st.log.tailString())
	}
	return nil
}

// stackLog keeps the dev command's output up to its banner, to read the
// URLs from, and its last lines, for errors. The services log every
// request, so the rest is dropped as it comes.
type stackLog struct {
	mu      sync.Mutex
	partial []byte
	banner  strings.Builder
	tail    []string
	next    int
	// ready is closed once the banner is in, up to its "Try" line.
	ready      chan struct{}
	sawMarker  bool
	bannerDone bool
}

const stackLogTail = 40

func newStackLog() *stackLog {
	return &stackLog{ready: make(chan struct{}), tail: make([]string, 0, stackLogTail)}
}

func (l *stackLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.line(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	// The slice's front is consumed; start afresh once it is all consumed
	// so that it does not grow without bound.
	if len(l.partial) == 0 {
		l.partial = l.partial[:0:0]
	}
	return len(p), nil
}

func (l *stackLog) line(s string) {
	if len(l.tail) < stackLogTail {
		l.tail = append(l.tail, s)
	} else {
		l.tail[l.next] = s
		l.next = (l.next + 1) % stackLogTail
	}
	if l.bannerDone {
		return
	}
	l.banner.WriteString(s)
	l.banner.WriteByte('\n')
	if strings.HasPrefix(s, devReadyMarker) {
		l.sawMarker = true
	}
	// The banner's URLs and tokens follow the marker, up to the line
	// that starts its examples ("Try:", now "Try, through the gateway
	// ...:").
	if l.sawMarker && strings.HasPrefix(strings.TrimSpace(s), "Try") {
		l.bannerDone = true
		close(l.ready)
	}
}

func (l *stackLog) bannerString() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.banner.String()
}

func (l *stackLog) tailString() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := append(slices.Clone(l.tail[l.next:]), l.tail[:l.next]...)
	return strings.Join(lines, "\n")
}

// freePortBase finds n free consecutive ports N..N+n-1 below the kernel's
// ephemeral range, where no outgoing connection or port-0 listener takes
// one between this check and the stack's bind.
func freePortBase(n int) (int, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 10000+n+1000 {
				low = v
			}
		}
	}
	for range 100 {
		base := 10000 + rand.IntN(low-10000-n)
		free := true
		for p := base; p < base+n && free; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				free = false
				continue
			}
			l.Close()
		}
		if free {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no %d consecutive free ports for the dev stack", n)
}
