// Package sim is a deterministic simulation of the saga protocol: the saga
// engine (package sagas) and the command handling of the orders, inventory
// and shipping services (package commands, on in-memory event stores) run
// under one seeded scheduler that owns every message and timer. The
// network delays, reorders, duplicates and loses deliveries; any
// participant may crash (losing its memory, keeping its store) and restart
// at any step; time is virtual. After the run has gone quiet, Run checks
// the invariants the chaos test checks on the real stack (every saga
// terminal, no stock leaked or oversold, one live shipment per confirmed
// order and none for a rejected one, every order agreeing with its saga).
//
// The same seed gives the same schedule and the same outcome, so a seed
// that fails replays exactly. The package lives under services/internal
// because it needs the commands package and the in-memory store adapter,
// which sagas/ may not import (docs/adr/0140-deterministic-simulation.md).
package sim

import (
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/commands/commandstest"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/sagas"
)

// bug selects a defect planted on purpose, so that a test can show the
// simulation finds it (export_test.go is the only way to choose one). The
// defects live only in the simulated participants.
type bug int

const (
	// noBug runs the protocol as the coordinator implements it.
	noBug bug = iota
	// bugAckBeforeAppend makes the simulated coordinator acknowledge an
	// event before its decision is appended to the saga stream, so that a
	// crash in between loses the event for good.
	bugAckBeforeAppend
)

// options are the switches only the tests turn (export_test.go).
type options struct {
	// bug plants a defect.
	bug bug
}

// Config is one simulation run.
type Config struct {
	// Seed fixes everything random in the run.
	Seed uint64
	// Trace, when set, receives one line per scheduled step.
	Trace func(string)
}

// Result is what a run saw.
type Result struct {
	Seed uint64
	// Steps is the number of scheduler steps taken.
	Steps int
	// Orders, Crashes and Deliveries count the workload and the faults.
	Orders, Crashes, Deliveries int
	// Timeouts counts the attempts and steps that timed out, Parked the
	// sagas parked as failed, Retried the operator's retries: evidence
	// that a run went down the slow paths.
	Timeouts, Parked, Retried int
	// Outcomes counts the orders by final status ("shipped", "confirmed",
	// "cancelled", "rejected/<reason>").
	Outcomes map[string]int
	// Violations lists every broken invariant; empty means the run passed.
	Violations []string
}

// Failed reports whether an invariant was broken.
func (r Result) Failed() bool { return len(r.Violations) > 0 }

// ErrNoQuiescence: the run did not go quiet within the step budget.
var ErrNoQuiescence = errors.New("simulation did not go quiet")

// errCrashed is how a participant's store reports that the process died
// in the middle of a command: the appends before it took effect, the rest
// did not.
var errCrashed = errors.New("simulated crash")

// Knobs of the fault model. The horizon ends the faults so that every saga
// can finish through retries and timeouts.
const (
	horizon      = 30 * time.Second
	ackWait      = 2 * time.Second
	pDrop        = 0.05
	pDuplicate   = 0.05
	pCrashPoint  = 0.03
	pMidCommand  = 0.03
	pOutage      = 0.02
	maxSteps     = 200_000
	operatorRuns = 3
	// notStartedDeliveries bounds the deliveries of an outside event
	// whose saga has not started (the coordinator's
	// NotStartedRedeliveries).
	notStartedDeliveries = 30
)

// epoch is the virtual time a run starts at.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Participants.
const (
	pCoordinator = iota
	pOrders
	pInventory
	pShipping
	nParticipants
)

var participantNames = [nParticipants]string{"coordinator", "orders", "inventory", "shipping"}

// item is one scheduled step: it runs fn at virtual time at; seq breaks
// ties in the order the items were scheduled.
type item struct {
	at   time.Time
	seq  uint64
	what string
	fn   func()
}

