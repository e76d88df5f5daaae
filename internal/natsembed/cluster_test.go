package natsembed

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// freePort is a port nobody listens on right now. The nodes of a cluster
// must know each other's route ports before any of them starts, so the
// test picks them up front; another process taking one in between is
// unlikely and fails Start loudly rather than the assertions.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testCluster is three nodes of one JetStream cluster, each with its own
// store directory, client port and route port, which a restart keeps.
type testCluster struct {
	cfgs  []Config
	nodes []*Server
}

func startCluster(t *testing.T, ctx context.Context) *testCluster {
	t.Helper()
	c := &testCluster{}
	routePorts := []int{freePort(t), freePort(t), freePort(t)}
	for i := range 3 {
		routes := PeerRoutes("127.0.0.1", routePorts, i)
		c.cfgs = append(c.cfgs, Config{
			Port:     freePort(t),
			StoreDir: t.TempDir(),
			Cluster: ClusterConfig{
				Name:       "test",
				ServerName: fmt.Sprintf("n%d", i+1),
				Port:       routePorts[i],
				Routes:     routes,
			},
		})
	}
	c.nodes = make([]*Server, 3)
	for i := range 3 {
		c.start(t, ctx, i)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if n != nil {
				n.Shutdown()
			}
		}
	})
	return c
}

func (c *testCluster) start(t *testing.T, ctx context.Context, i int) {
	t.Helper()
	s, err := Start(ctx, c.cfgs[i])
	if err != nil {
		t.Fatalf("start node %d: %v", i+1, err)
	}
	c.nodes[i] = s
}

// connect connects to the given nodes (a client fails over between them)
// and waits until JetStream answers through them: a cluster's API serves
// only once it has elected a meta leader.
func connect(t *testing.T, ctx context.Context, nodes ...*Server) jetstream.JetStream {
	t.Helper()
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.URL())
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect %v: %v", urls, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var last error
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, last = js.AccountInfo(actx)
		cancel()
		if last == nil {
			return js
		}
		select {
		case <-ctx.Done():
			t.Fatalf("JetStream did not answer through %v: %v", urls, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// retry calls f until it succeeds or ctx ends: during a leader election a
// stream briefly refuses requests, which a client retries.
func retry(t *testing.T, ctx context.Context, what string, f func(ctx context.Context) error) {
	t.Helper()
	var last error
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = f(actx)
		cancel()
		if last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func publish(t *testing.T, ctx context.Context, js jetstream.JetStream, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		msg := &nats.Msg{Subject: "events.test", Data: []byte(strconv.Itoa(i)), Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, "id-"+strconv.Itoa(i))
		retry(t, ctx, "publish "+strconv.Itoa(i), func(ctx context.Context) error {
			_, err := js.PublishMsg(ctx, msg)
			return err
		})
	}
}

// readAll reads the stream from its start with an ordered consumer and
// fails unless it holds exactly 0..n-1, in order.
func readAll(t *testing.T, ctx context.Context, js jetstream.JetStream, n int) {
	t.Helper()
	retry(t, ctx, "read the stream", func(ctx context.Context) error {
		cons, err := js.OrderedConsumer(ctx, "EVENTS", jetstream.OrderedConsumerConfig{})
		if err != nil {
			return err
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		i := 0
		for m := range batch.Messages() {
			if got := string(m.Data()); got != strconv.Itoa(i) {
				return fmt.Errorf("message %d is %q", i, got)
			}
			i++
		}
		if i != n {
			return fmt.Errorf("read %d messages, want %d (%v)", i, n, batch.Error())
		}
		return nil
	})
}

// Three nodes form one JetStream cluster; a stream with three replicas
// keeps taking and serving messages while one node is down, and the node,
// back on its store directory, catches up with what it missed.
func TestClusterSurvivesANodeAndCatchesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := startCluster(t, ctx)
	for i, n := range c.nodes {
		if want := fmt.Sprintf("n%d", i+1); n.Name() != want {
			t.Errorf("node %d is named %q, want %q", i+1, n.Name(), want)
		}
		if want := "nats://127.0.0.1:" + strconv.Itoa(c.cfgs[i].Cluster.Port); n.ClusterURL() != want {
			t.Errorf("node %d's cluster URL is %q, want %q", i+1, n.ClusterURL(), want)
		}
	}

	js := connect(t, ctx, c.nodes...)
	retry(t, ctx, "create the stream", func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"events.>"}, Replicas: 3})
		return err
	})
	info, err := js.Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	si := info.CachedInfo()
	if si.Config.Replicas != 3 || si.Cluster == nil || len(si.Cluster.Replicas) != 2 {
		t.Fatalf("stream cluster info %+v, want a leader and two replicas", si.Cluster)
	}
	publish(t, ctx, js, 0, 10)

	// Down goes the node the stream's leader is on: the worst case.
	down := -1
	for i, n := range c.nodes {
		if n.Name() == si.Cluster.Leader {
			down = i
		}
	}
	if down < 0 {
		t.Fatalf("stream leader %q is none of the nodes", si.Cluster.Leader)
	}
	c.nodes[down].Shutdown()
	var up []*Server
	for i, n := range c.nodes {
		if i != down {
			up = append(up, n)
		}
	}
	js2 := connect(t, ctx, up...)
	publish(t, ctx, js2, 10, 20)
	readAll(t, ctx, js2, 20)

	// Back on the same store dir and ports, the node catches up: its own
	// store holds the ten messages it missed.
	c.start(t, ctx, down)
	back := c.nodes[down]
	retry(t, ctx, "the restarted node catches up", func(context.Context) error {
		n, err := localMessages(back, "EVENTS")
		if err != nil {
			return err
		}
		if n != 20 {
			return fmt.Errorf("the restarted node stores %d messages, want 20", n)
		}
		return nil
	})
	// And it serves them: with one of the others down too, it and the
	// remaining node are the quorum, and a client of it alone reads all.
	up[0].Shutdown()
	js3 := connect(t, ctx, back)
	readAll(t, ctx, js3, 20)
	publish(t, ctx, js3, 20, 21)
}

// localMessages is the number of messages of stream in s's own store.
func localMessages(s *Server, stream string) (uint64, error) {
	jsz, err := s.ns.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		return 0, err
	}
	for _, a := range jsz.AccountDetails {
		for _, sd := range a.Streams {
			if sd.Name == stream {
				return sd.State.Msgs, nil
			}
		}
	}
	return 0, fmt.Errorf("stream %s is not on %s", stream, s.Name())
}
