package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/orderflow/orderflow/internal/backoff"
)

// The dev stack restarts a child that exits, waiting firstRestartDelay
// after its first exit within exitWindow and twice as long after each
// further one (at most maxRestartDelay). The maxExits-th exit within
// exitWindow stops the stack: a child that keeps dying has a cause that a
// restart does not remove, and a stack that looks alive while one of its
// services is not would mislead whoever uses it.
const (
	maxExits          = 5
	exitWindow        = time.Minute
	firstRestartDelay = 100 * time.Millisecond
	maxRestartDelay   = 5 * time.Second
	// restartTailLines is how many of its last log lines a restarted
	// child's exit shows; giving up shows every line kept.
	restartTailLines = 10
)

// restartPolicy counts one child's exits and says how long to wait before
// the next restart.
type restartPolicy struct {
	exits []time.Time // within exitWindow of the last one, oldest first
	// max is the exit that gives up; 0 means maxExits. The chaos command
	// raises it, since it kills children on purpose.
	max int
}

// limit is the number of exits within exitWindow that gives up.
func (p *restartPolicy) limit() int { return cmp.Or(p.max, maxExits) }

// exited records an exit at now and returns the number of exits within
// exitWindow, this one included, and the delay before the restart; giveUp
// is set when that number reaches the limit.
func (p *restartPolicy) exited(now time.Time) (recent int, delay time.Duration, giveUp bool) {
	kept := p.exits[:0]
	for _, t := range p.exits {
		if now.Sub(t) < exitWindow {
			kept = append(kept, t)
		}
	}
	p.exits = append(kept, now)
	recent = len(p.exits)
	if recent >= p.limit() {
		return recent, 0, true
	}
	delay = firstRestartDelay
	for i := 1; i < recent && delay < maxRestartDelay; i++ {
		delay *= 2
	}
	return recent, min(delay, maxRestartDelay), false
}

// gate is open while what it stands for runs: services wait for the
// private PostgreSQL before a restart, since one started without it would
// only fail and use up its restarts.
type gate struct {
	mu     sync.Mutex
	isOpen bool
	opened chan struct{} // closed while the gate is open
}

func newGate() *gate {
	g := &gate{isOpen: true, opened: make(chan struct{})}
	close(g.opened)
	return g
}

func (g *gate) set(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case open && !g.isOpen:
		close(g.opened)
	case !open && g.isOpen:
		g.opened = make(chan struct{})
	}
	g.isOpen = open
}

func (g *gate) open() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.isOpen
}

