package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderflow/orderflow/services/gateway/auth"
)

// natsNodeRE finds a NATS node's line under the banner's "for debugging".
var natsNodeRE = regexp.MustCompile(`(?m)^\s+(nats-\d)\s+nats://127\.0\.0\.1:(\d+)$`)

// startClusterDev runs "orderflow dev --cluster" as startDev runs plain
// dev, and waits for its banner. r.ports holds every port of the stack:
// both replicas' and the NATS nodes' too.
func startClusterDev(t *testing.T) (*devRun, map[string]int) {
	t.Helper()
	r := &devRun{base: freePortBase(t, true), out: &syncBuffer{}, done: make(chan struct{})}
	r.cmd = exec.Command(binary(t), "dev", "--cluster", "--port-base", strconv.Itoa(r.base))
	r.cmd.Env = append(envWithout(os.Environ(), "DATABASE_URL", "NATS_URL", "NATS_REPLICAS", "ADDR", auth.SecretEnv), auth.SecretEnv+"="+devTestSecret)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = r.cmd.Process.Signal(os.Interrupt)
			select {
			case <-r.done:
			case <-time.After(30 * time.Second):
				_ = r.cmd.Process.Kill()
				<-r.done
			}
		}
		if t.Failed() {
			t.Logf("dev output:\n%s", r.out.String())
		}
	})

	r.waitFor(t, readyMarker, 2*time.Minute)
	out := r.out.String()
	m := dataRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatal("banner names no data dir")
	}
	r.dir = m[1]
	if m := pgRE.FindStringSubmatch(out); m != nil {
		p, _ := strconv.Atoi(m[1])
		r.ports = append(r.ports, p)
	} else {
		t.Fatalf("output lacks %s", pgRE)
	}
	nodes := map[string]int{}
	for _, m := range natsNodeRE.FindAllStringSubmatch(out, -1) {
		p, _ := strconv.Atoi(m[2])
		nodes[m[1]] = p
		r.ports = append(r.ports, p)
	}
	if len(nodes) != clusterNodes {
		t.Fatalf("the banner lists NATS nodes %v, want %d", nodes, clusterNodes)
	}
	for _, np := range (&devStack{opts: devOptions{portBase: r.base, cluster: true}}).ports() {
		r.ports = append(r.ports, np.port)
	}
	return r, nodes
}

// clusterClient talks to a dev stack's gateway as the admin or the
// banner's customer, with tokens signed with the tests' dev secret.
type clusterClient struct {
	gw              string
	admin, customer string
}

