package chaos

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// clusterTargets are the processes of a clustered stack, with kills that
// only count.
func clusterTargets(killed map[string]int, mu *sync.Mutex) []Target {
	var ts []Target
	add := func(name, kind string) {
		ts = append(ts, Target{Name: name, Kind: kind, Kill: func() error {
			mu.Lock()
			defer mu.Unlock()
			killed[name]++
			return nil
		}})
	}
	for _, svc := range []string{"orders-1", "orders-2", "inventory-1", "inventory-2", "shipping-1", "shipping-2"} {
		add(svc, KindService)
	}
	add("sagas-1", KindCoordinator)
	add("sagas-2", KindCoordinator)
	add("nats-1", KindNATS)
	add("nats-2", KindNATS)
	add("nats-3", KindNATS)
	add("gateway", "gateway")
	add("postgres", "postgres")
	return ts
}

func TestSchedulerMeetsTheMinimumsByTheTotal(t *testing.T) {
	tests := []struct {
		name string
		min  Minimums
	}{
		{"issue's minimums", Minimums{Total: 20, NATS: 3, Coordinator: 3}},
		{"tight", Minimums{Total: 9, NATS: 3, Coordinator: 3}},
		{"NATS only", Minimums{Total: 6, NATS: 4}},
		{"coordinators only", Minimums{Total: 6, Coordinator: 4}},
	}
	for _, tt := range tests {
		for seed := range uint64(200) {
			var mu sync.Mutex
			killed := map[string]int{}
			s, err := NewScheduler(clusterTargets(killed, &mu), tt.min, seed)
			if err != nil {
				t.Fatal(err)
			}
			for range tt.min.Total {
				tg := s.Next()
				if tg.Kind != KindService && tg.Kind != KindCoordinator && tg.Kind != KindNATS {
					t.Fatalf("%s seed %d: picked %s (%s), which is never killed", tt.name, seed, tg.Name, tg.Kind)
				}
				s.Record(tg)
			}
			if c := s.Counts(); !c.Met(tt.min) {
				t.Fatalf("%s seed %d: %+v after %d kills, want %+v", tt.name, seed, c, tt.min.Total, tt.min)
			}
		}
	}
}

func TestSchedulerSpreadsKillsOverEveryKind(t *testing.T) {
	var mu sync.Mutex
	s, err := NewScheduler(clusterTargets(map[string]int{}, &mu), Minimums{Total: 20, NATS: 3, Coordinator: 3}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for range 300 {
		s.Record(s.Next())
	}
	c := s.Counts()
	for _, name := range []string{"orders-1", "inventory-2", "shipping-1", "sagas-2", "nats-3"} {
		if c.ByName[name] == 0 {
			t.Errorf("%s never killed in 300 kills: %v", name, c.ByName)
		}
	}
	for _, name := range []string{"gateway", "postgres"} {
		if c.ByName[name] != 0 {
			t.Errorf("%s killed %d times; it never may be", name, c.ByName[name])
		}
	}
}

func TestNewSchedulerRefusesUnreachableMinimums(t *testing.T) {
	svc := []Target{{Name: "orders-1", Kind: KindService, Kill: func() error { return nil }}}
	if _, err := NewScheduler(svc, Minimums{Total: 5, NATS: 1}, 1); err == nil {
		t.Fatal("NATS kills required of a stack without NATS nodes: want an error")
	}
	if _, err := NewScheduler(svc, Minimums{Total: 5, Coordinator: 1}, 1); err == nil {
		t.Fatal("coordinator kills required of a stack without coordinators: want an error")
	}
}

func TestKillKeepsKillingUntilTheLoadIsDoneAndTheMinimumsMet(t *testing.T) {
	var mu sync.Mutex
	killed := map[string]int{}
	targets := clusterTargets(killed, &mu)
	// The first kill of orders-1 fails, as it does between incarnations:
	// it must not be counted.
	failed := false
	for i, tg := range targets {
		if tg.Name == "orders-1" {
			kill := tg.Kill
			targets[i].Kill = func() error {
				mu.Lock()
				first := !failed
				failed = true
				mu.Unlock()
				if first {
					return errors.New("between incarnations")
				}
				return kill()
			}
		}
	}
	quorumChecks := 0
	loadDone := make(chan struct{})
	close(loadDone) // a load that ended at once: the minimums still rule
	min := Minimums{Total: 12, NATS: 3, Coordinator: 3}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Kill(ctx, targets, KillConfig{Every: time.Millisecond, Min: min, Seed: 7,
		NATSQuorum: func(context.Context) error { quorumChecks++; return nil }}, loadDone)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Met(min) {
		t.Fatalf("kills %+v, want at least %+v", c, min)
	}
	if quorumChecks != c.NATS {
		t.Errorf("%d quorum checks for %d NATS kills, want one before each", quorumChecks, c.NATS)
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for name, n := range killed {
		total += n
		if c.ByName[name] != n {
			t.Errorf("%s killed %d times, counted %d", name, n, c.ByName[name])
		}
	}
	if total != c.Total {
		t.Errorf("%d kills made, %d counted", total, c.Total)
	}
}

func TestKillRunsWhileTheLoadRuns(t *testing.T) {
	var mu sync.Mutex
	killed := map[string]int{}
	loadDone := make(chan struct{})
	min := Minimums{Total: 3, NATS: 1, Coordinator: 1}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type result struct {
		c   Counts
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := Kill(ctx, clusterTargets(killed, &mu), KillConfig{Every: time.Millisecond, Min: min, Seed: 3}, loadDone)
		done <- result{c, err}
	}()
	// Well past the minimums while the load still runs: it goes on.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := 0
		for _, k := range killed {
			n += k
		}
		mu.Unlock()
		if n >= 3*min.Total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d kills in 30s", n)
		}
		select {
		case r := <-done:
			t.Fatalf("Kill returned (%+v, %v) while the load ran", r.c, r.err)
		case <-time.After(time.Millisecond):
		}
	}
	close(loadDone)
	r := <-done
	if r.err != nil || r.c.Total < 3*min.Total {
		t.Fatalf("Kill = %+v, %v; want more than %d kills and no error", r.c, r.err, 3*min.Total)
	}
}

func TestKillStopsWhenNATSNeverRegainsQuorum(t *testing.T) {
	var mu sync.Mutex
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	noQuorum := errors.New("nats-2 does not answer")
	_, err := Kill(ctx, clusterTargets(map[string]int{}, &mu), KillConfig{Every: time.Millisecond, Min: Minimums{Total: 3, NATS: 1}, Seed: 1,
		NATSQuorum: func(context.Context) error { return noQuorum }}, make(chan struct{}))
	if !errors.Is(err, noQuorum) {
		t.Fatalf("Kill = %v, want the quorum wait's error", err)
	}
}
