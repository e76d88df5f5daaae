package discovery_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/discovery"
)

// period is the resolver period of the tests: short so that they are quick,
// and the waits below allow many periods so that a busy machine (another
// test suite running) does not fail them.
const period = 200 * time.Millisecond

// settle is how long a change may take to show in the tests: the contract
// is one period; the rest is room for a loaded machine.
const settle = 50 * period

// watch starts a resolver for services on its own connection to url,
// stopped when the test ends, and waits for its first round.
func watch(t *testing.T, url string, services ...string) (*discovery.Resolver, *nats.Conn) {
	t.Helper()
	nc := connect(t, url)
	ctx, cancel := context.WithCancel(context.Background())
	r := discovery.Watch(ctx, nc, services, period)
	t.Cleanup(func() {
		cancel()
		<-r.Done()
	})
	select {
	case <-r.Ready():
	case <-time.After(settle):
		t.Fatal("resolver's first round did not end")
	}
	return r, nc
}

// waitInstances waits until r lists exactly want for service.
func waitInstances(t *testing.T, r *discovery.Resolver, service string, want ...string) {
	t.Helper()
	waitFor(t, settle,
		func() bool { return slices.Equal(r.Instances(service), want) },
		func() string {
			return fmt.Sprintf("instances of %s = %v, want %v", service, r.Instances(service), want)
		})
}

// waitRounds waits until r has applied at least applied and skipped at
// least skipped more rounds than when called.
func waitRounds(t *testing.T, r *discovery.Resolver, applied, skipped uint64) {
	t.Helper()
	from := r.Stats()
	waitFor(t, settle,
		func() bool {
			now := r.Stats()
			return now.Applied >= from.Applied+applied && now.Skipped >= from.Skipped+skipped
		},
		func() string { return fmt.Sprintf("rounds %+v, started from %+v", r.Stats(), from) })
}

func TestResolverSeesEveryInstance(t *testing.T) {
	url := testenv.NATS(t)
	orders, inventory := unique(t, "orders"), unique(t, "inventory")
	// Registered in reverse order of their URLs: Instances sorts them.
	register(t, connect(t, url), discovery.Info{Service: orders, HTTPURL: "http://127.0.0.1:9081"})
	register(t, connect(t, url), discovery.Info{Service: orders, HTTPURL: "http://127.0.0.1:8081"})
	register(t, connect(t, url), discovery.Info{Service: inventory, HTTPURL: "http://127.0.0.1:8082"})

	r, _ := watch(t, url, orders, inventory, "shipping-none", "bad name", "bad.name", orders)
	waitInstances(t, r, orders, "http://127.0.0.1:8081", "http://127.0.0.1:9081")
	waitInstances(t, r, inventory, "http://127.0.0.1:8082")
	if got := r.Instances("shipping-none"); got != nil {
		t.Fatalf("instances of a service nobody registered = %v", got)
	}
	for _, s := range []string{"not-watched", "bad name", "bad.name"} {
		if got := r.Instances(s); got != nil {
			t.Fatalf("instances of %q = %v, want none", s, got)
		}
	}
	live := r.Live(orders)
	if len(live) != 2 || live[0].ID == "" || live[0].ID == live[1].ID || live[0].Version != discovery.SemVer(discovery.BuildVersion()) {
		t.Fatalf("Live(%s) = %+v", orders, live)
	}
}

func TestResolverDropsStoppedInstance(t *testing.T) {
	url := testenv.NATS(t)
	orders := unique(t, "orders")
	stopA := register(t, connect(t, url), discovery.Info{Service: orders, HTTPURL: "http://127.0.0.1:8081"})
	register(t, connect(t, url), discovery.Info{Service: orders, HTTPURL: "http://127.0.0.1:9081"})
	r, _ := watch(t, url, orders)
	waitInstances(t, r, orders, "http://127.0.0.1:8081", "http://127.0.0.1:9081")

	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	waitInstances(t, r, orders, "http://127.0.0.1:9081")
}

// TestResolverDropsInstanceWhoseConnectionCloses stands for a killed
// process: its connection goes away and nothing is said on the way out.
func TestResolverDropsInstanceWhoseConnectionCloses(t *testing.T) {
	url := testenv.NATS(t)
	orders := unique(t, "orders")
	victim := connect(t, url)
	register(t, victim, discovery.Info{Service: orders, HTTPURL: "http://127.0.0.1:8081"})
	register(t, connect(t, url), discovery.Info{Service: orders, HTTPURL: "http://127.0.0.1:9081"})
	r, _ := watch(t, url, orders)
	waitInstances(t, r, orders, "http://127.0.0.1:8081", "http://127.0.0.1:9081")

	victim.Close()
	waitInstances(t, r, orders, "http://127.0.0.1:9081")
}