type queue []*item

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*item)) }
func (q *queue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

// faultStore is a participant's durable store; armed, it fails an append
// as a process dying mid-command would.
type faultStore struct {
	*commandstest.Store
	// failAt counts the appends still allowed; -1 disarms.
	failAt int
}

func (s *faultStore) Append(ctx context.Context, stream string, expected domain.ExpectedVersion, evs []domain.Envelope) (domain.AppendResult, error) {
	if s.failAt == 0 {
		s.failAt = -1
		return domain.AppendResult{}, errCrashed
	}
	if s.failAt > 0 {
		s.failAt--
	}
	return s.Store.Append(ctx, stream, expected, evs)
}

// participant is one process: a durable store, and what it keeps in
// memory while it runs.
type participant struct {
	id    int
	store *faultStore
	up    bool
	// life counts the incarnations; timers of an earlier one are stale.
	life int
	// relayed is the relay's durable checkpoint (a global position).
	relayed uint64
	// relayDue is set while a relay pass is scheduled.
	relayDue bool

	// Service handlers (nil for the coordinator and while down).
	orders    *commands.Orders
	inventory *commands.Inventory
	shipping  *commands.Shipping
	bus       *commands.Bus

	// Coordinator memory: the saga states kept between decisions.
	cache map[string]*sagaEntry
}

type sagaEntry struct {
	st      *sagas.State
	version int64
}

// world is one run.
type world struct {
	cfg  Config
	opts options
	ctx  context.Context
	rng  *rand.Rand
	now  time.Time
	seq  uint64
	q    queue
	defs *sagas.Definitions
	def  *sagas.Definition
	sreg *domain.Registry // saga events
	dreg *domain.Registry // the services' events
	// consumes holds the event types the coordinator subscribes to.
	consumes map[string]bool
	// outside holds the types that reach a saga from outside (AbortOn,
	// a step's After): only they may come before the saga starts.
	outside map[string]bool
	parts   [nParticipants]*participant
	// deadlines is the coordinator's durable deadline table, written with
	// each append (as the real one is, in the same transaction).
	deadlines map[string]time.Time
	// failed holds the sagas parked as failed, as the coordinator's
	// metric and list show them to an operator.
	failed map[string]bool
	// decoded memoizes the decoding of the saga store's events.
	decoded map[string]any
	skus    []skuPlan
	orders  []*orderPlan
	res     Result
}

// Run simulates one seed and checks the invariants. The error is for a
// simulation that could not run at all (a broken harness), not for a
// broken invariant, which Result.Violations lists.
func Run(ctx context.Context, cfg Config) (Result, error) {
	return run(ctx, cfg, options{})
}

func run(ctx context.Context, cfg Config, opts options) (Result, error) {
	w := &world{
		cfg:       cfg,
		opts:      opts,
		ctx:       ctx,
		rng:       rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		now:       epoch,
		defs:      sagas.DefaultDefinitions(sagas.DefaultTiming()),
		sreg:      sagas.NewRegistry(),
		dreg:      events.NewRegistry(),
		consumes:  make(map[string]bool),
		outside:   make(map[string]bool),
		deadlines: make(map[string]time.Time),
		failed:    make(map[string]bool),
		decoded:   make(map[string]any),
		res:       Result{Seed: cfg.Seed, Outcomes: make(map[string]int)},
	}
	def, err := w.defs.Latest(sagas.OrderFulfillment)
	if err != nil {
		return w.res, fmt.Errorf("sim: %w", err)
	}
	w.def = def
	for _, t := range w.defs.Consumes() {
		w.consumes[t] = true
	}
	for _, d := range w.defs.All() {
		for _, a := range d.AbortOn {
			w.outside[a.Event] = true
		}
		for _, s := range d.Steps {
			if s.After != "" {
				w.outside[s.After] = true
			}
		}
	}
	for i := range w.parts {
		w.parts[i] = &participant{id: i, store: &faultStore{Store: commandstest.NewStore(), failAt: -1}}
		w.start(i)
	}
	if err := w.workload(); err != nil {
		return w.res, err
	}
	w.scheduleKill()
	if err := w.loop(); err != nil {
		return w.res, err
	}
	// The operator: a saga parked as failed is retried, as
	// POST /api/sagas/{id}/retry would, and the run goes on.
	for range operatorRuns {
		if !w.operatorRetry() {
			break
		}
		if err := w.loop(); err != nil {
			return w.res, err
		}
	}
	w.check()
	return w.res, nil
}

// loop runs the scheduled steps until none is left.
func (w *world) loop() error {
	for w.q.Len() > 0 {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		if w.res.Steps >= maxSteps {
			return fmt.Errorf("seed %d: %d steps at %s: %w", w.cfg.Seed, w.res.Steps, w.now.Sub(epoch), ErrNoQuiescence)
		}
		it := heap.Pop(&w.q).(*item)
		w.now = it.at
		w.res.Steps++
		if w.cfg.Trace != nil {
			w.cfg.Trace(fmt.Sprintf("%10s %s", w.now.Sub(epoch), it.what))
		}
		it.fn()
	}
	return nil
}

// at schedules fn after d.
func (w *world) at(d time.Duration, what string, fn func()) {
	w.seq++
	heap.Push(&w.q, &item{at: w.now.Add(d), seq: w.seq, what: what, fn: fn})
}

// chaos reports whether faults may still happen.
func (w *world) chaos() bool { return w.now.Before(epoch.Add(horizon)) }

// chance draws a fault of probability p, only before the horizon. It
// draws from the generator either way, so that a run's schedule does not
// depend on which faults are switched on.
func (w *world) chance(p float64) bool {
	return w.rng.Float64() < p && w.chaos()
}

// between returns a duration in [lo, hi).
func (w *world) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(w.rng.Int64N(int64(hi-lo)))
}