// wait returns once the gate is open, or ctx's error.
func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	opened := g.opened
	g.mu.Unlock()
	select {
	case <-opened:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unit is one supervised child: a service or the private PostgreSQL.
type unit struct {
	name string
	tail *lineTail
	// done is closed when the running incarnation has ended; why then
	// says how (exit status or signal).
	done func() <-chan struct{}
	why  func() string
	pid  func() int
	// restart starts a new incarnation and returns once it serves, or
	// why not; then nothing of that incarnation runs, unless ctx ended.
	restart func(ctx context.Context) error
	// needs, when set, must be open before a restart.
	needs *gate
	// provides, when set, is open while the unit is up.
	provides *gate

	policy restartPolicy
}

// The states a child is in, as the status output shows them.
const (
	stateUp       = "up"
	stateDown     = "down"                 // exited; restart pending
	stateWaiting  = "waiting for postgres" // exited; restarts once PostgreSQL is up
	stateStarting = "starting"             // restarted, not serving yet
	stateFailed   = "failed"               // kept dying; the stack stops
)

// childStatus is what the status output says about one child.
type childStatus struct {
	name       string
	state      string
	pid        int
	since      time.Time // when it entered state
	restarts   int
	lastExit   string // why its last incarnation ended; empty while none did
	lastExitAt time.Time
}

// statusBoard holds every child's status and prints the status line
// whenever a state or a restart count changes.
type statusBoard struct {
	mu       sync.Mutex
	con      *console
	started  time.Time
	children []*childStatus
	lastLine string
}

func newStatusBoard(con *console) *statusBoard {
	return &statusBoard{con: con, started: time.Now()}
}

func (b *statusBoard) add(name string, pid int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.children = append(b.children, &childStatus{name: name, state: stateUp, pid: pid, since: time.Now()})
}

// update applies f to the named child's status and prints the status line
// if it changed. Printing under the board's lock keeps the lines in the
// order of the changes.
func (b *statusBoard) update(name string, f func(*childStatus)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.children {
		if c.name == name {
			f(c)
		}
	}
	if line := b.line(); line != b.lastLine {
		b.lastLine = line
		b.con.Printf("%s\n", line)
	}
}

// line is the one-line status: "status: postgres up (restarts 0) | ...".
// The caller holds mu.
func (b *statusBoard) line() string {
	parts := make([]string, len(b.children))
	for i, c := range b.children {
		parts[i] = fmt.Sprintf("%s %s (restarts %d)", c.name, c.state, c.restarts)
	}
	return "status: " + strings.Join(parts, " | ")
}

// table is the status table that SIGUSR1 asks for.
func (b *statusBoard) table(now time.Time) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out strings.Builder
	fmt.Fprintf(&out, "\nstatus of the dev stack (pid %d, up %s):\n", os.Getpid(), now.Sub(b.started).Round(time.Second))
	w := tabwriter.NewWriter(&out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  CHILD\tSTATE\tPID\tFOR\tRESTARTS\tLAST EXIT")
	for _, c := range b.children {
		last := "-"
		if c.lastExit != "" {
			last = fmt.Sprintf("%s, %s ago", c.lastExit, now.Sub(c.lastExitAt).Round(time.Second))
		}
		pid := "-"
		if c.state == stateUp || c.state == stateStarting {
			pid = fmt.Sprint(c.pid)
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%d\t%s\n", c.name, c.state, pid, now.Sub(c.since).Round(time.Second), c.restarts, last)
	}
	w.Flush()
	out.WriteString("\n")
	return out.String()
}

// supervisor restarts the units that exit until its context ends or one of
// them keeps dying.
type supervisor struct {
	con    *console
	board  *statusBoard
	units  []*unit
	failed chan *keepsDyingError // one send per unit at most
}

// keepsDyingError stops the stack: a child exited its limit of times within
// exitWindow.
type keepsDyingError struct {
	name  string
	exits int
	why   string // how the last incarnation ended
	tail  string // the child's last log lines, indented
}

func (e *keepsDyingError) summary() string {
	return fmt.Sprintf("%s keeps dying: %d exits within %s, the last: %s", e.name, e.exits, exitWindow, e.why)
}

func (e *keepsDyingError) Error() string {
	return e.summary() + "; its last log lines:\n" + e.tail
}

func newSupervisor(con *console) *supervisor {
	return &supervisor{con: con, board: newStatusBoard(con)}
}

func (s *supervisor) add(u *unit) {
	s.units = append(s.units, u)
	s.board.add(u.name, u.pid())
}

// run supervises until ctx ends (nil: a requested stop) or a unit keeps
// dying (an error that names it, says why and shows its last log lines).
// A value on statusRequests prints the status table. Every unit's watcher
// has ended when run returns, so the caller may stop the children.
func (s *supervisor) run(ctx context.Context, statusRequests <-chan os.Signal) error {
	s.failed = make(chan *keepsDyingError, len(s.units))
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	for _, u := range s.units {
		wg.Go(func() { s.watch(wctx, u) })
	}
	s.board.update("", func(*childStatus) {}) // the first status line
	for {
		select {
		case <-ctx.Done():
			s.con.Printf("shutting down...\n")
			return nil
		case err := <-s.failed:
			// The error, log lines included, is the command's last word.
			s.con.Printf("%s; shutting down...\n", err.summary())
			return err
		case <-statusRequests:
			s.con.Printf("%s", s.board.table(time.Now()))
		}
	}
}

// watch restarts u each time it exits, until ctx ends or u keeps dying.
func (s *supervisor) watch(ctx context.Context, u *unit) {
	for {
		select {
		case <-u.done():
		case <-ctx.Done():
			return
		}
		exited := time.Now()
		why := u.why()
		for {
			if u.provides != nil {
				u.provides.set(false)
			}
			now := time.Now()
			recent, delay, giveUp := u.policy.exited(now)
			s.board.update(u.name, func(c *childStatus) {
				c.state, c.since, c.lastExit, c.lastExitAt = stateDown, now, why, now
				if giveUp {
					c.state = stateFailed
				}
			})
			if giveUp {
				s.failed <- &keepsDyingError{name: u.name, exits: recent, why: why, tail: u.tail.String()}
				return
			}
			s.con.Printf("%s exited (%s); restarting it in %s (exit %d within %s; the stack stops at %d); its last log lines:\n%s\n",
				u.name, why, delay, recent, exitWindow, u.policy.limit(), u.tail.Last(restartTailLines))
			if backoff.Sleep(ctx, delay) != nil {
				return
			}
			if u.needs != nil && !u.needs.open() {
				s.board.update(u.name, func(c *childStatus) { c.state, c.since = stateWaiting, time.Now() })
				if u.needs.wait(ctx) != nil {
					return
				}
			}
			s.board.update(u.name, func(c *childStatus) { c.state, c.since, c.restarts = stateStarting, time.Now(), c.restarts+1 })
			err := u.restart(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				break
			}
			// The whole message (a server log, say) is in the child's
			// output already; its first line says what happened.
			why, _, _ = strings.Cut(err.Error(), "\n")
		}
		if u.provides != nil {
			u.provides.set(true)
		}
		pid := u.pid()
		s.board.update(u.name, func(c *childStatus) { c.state, c.since, c.pid = stateUp, time.Now(), pid })
		s.con.Printf("%s is up again (pid %d), %s after it exited\n", u.name, pid, time.Since(exited).Round(time.Millisecond))
	}
}

// supervise keeps the stack running: it restarts a child that exits (see
// restartPolicy) until ctx ends or a child keeps dying.
func (d *devStack) supervise(ctx context.Context) error {
	s := newSupervisor(d.con)
	var pgUp *gate
	if d.pg != nil {
		pgUp = newGate()
		s.add(d.postgresUnit(pgUp))
	}
	for _, n := range d.natsNodes {
		s.add(n.unit(nil))
	}
	for _, p := range d.children {
		needs := pgUp
		if p.name == gatewayName {
			needs = nil // it has no database; it answers 503 while a service is down
		}
		s.add(p.unit(needs))
	}
	for _, u := range s.units {
		u.policy.max = d.opts.maxExits
	}
	return s.run(ctx, d.statusRequests)
}

// postgresUnit restarts the private PostgreSQL on its data directory and
// port, so that the URLs the services hold stay valid; their pools
// reconnect on their own.
func (d *devStack) postgresUnit(up *gate) *unit {
	return &unit{
		name:     "postgres",
		tail:     d.pgTail,
		done:     d.pg.Done,
		why:      func() string { return exitReason(d.pg.Err()) },
		pid:      d.pg.PID,
		restart:  d.pg.Restart,
		provides: up,
	}
}

// unit supervises the service; a restart waits for pgUp when it is set.
func (p *serviceProc) unit(pgUp *gate) *unit {
	return &unit{
		name:  p.name,
		tail:  p.tail,
		done:  func() <-chan struct{} { return p.child().Done() },
		why:   func() string { return exitReason(p.child().Err()) },
		pid:   func() int { return p.child().Pid() },
		needs: pgUp,
		restart: func(ctx context.Context) error {
			if err := p.spawn(); err != nil {
				return err
			}
			err := p.waitServing(ctx, time.Now().Add(healthTimeout))
			switch {
			case err == nil || ctx.Err() != nil:
			case p.exited():
				err = errors.New(exitReason(p.child().Err()) + " while starting")
			default:
				// One that does not serve in time is as good as dead.
				_ = p.child().SignalGroup(syscall.SIGKILL)
				<-p.child().Done()
			}
			return err
		},
	}
}

// exited reports whether the running incarnation has exited.
func (p *serviceProc) exited() bool {
	select {
	case <-p.child().Done():
		return true
	default:
		return false
	}
}

// waitServing polls the child's probe (the service's GET /healthz, unless
// probe is set) until it succeeds. It fails when the child exits, ctx ends
// or deadline passes first.
func (p *serviceProc) waitServing(ctx context.Context, deadline time.Time) error {
	what, probe := p.probeWhat, p.probe
	if probe == nil {
		what, probe = p.healthz()
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("did not answer %s within %s (last: %v)", what, healthTimeout, err)
		}
		select {
		case <-p.child().Done():
			return fmt.Errorf("exited while starting (%s)", exitReason(p.child().Err()))
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// healthz is the default probe: GET /healthz answers 200.
func (p *serviceProc) healthz() (string, func(ctx context.Context) error) {
	scheme, host, client := "http", "127.0.0.1", p.client
	if p.scheme != "" {
		scheme, host = p.scheme, "localhost"
	}
	if client == nil {
		client = &http.Client{Timeout: time.Second}
	}
	health := fmt.Sprintf("%s://%s:%d/healthz", scheme, host, p.port)
	return "GET " + health, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, health, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
}

// exitReason says how a child ended: "exit status 1", "signal: killed".
func exitReason(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exit status 0"
	case errors.As(err, &ee):
		return ee.String()
	default:
		return err.Error()
	}
}