// TestResolverDropsInstanceThatStopsAnswering covers a process that keeps
// its connection but no longer answers PING (hung, say): the resolver needs
// an answer each round, not just a connection. The instance here is a bare
// PING responder that the test can silence while it stays connected.
func TestResolverDropsInstanceThatStopsAnswering(t *testing.T) {
	url := testenv.NATS(t)
	orders := unique(t, "orders")
	nc := connect(t, url)
	var hung atomic.Bool
	ping, err := json.Marshal(micro.Ping{
		ServiceIdentity: micro.ServiceIdentity{
			Name: discovery.MicroName(orders), ID: "hand-made", Version: "1.0.0",
			Metadata: map[string]string{discovery.MetaHTTP: "http://127.0.0.1:8081"},
		},
		Type: micro.PingResponseType,
	})
	if err != nil {
		t.Fatal(err)
	}
	subj, err := micro.ControlSubject(micro.PingVerb, discovery.MicroName(orders), "")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
		if !hung.Load() {
			_ = m.Respond(ping)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	register(t, connect(t, url), discovery.Info{Service: orders, HTTPURL: "http://127.0.0.1:9081"})
	r, _ := watch(t, url, orders)
	waitInstances(t, r, orders, "http://127.0.0.1:8081", "http://127.0.0.1:9081")

	hung.Store(true)
	waitInstances(t, r, orders, "http://127.0.0.1:9081")
	if !sub.IsValid() || nc.Status() != nats.CONNECTED {
		t.Fatal("the silent instance should still be connected and subscribed")
	}
	hung.Store(false)
	waitInstances(t, r, orders, "http://127.0.0.1:8081", "http://127.0.0.1:9081")
}

func TestResolverSeesNewInstance(t *testing.T) {
	url := testenv.NATS(t)
	sagas := unique(t, "sagas")
	r, _ := watch(t, url, sagas)
	if got := r.Instances(sagas); got != nil {
		t.Fatalf("instances before any registration = %v", got)
	}
	register(t, connect(t, url), discovery.Info{Service: sagas, HTTPURL: "http://127.0.0.1:8084"})
	waitInstances(t, r, sagas, "http://127.0.0.1:8084")
	register(t, connect(t, url), discovery.Info{Service: sagas, HTTPURL: "http://127.0.0.2:8084"})
	waitInstances(t, r, sagas, "http://127.0.0.1:8084", "http://127.0.0.2:8084")
}

// TestResolverIgnoresUnroutableAnswers checks that a PING answer without a
// usable HTTP URL, or from another service, names no instance.
func TestResolverIgnoresUnroutableAnswers(t *testing.T) {
	url := testenv.NATS(t)
	orders := unique(t, "orders")
	for _, meta := range []map[string]string{
		nil,
		{discovery.MetaHTTP: "not a url"},
		{discovery.MetaHTTP: "http://0.0.0.0:8081"},
	} {
		svc, err := micro.AddService(connect(t, url), micro.Config{Name: discovery.MicroName(orders), Version: "1.0.0", Metadata: meta})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = svc.Stop() })
	}
	register(t, connect(t, url), discovery.Info{Service: orders + "x", HTTPURL: "http://127.0.0.1:7777"})
	register(t, connect(t, url), discovery.Info{Service: orders, HTTPURL: "http://127.0.0.1:8081"})

	r, _ := watch(t, url, orders)
	waitInstances(t, r, orders, "http://127.0.0.1:8081")
	// Several more rounds must not bring the others in.
	for range 3 {
		waitRounds(t, r, 1, 0)
		if got := r.Instances(orders); !slices.Equal(got, []string{"http://127.0.0.1:8081"}) {
			t.Fatalf("instances = %v, want only the routable one", got)
		}
	}
}

// TestResolverKeepsInstancesWhileCutOff checks that the resolver's own loss
// of NATS does not empty the set: the upstreams are still there over HTTP.
func TestResolverKeepsInstancesWhileCutOff(t *testing.T) {
	url := testenv.NATS(t)
	orders := unique(t, "orders")
	register(t, connect(t, url), discovery.Info{Service: orders, HTTPURL: "http://127.0.0.1:8081"})
	r, rnc := watch(t, url, orders)
	waitInstances(t, r, orders, "http://127.0.0.1:8081")

	rnc.Close()
	for range 3 {
		waitRounds(t, r, 0, 1)
		if got := r.Instances(orders); !slices.Equal(got, []string{"http://127.0.0.1:8081"}) {
			t.Fatalf("instances after the resolver lost NATS = %v, want the last known", got)
		}
	}
}

func TestResolverNextTakesTurns(t *testing.T) {
	url := testenv.NATS(t)
	orders := unique(t, "orders")
	urls := []string{"http://127.0.0.1:8081", "http://127.0.0.1:8091", "http://127.0.0.1:9081"}
	for _, u := range urls {
		register(t, connect(t, url), discovery.Info{Service: orders, HTTPURL: u})
	}
	r, _ := watch(t, url, orders)
	waitInstances(t, r, orders, urls...)

	counts := map[string]int{}
	for range 3 * len(urls) {
		u, err := r.Next(orders)
		if err != nil {
			t.Fatal(err)
		}
		counts[u]++
	}
	for _, u := range urls {
		if counts[u] != 3 {
			t.Fatalf("Next spread %v, want each of %v 3 times", counts, urls)
		}
	}
	if _, err := r.Next("not-watched"); !errors.Is(err, discovery.ErrNoInstances) {
		t.Fatalf("Next(not watched) = %v, want ErrNoInstances", err)
	}
}

func TestWatchStopsWithContext(t *testing.T) {
	nc := connect(t, testenv.NATS(t))
	ctx, cancel := context.WithCancel(context.Background())
	r := discovery.Watch(ctx, nc, []string{"orders"}, 0)
	<-r.Ready()
	cancel()
	select {
	case <-r.Done():
	case <-time.After(settle):
		t.Fatal("resolver goroutine still running after its context ended")
	}
}