func newClusterClient(t *testing.T, base int) *clusterClient {
	t.Helper()
	c := &clusterClient{gw: fmt.Sprintf("http://127.0.0.1:%d", base)}
	var err error
	if c.admin, err = auth.Sign([]byte(devTestSecret), auth.Principal{Subject: "admin", Role: auth.RoleAdmin}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if c.customer, err = auth.Sign([]byte(devTestSecret), auth.Principal{Subject: devCustomer, Role: auth.RoleCustomer}, time.Hour); err != nil {
		t.Fatal(err)
	}
	return c
}

// do sends one request; code is 0 when no answer came.
func (c *clusterClient) do(method, path, token, key, body string) (code int, answer []byte, err error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.gw+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err = io.ReadAll(resp.Body)
	return resp.StatusCode, answer, err
}

// command POSTs body until it is accepted (202), repeating it with the
// same idempotency key while a replica or NATS node is away (a transient
// 5xx or no answer), and returns the answer. Anything else fails the test.
func (c *clusterClient) command(t *testing.T, path, token, body string, timeout time.Duration) []byte {
	t.Helper()
	key := fmt.Sprintf("cluster-test-%d", rand.Int64())
	deadline := time.Now().Add(timeout)
	for {
		code, answer, err := c.do(http.MethodPost, path, token, key, body)
		switch {
		case code == http.StatusAccepted:
			return answer
		case err == nil && code < 500 && code != http.StatusTooManyRequests:
			t.Fatalf("POST %s: %d %s, want 202", path, code, answer)
		}
		if time.Now().After(deadline) {
			t.Fatalf("POST %s not accepted within %s; last: %d %s %v", path, timeout, code, answer, err)
		}
		time.Sleep(100 * time.Millisecond) // the poll's interval
	}
}

// placeOrder places an order of one unit of sku as the customer and
// returns its id.
func (c *clusterClient) placeOrder(t *testing.T, sku string) string {
	t.Helper()
	body := fmt.Sprintf(`{"customer_id": %q, "items": [{"sku": %q, "quantity": 1, "unit_price_cents": 1299}], `+
		`"shipping_address": {"name": "Ada L.", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}}`, devCustomer, sku)
	answer := c.command(t, "/api/orders", c.customer, body, time.Minute)
	var placed struct {
		OrderID string `json:"order_id"`
	}
	if err := json.Unmarshal(answer, &placed); err != nil || placed.OrderID == "" {
		t.Fatalf("POST /api/orders answered %s (%v), want an order_id", answer, err)
	}
	return placed.OrderID
}

// waitConfirmed polls the order until its saga confirmed it, failing on
// any other end or when timeout passes.
func (c *clusterClient) waitConfirmed(t *testing.T, id string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		code, answer, err := c.do(http.MethodGet, "/api/orders/"+id, c.customer, "", "")
		if code == http.StatusOK {
			var o struct {
				Status, Reason string
			}
			if err := json.Unmarshal(answer, &o); err != nil {
				t.Fatalf("GET /api/orders/%s: %v in %s", id, err, answer)
			}
			switch o.Status {
			case "confirmed":
				return
			case "rejected", "cancelled", "shipped":
				t.Fatalf("order %s is %s (%s), want confirmed", id, o.Status, o.Reason)
			}
		}
		last = fmt.Sprintf("%d %s %v", code, answer, err)
		if time.Now().After(deadline) {
			t.Fatalf("order %s not confirmed within %s; last: %s", id, timeout, last)
		}
		time.Sleep(100 * time.Millisecond) // the poll's interval
	}
}

