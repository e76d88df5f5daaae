package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// The kinds of process a Target may be; only these are killed.
const (
	KindService     = "service"
	KindCoordinator = "coordinator"
	KindNATS        = "nats"
)

// Target is a process the chaos may kill; Kill sends SIGKILL to its
// current incarnation (its supervisor starts it again).
type Target struct {
	Name string
	Kind string
	Kill func() error
}

// Minimums are the kills a run must make: in all, of NATS nodes and of
// coordinator replicas.
type Minimums struct {
	Total, NATS, Coordinator int
}

// Counts are the kills made.
type Counts struct {
	Total, NATS, Coordinator, Service int
	// ByName counts kills per process.
	ByName map[string]int
}

// Met reports whether c meets m.
func (c Counts) Met(m Minimums) bool {
	return c.Total >= m.Total && c.NATS >= m.NATS && c.Coordinator >= m.Coordinator
}

// Scheduler picks the next process to kill. Kills owed to a minimum come
// first in a rotation (every third kill a NATS node, the next a
// coordinator, while either is owed), the rest are drawn at random, so
// that even a short run meets the minimums by its Total-th kill when
// Total >= 3*max(NATS, Coordinator).
type Scheduler struct {
	rng     *rand.Rand
	min     Minimums
	byKind  map[string][]Target
	targets []Target
	counts  Counts
}

// NewScheduler returns a scheduler over targets (those of other kinds are
// ignored), seeded so that a run can be repeated.
func NewScheduler(targets []Target, min Minimums, seed uint64) (*Scheduler, error) {
	s := &Scheduler{rng: rand.New(rand.NewPCG(seed, 0x6b696c6c)), min: min, byKind: map[string][]Target{}, counts: Counts{ByName: map[string]int{}}}
	for _, t := range targets {
		switch t.Kind {
		case KindService, KindCoordinator, KindNATS:
			s.byKind[t.Kind] = append(s.byKind[t.Kind], t)
			s.targets = append(s.targets, t)
		}
	}
	if min.NATS > 0 && len(s.byKind[KindNATS]) == 0 {
		return nil, fmt.Errorf("chaos: %d NATS kills required but no NATS node to kill", min.NATS)
	}
	if min.Coordinator > 0 && len(s.byKind[KindCoordinator]) == 0 {
		return nil, fmt.Errorf("chaos: %d coordinator kills required but no coordinator to kill", min.Coordinator)
	}
	if len(s.targets) == 0 {
		return nil, fmt.Errorf("chaos: nothing to kill")
	}
	return s, nil
}

// Next returns the next process to kill; Record must be told once it is
// killed.
func (s *Scheduler) Next() Target {
	owedNATS := s.counts.NATS < s.min.NATS
	owedCoord := s.counts.Coordinator < s.min.Coordinator
	switch slot := s.counts.Total % 3; {
	case owedNATS && (slot == 0 || !owedCoord && slot == 2):
		return s.pick(s.byKind[KindNATS])
	case owedCoord && (slot == 1 || !owedNATS && slot == 2):
		return s.pick(s.byKind[KindCoordinator])
	}
	return s.pick(s.targets)
}

func (s *Scheduler) pick(ts []Target) Target { return ts[s.rng.IntN(len(ts))] }

// Record counts a kill of t.
func (s *Scheduler) Record(t Target) {
	s.counts.Total++
	s.counts.ByName[t.Name]++
	switch t.Kind {
	case KindNATS:
		s.counts.NATS++
	case KindCoordinator:
		s.counts.Coordinator++
	case KindService:
		s.counts.Service++
	}
}

// Counts returns the kills recorded so far.
func (s *Scheduler) Counts() Counts {
	c := s.counts
	c.ByName = make(map[string]int, len(s.counts.ByName))
	for k, v := range s.counts.ByName {
		c.ByName[k] = v
	}
	return c
}

// KillConfig drives Kill.
type KillConfig struct {
	Every time.Duration
	Min   Minimums
	Seed  uint64
	// NATSQuorum returns nil once every NATS node answers again; a NATS
	// node is killed only then, so that a kill never takes the cluster
	// below its quorum. It should wait itself, within ctx.
	NATSQuorum func(ctx context.Context) error
	// Killed is told of each kill (for progress output); may be nil.
	Killed func(t Target, c Counts)
}

// Kill kills one target every cfg.Every until loadDone is closed and the
// minimums are met, or ctx ends. A kill that fails (the process was
// between incarnations) is not counted and is tried again at the next
// tick. It returns the kills made.
func Kill(ctx context.Context, targets []Target, cfg KillConfig, loadDone <-chan struct{}) (Counts, error) {
	s, err := NewScheduler(targets, cfg.Min, cfg.Seed)
	if err != nil {
		return Counts{}, err
	}
	tick := time.NewTicker(cfg.Every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return s.Counts(), ctx.Err()
		case <-tick.C:
		}
		select {
		case <-loadDone:
			if s.Counts().Met(cfg.Min) {
				return s.Counts(), nil
			}
		default:
		}
		t := s.Next()
		if t.Kind == KindNATS && cfg.NATSQuorum != nil {
			if err := cfg.NATSQuorum(ctx); err != nil {
				return s.Counts(), fmt.Errorf("wait for every NATS node before killing %s: %w", t.Name, err)
			}
		}
		if err := t.Kill(); err != nil {
			continue
		}
		s.Record(t)
		if cfg.Killed != nil {
			cfg.Killed(t, s.Counts())
		}
	}
}