// delay is how long a message takes on the network: mostly milliseconds,
// sometimes a second, rarely longer than a step's timeout.
func (w *world) delay() time.Duration {
	r := w.rng.Float64()
	switch {
	case !w.chaos() || r < 0.85:
		return w.between(time.Millisecond, 20*time.Millisecond)
	case r < 0.97:
		return w.between(20*time.Millisecond, time.Second)
	default:
		return w.between(time.Second, 8*time.Second)
	}
}

// newID returns a UUID drawn from the run's generator.
func (w *world) newID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], w.rng.Uint64())
	binary.LittleEndian.PutUint64(b[8:], w.rng.Uint64())
	u, _ := uuid.FromBytes(b[:])
	u[6] = (u[6] & 0x0f) | 0x40
	u[8] = (u[8] & 0x3f) | 0x80
	return u.String()
}

// start (re)starts participant i: new handlers on its old store, an empty
// memory; the coordinator sets its deadline timers again from its table,
// and the relay resumes from its checkpoint.
func (w *world) start(i int) {
	p := w.parts[i]
	p.up = true
	p.life++
	p.relayDue = false
	p.store.failAt = -1
	cfg := commands.Config{}
	switch i {
	case pOrders:
		p.orders = commands.NewOrders(p.store, cfg)
		p.bus = commands.NewOrdersBus(p.orders)
	case pInventory:
		p.inventory = commands.NewInventory(p.store, cfg)
		p.bus = commands.NewInventoryBus(p.inventory)
	case pShipping:
		p.shipping = commands.NewShipping(p.store, cfg)
		p.bus = commands.NewShippingBus(p.shipping)
	case pCoordinator:
		p.cache = make(map[string]*sagaEntry)
		for _, o := range w.orders {
			if at, ok := w.deadlines[o.sagaID]; ok {
				w.deadlineTimer(o.sagaID, at)
			}
		}
	}
	w.relaySoon(i)
}

// crash kills participant i: its memory is gone, its store stays; a
// restart follows after a while.
func (w *world) crash(i int, why string) {
	p := w.parts[i]
	if !p.up {
		return
	}
	w.res.Crashes++
	p.up = false
	p.life++
	p.orders, p.inventory, p.shipping, p.bus, p.cache = nil, nil, nil, nil, nil
	p.store.failAt = -1
	down := w.between(10*time.Millisecond, 2*time.Second)
	if w.chance(pOutage) {
		// Now and then a process stays down long enough for steps to
		// time out after their retries and compensations to park. For
		// the orders service that means a confirm_order that times out
		// and runs late, after the saga compensated (the defect this
		// simulation found; docs/adr/0140).
		down = w.between(10*time.Second, 45*time.Second)
	}
	w.at(down, "restart "+participantNames[i]+" (crashed "+why+")", func() { w.start(i) })
}