// streamLeader is the NATS node leading stream, asked through any node.
func streamLeader(t *testing.T, urls []string, stream string) string {
	t.Helper()
	nc, err := nats.Connect(strings.Join(urls, ","), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := js.Stream(ctx, stream)
		cancel()
		if err == nil {
			info := s.CachedInfo()
			if info.Config.Replicas != clusterNodes {
				t.Fatalf("stream %s has %d replicas, want %d", stream, info.Config.Replicas, clusterNodes)
			}
			if info.Cluster != nil && info.Cluster.Leader != "" {
				return info.Cluster.Leader
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s has no leader after a minute (%v)", stream, err)
		}
		time.Sleep(100 * time.Millisecond) // the poll's interval
	}
}

// lastActive is the replica whose latest line in out matches what.
func lastActive(t *testing.T, out, svc, what string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^(` + svc + `-\d)\s+\|.*` + what)
	all := re.FindAllStringSubmatch(out, -1)
	if len(all) == 0 {
		t.Fatalf("no %s replica logged %q", svc, what)
	}
	return all[len(all)-1][1]
}

// killReplica SIGKILLs the process of a replica ("orders-2") and returns
// its pid.
func (r *devRun) killReplica(t *testing.T, name string) int {
	t.Helper()
	svc, n, _ := strings.Cut(name, "-")
	i, _ := strconv.Atoi(n)
	pid := onlyPID(t, name, processesMatching(fmt.Sprintf("serve %s --addr 127.0.0.1:%d", svc, replicaPort(r.base, svc, i))))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	return pid
}

// since waits until the output after offset matches re.
func (r *devRun) since(t *testing.T, offset int, re *regexp.Regexp, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for !re.MatchString(r.out.String()[offset:]) {
		select {
		case <-r.done:
			t.Fatalf("dev exited (%v) before printing %s", r.err, re)
		case <-deadline:
			t.Fatalf("no %s within %s", re, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// natsNodePIDs lists the processes of this stack's NATS node name (its
// store directory is under the stack's data directory; other stacks may
// run nodes of the same name).
func (r *devRun) natsNodePIDs(name string) []int {
	return processesMatching("--store-dir " + filepath.Join(r.dir, name))
}

// dev --cluster serves through every process; a SIGKILLed NATS node (the
// one leading the events stream) is restarted while orders still
// complete; and with the replica of orders whose relay publishes and the
// sagas replica whose coordinator polls deadlines both SIGKILLed, the
// other replicas carry on and orders still complete.
func TestDevCluster(t *testing.T) {
	r, nodes := startClusterDev(t)
	c := newClusterClient(t, r.base)

	// Every process answers: both replicas of each service, the gateway
	// and the three NATS nodes.
	for _, np := range (&devStack{opts: devOptions{portBase: r.base, cluster: true}}).ports() {
		if !healthy(np.port) {
			t.Errorf("%s on %d does not answer GET /healthz", np.name, np.port)
		}
	}
	var natsURLs []string
	for name, port := range nodes {
		u := "nats://127.0.0.1:" + strconv.Itoa(port)
		natsURLs = append(natsURLs, u)
		if err := natsProbe(u)(context.Background()); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if !strings.Contains(r.out.String(), "A cluster: 3 NATS nodes") {
		t.Errorf("the banner does not say it is a cluster")
	}
	// SIGUSR1's table lists every child.
	offset := len(r.out.String())
	if err := r.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	r.since(t, offset, regexp.MustCompile(`(?s)status of the dev stack.*\n  gateway +up`), 30*time.Second)
	table := r.out.String()[offset:]
	for _, name := range []string{"postgres", "nats-1", "nats-2", "nats-3", "orders-1", "orders-2", "inventory-1", "inventory-2",
		"shipping-1", "shipping-2", "sagas-1", "sagas-2", "gateway"} {
		if !regexp.MustCompile(`(?m)^  ` + name + ` +up `).MatchString(table) {
			t.Errorf("the status table lacks %s up:\n%s", name, table)
		}
	}

	const sku = "SKU-CLUSTER"
	c.command(t, "/api/inventory/"+sku+"/restock", c.admin, `{"quantity": 100}`, time.Minute)
	// The first order also waits out the cluster settling its streams.
	c.waitConfirmed(t, c.placeOrder(t, sku), 90*time.Second)

	// The NATS node leading the events stream dies: the stream's other
	// replicas elect a leader, clients fail over, and the node comes back
	// on its ports and store.
	leader := streamLeader(t, natsURLs, "EVENTS")
	if _, ok := nodes[leader]; !ok {
		t.Fatalf("the EVENTS stream's leader %q is none of the nodes %v", leader, nodes)
	}
	old := onlyPID(t, leader, r.natsNodePIDs(leader))
	offset = len(r.out.String())
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	id := c.placeOrder(t, sku)
	c.waitConfirmed(t, id, time.Minute)
	r.since(t, offset, regexp.MustCompile(regexp.QuoteMeta(leader)+` is up again`), time.Minute)
	if pid := onlyPID(t, leader, r.natsNodePIDs(leader)); pid == old {
		t.Errorf("%s still runs as pid %d after SIGKILL", leader, pid)
	}
	if err := natsProbe(fmt.Sprintf("nats://127.0.0.1:%d", nodes[leader]))(context.Background()); err != nil {
		t.Errorf("%s after its restart: %v", leader, err)
	}
	c.waitConfirmed(t, c.placeOrder(t, sku), time.Minute)

	// The orders replica whose relay publishes and the sagas replica that
	// polls the deadlines die together; the leases pass on and orders
	// complete.
	out := r.out.String()
	orders := lastActive(t, out, "orders", `msg="relay publishing"`)
	sagas := lastActive(t, out, "sagas", `msg="deadline poller active`)
	offset = len(out)
	r.killReplica(t, orders)
	r.killReplica(t, sagas)
	c.waitConfirmed(t, c.placeOrder(t, sku), time.Minute)
	// Some orders relay and some deadline poller took the lease after the
	// kill: the order above needed the first, and the second must exist
	// for a saga's step to time out.
	r.since(t, offset, regexp.MustCompile(`(?m)^orders-\d\s+\|.*msg="relay publishing"`), time.Minute)
	r.since(t, offset, regexp.MustCompile(`(?m)^sagas-\d\s+\|.*msg="deadline poller active`), time.Minute)
	r.since(t, offset, regexp.MustCompile(orders+` is up again`), time.Minute)
	r.since(t, offset, regexp.MustCompile(sagas+` is up again`), time.Minute)

	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := r.waitExit(t, time.Minute); code != 0 {
		t.Errorf("dev exited with %d after SIGINT, want 0", code)
	}
	r.assertAllGone(t)
}

func TestStackPorts(t *testing.T) {
	tests := []struct {
		name    string
		cluster bool
		want    []namedPort
	}{
		{"plain", false, []namedPort{{"gateway", 9000}, {"orders", 9001}, {"inventory", 9002}, {"shipping", 9003}, {"sagas", 9004}}},
		{"cluster", true, []namedPort{{"gateway", 9000},
			{"orders-1", 9001}, {"orders-2", 9011}, {"inventory-1", 9002}, {"inventory-2", 9012},
			{"shipping-1", 9003}, {"shipping-2", 9013}, {"sagas-1", 9004}, {"sagas-2", 9014}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := (&devStack{opts: devOptions{portBase: 9000, cluster: tt.cluster}}).ports()
			if !slices.Equal(got, tt.want) {
				t.Errorf("ports() = %v, want %v", got, tt.want)
			}
			highest := slices.MaxFunc(got, func(a, b namedPort) int { return a.port - b.port }).port - 9000
			if highest != lastPortOffset(tt.cluster) {
				t.Errorf("lastPortOffset(%v) = %d, but the highest port is base+%d", tt.cluster, lastPortOffset(tt.cluster), highest)
			}
		})
	}
}

// processes lists every child with its kind, and Kill ends the current
// incarnation (the one the supervisor replaced it with, after a restart)
// while the supervisor may be replacing it: run with -race.
func TestProcessesKill(t *testing.T) {
	con := &console{w: io.Discard}
	newProc := func(name, kind string) *serviceProc {
		p := &serviceProc{name: name, kind: kind, tail: newLineTail(5), con: con}
		p.command = func() *exec.Cmd { return exec.Command("sleep", "60") }
		if err := p.spawn(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = p.child().SignalGroup(syscall.SIGKILL)
			<-p.child().Done()
		})
		return p
	}
	d := &devStack{
		natsNodes: []*serviceProc{newProc("nats-1", "nats")},
		children:  []*serviceProc{newProc("orders-1", "service"), newProc("sagas-2", "coordinator"), newProc("gateway", "gateway")},
	}
	procs := d.processes()
	var got []string
	for _, p := range procs {
		got = append(got, p.Name+"/"+p.Kind)
	}
	if want := []string{"nats-1/nats", "orders-1/service", "sagas-2/coordinator", "gateway/gateway"}; !slices.Equal(got, want) {
		t.Fatalf("processes() = %v, want %v", got, want)
	}

	orders := d.children[0]
	first := orders.child()
	// A restart replaces the incarnation while Kill runs.
	restarted := make(chan error, 1)
	go func() {
		<-first.Done()
		restarted <- orders.spawn()
	}()
	if err := procs[1].Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	<-first.Done()
	if why := exitReason(first.Err()); why != "signal: killed" {
		t.Errorf("the killed incarnation ended with %q, want signal: killed", why)
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	second := orders.child()
	if second == first {
		t.Fatal("spawn did not replace the incarnation")
	}
	if err := procs[1].Kill(); err != nil {
		t.Fatalf("Kill after the restart: %v", err)
	}
	select {
	case <-second.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the new incarnation survived Kill")
	}
	// Nothing runs now; Kill says so rather than signalling a stranger.
	if err := procs[1].Kill(); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Kill of an exited child = %v, want os.ErrProcessDone", err)
	}
}

// devOptions.maxExits reaches the restart policy: 0 keeps the default,
// another number moves the exit that gives up.
func TestRestartPolicyLimit(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		max    int
		giveUp int // the exit that gives up
	}{
		{"default", 0, maxExits},
		{"chaos", 20, 20},
		{"strict", 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := restartPolicy{max: tt.max}
			for i := 1; i <= tt.giveUp; i++ {
				recent, delay, giveUp := p.exited(t0.Add(time.Duration(i) * time.Millisecond))
				if recent != i {
					t.Fatalf("exit %d counted as %d", i, recent)
				}
				if giveUp != (i == tt.giveUp) {
					t.Fatalf("exit %d: giveUp %v, want it at exit %d", i, giveUp, tt.giveUp)
				}
				if !giveUp && (delay <= 0 || delay > maxRestartDelay) {
					t.Fatalf("exit %d: delay %s", i, delay)
				}
			}
		})
	}
}