// scheduleKill kills a random participant now and then, until the horizon.
func (w *world) scheduleKill() {
	w.at(w.between(time.Second, 5*time.Second), "kill", func() {
		i := w.rng.IntN(nParticipants)
		if !w.chaos() {
			return
		}
		w.crash(i, "by the killer")
		w.scheduleKill()
	})
}

// relaySoon schedules a relay pass of participant i.
func (w *world) relaySoon(i int) {
	p := w.parts[i]
	if p.relayDue || !p.up {
		return
	}
	p.relayDue = true
	life := p.life
	w.at(w.between(time.Millisecond, 10*time.Millisecond), "relay "+participantNames[i], func() {
		if p.life != life || !p.up {
			return
		}
		p.relayDue = false
		w.relay(i)
	})
}

// relay publishes what participant i appended since its checkpoint: the
// coordinator's CommandIssued events to the services, a service's events
// to the coordinator (those it subscribes to). The checkpoint is saved
// after publishing, so a crash in between publishes again.
func (w *world) relay(i int) {
	p := w.parts[i]
	evs, err := p.store.ReadAll(w.ctx, p.relayed, 0, eventstore.Filter{})
	if err != nil {
		w.violate("relay %s: %v", participantNames[i], err)
		return
	}
	last := p.relayed
	for _, e := range evs {
		last = e.Position
		switch {
		case i == pCoordinator && e.Type == "CommandIssued":
			to, err := w.target(e)
			if err != nil {
				w.violate("relay: %v", err)
				continue
			}
			w.publish(to, e)
		case i != pCoordinator && w.consumes[e.Type]:
			w.publish(pCoordinator, e)
		}
	}
	if w.chance(pCrashPoint) {
		w.crash(i, "before the relay's checkpoint")
		return
	}
	p.relayed = last
}

// target is the service a CommandIssued event goes to.
func (w *world) target(e domain.Envelope) (int, error) {
	v, err := w.decodeSaga(e)
	if err != nil {
		return 0, err
	}
	c, ok := v.(sagas.CommandIssued)
	if !ok {
		return 0, fmt.Errorf("%s is %T", e.ID, v)
	}
	switch c.Context {
	case sagas.ContextOrders:
		return pOrders, nil
	case sagas.ContextInventory:
		return pInventory, nil
	case sagas.ContextShipping:
		return pShipping, nil
	}
	return 0, fmt.Errorf("command %s for unknown context %q", c.CommandID, c.Context)
}

// publish hands e to the stream that delivers it to participant to: the
// stream keeps it until it is acknowledged; the network may lose a
// delivery (it comes again after the ack wait) or deliver it twice.
func (w *world) publish(to int, e domain.Envelope) {
	w.deliverAfter(w.delay(), to, e, 1)
	if w.chance(pDuplicate) {
		w.deliverAfter(w.delay(), to, e, 1)
	}
}

func (w *world) deliverAfter(d time.Duration, to int, e domain.Envelope, n int) {
	w.at(d, fmt.Sprintf("deliver %s %s #%d to %s", e.Type, short(e.ID), n, participantNames[to]), func() {
		w.res.Deliveries++
		if !w.parts[to].up || w.chance(pDrop) {
			w.deliverAfter(ackWait, to, e, n+1)
			return
		}
		var acked bool
		if to == pCoordinator {
			acked = w.coordinate(e, n)
		} else {
			acked = w.serve(to, e, n)
		}
		if !acked {
			w.deliverAfter(ackWait, to, e, n+1)
		}
	})
}

// violate records a broken invariant.
func (w *world) violate(format string, args ...any) {
	w.res.Violations = append(w.res.Violations, fmt.Sprintf(format, args...))
}

func short(id string) string {
	if i := strings.IndexByte(id, '-'); i > 0 {
		return id[:i]
	}
	return id
}
