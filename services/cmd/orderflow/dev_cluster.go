package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/internal/natsembed"
)

// dev --cluster runs, on one machine, the shape of a production
// deployment: three NATS nodes forming one JetStream cluster whose streams
// keep three replicas, two replicas of every service (the sagas service's
// two are the two saga coordinators) and the gateway balancing across
// them. Each is a child process the supervisor restarts on the same ports
// and data, so any of them can be killed to see the others carry on.

const (
	// clusterNodes is the number of NATS nodes and the streams' replicas.
	clusterNodes = 3
	// serviceReplicas is the number of processes of each service.
	serviceReplicas = 2
	// replicaPortStep shifts replica r's ports by (r-1)*replicaPortStep:
	// replica 1 on the usual N+1..N+4, replica 2 on N+11..N+14.
	replicaPortStep = 10
	// natsClusterName is the JetStream cluster's name.
	natsClusterName = "orderflow-dev"
)

// lastPortOffset is the highest port of a stack above its port base.
func lastPortOffset(cluster bool) int {
	if cluster {
		return 4 + (serviceReplicas-1)*replicaPortStep
	}
	return 4
}

// replicaPort is the port of replica r (1-based) of svc.
func replicaPort(base int, svc string, r int) int {
	return servicePort(base, svc) + (r-1)*replicaPortStep
}

// replicaName names replica r of svc in the output: "orders-2".
func replicaName(svc string, r int) string { return svc + "-" + strconv.Itoa(r) }

// serviceKind is what processes reports for a replica of svc.
func serviceKind(svc string) string {
	if svc == "sagas" {
		return "coordinator"
	}
	return "service"
}

// namedPort is a port the stack listens on and whose it is.
type namedPort struct {
	name string
	port int
}

// ports lists the fixed ports the stack needs, the gateway's first.
func (d *devStack) ports() []namedPort {
	b := d.opts.portBase
	out := []namedPort{{gatewayName, servicePort(b, gatewayName)}}
	for _, svc := range services {
		if !d.opts.cluster {
			out = append(out, namedPort{svc, servicePort(b, svc)})
			continue
		}
		for r := 1; r <= serviceReplicas; r++ {
			out = append(out, namedPort{replicaName(svc, r), replicaPort(b, svc, r)})
		}
	}
	return out
}

// startNATSCluster starts the NATS nodes and waits until their JetStream
// cluster answers, so that the services' stream setup does not fail on a
// cluster that has not yet elected its meta leader. NATS_URL, when set,
// names a cluster to use instead.
func (d *devStack) startNATSCluster(ctx context.Context) error {
	if u := os.Getenv("NATS_URL"); u != "" {
		d.natsURL = u
		d.con.Printf("using NATS from NATS_URL (%s); its streams get %d replicas\n", u, clusterNodes)
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	d.con.Printf("starting a NATS cluster of %d nodes...\n", clusterNodes)
	t := time.Now()
	// Every node's ports are fixed for the stack's life: a restarted node
	// must come back where its peers' routes and the services' client
	// URLs point.
	ports, err := freePorts(2 * clusterNodes)
	if err != nil {
		return fmt.Errorf("pick the NATS nodes' ports: %w", err)
	}
	clientPorts, routePorts := ports[:clusterNodes], ports[clusterNodes:]
	urls := make([]string, clusterNodes)
	for i := range clusterNodes {
		urls[i] = "nats://127.0.0.1:" + strconv.Itoa(clientPorts[i])
	}
	for i := range clusterNodes {
		routes := natsembed.PeerRoutes("127.0.0.1", routePorts, i)
		n := &serviceProc{
			name: "nats-" + strconv.Itoa(i+1), kind: "nats", port: clientPorts[i],
			tail: newLineTail(30), con: d.con,
			probeWhat: "NATS clients on " + urls[i], probe: natsProbe(urls[i]),
		}
		args := []string{"nats-node", "--name", n.name,
			"--addr", net.JoinHostPort("127.0.0.1", strconv.Itoa(clientPorts[i])),
			"--cluster-addr", net.JoinHostPort("127.0.0.1", strconv.Itoa(routePorts[i])),
			"--routes", strings.Join(routes, ","),
			"--cluster-name", natsClusterName,
			"--store-dir", filepath.Join(d.dir, n.name)}
		n.command = func() *exec.Cmd { return exec.Command(exe, args...) }
		if err := n.spawn(); err != nil {
			return err
		}
		d.natsNodes = append(d.natsNodes, n)
	}
	deadline := time.Now().Add(healthTimeout)
	for _, n := range d.natsNodes {
		if err := n.waitServing(ctx, deadline); err != nil {
			if ctx.Err() != nil {
				return err
			}
			return fmt.Errorf("%s %w; its last log lines:\n%s", n.name, err, n.tail.String())
		}
	}
	d.natsURL = strings.Join(urls, ",")
	if err := waitJetStream(ctx, d.natsURL, deadline); err != nil {
		return err
	}
	d.con.Printf("NATS ready on %s (one JetStream cluster of %d nodes) in %s\n", d.natsURL, clusterNodes, seconds(time.Since(t)))
	return nil
}

// freePorts picks n distinct ports nobody listens on, holding each until
// all are picked so that the kernel does not hand one out twice.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// natsProbe says whether a NATS server accepts clients at url.
func natsProbe(url string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.NoReconnect())
		if err != nil {
			return err
		}
		nc.Close()
		return nil
	}
}

// waitJetStream waits until JetStream answers through urls (comma-
// separated), which a cluster's does once it has elected a meta leader.
func waitJetStream(ctx context.Context, urls string, deadline time.Time) error {
	nc, err := nats.Connect(urls, nats.Timeout(time.Second), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return fmt.Errorf("connect to the NATS cluster: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the NATS cluster's JetStream did not answer within %s (last: %v)", healthTimeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// startReplicas starts serviceReplicas processes of every service, which
// share the service's database, and the gateway in front of them all.
func (d *devStack) startReplicas(ctx context.Context, exe string) error {
	upstreams := make(map[string]string, len(services))
	var names []string
	for _, svc := range services {
		var urls []string
		for r := 1; r <= serviceReplicas; r++ {
			p := &serviceProc{
				name: replicaName(svc, r), service: svc, kind: serviceKind(svc),
				port: replicaPort(d.opts.portBase, svc, r),
				// Streams the services create keep a copy on every node,
				// so that any one node may die.
				env:  []string{"NATS_REPLICAS=" + strconv.Itoa(clusterNodes)},
				tail: newLineTail(30), con: d.con,
			}
			if err := p.start(exe, d.dbURLs[svc], d.natsURL); err != nil {
				return err
			}
			d.children = append(d.children, p)
			urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d", p.port))
			names = append(names, p.name)
		}
		upstreams[svc] = strings.Join(urls, ",")
	}
	if err := d.startGateway(exe, upstreams); err != nil {
		return err
	}
	d.con.Printf("started %s and the gateway; waiting for GET /healthz...\n", strings.Join(names, ", "))
	return d.waitHealthy(ctx)
}

// clusterBanner says, under the gateway's line, what runs behind it.
func (d *devStack) clusterBanner(w io.Writer) {
	fmt.Fprintf(w, "  A cluster: %d NATS nodes forming one JetStream cluster (streams with %d replicas),\n", len(d.natsNodes), clusterNodes)
	fmt.Fprintf(w, "  %d replicas of every service (the sagas replicas are the saga coordinators),\n", serviceReplicas)
	fmt.Fprintf(w, "  the gateway balancing across them. Relays, projectors and the deadline poller\n")
	fmt.Fprintf(w, "  hold PostgreSQL leases: one replica of each works, the other takes over when it dies.\n\n")
	if d.natsNodes == nil {
		fmt.Fprintf(w, "  (NATS is the cluster NATS_URL names.)\n\n")
	}
}

// clusterPorts lists every process of the cluster under "for debugging".
func (d *devStack) clusterPorts(w io.Writer) {
	for _, p := range d.children {
		if p.name != gatewayName {
			fmt.Fprintf(w, "  %-11s http://127.0.0.1:%d\n", p.name, p.port)
		}
	}
	for _, n := range d.natsNodes {
		fmt.Fprintf(w, "  %-11s nats://127.0.0.1:%d\n", n.name, n.port)
	}
	fmt.Fprintf(w, "  %-11s %s\n", "NATS", d.natsURL)
}

// devProcess is one supervised child of the stack, for the chaos command.
type devProcess struct {
	Name string // "orders-1", "sagas-2", "nats-3", "gateway", "postgres"
	Kind string // "service", "coordinator", "nats", "gateway", "postgres"
	// Kill SIGKILLs the current incarnation's process group; the
	// supervisor restarts it.
	Kill func() error
}

// processes lists every supervised child. It may be called from another
// goroutine once ready is closed: the lists it reads no longer change
// then, and each Kill reads the current incarnation atomically.
func (d *devStack) processes() []devProcess {
	var out []devProcess
	if d.pg != nil {
		pg := d.pg
		out = append(out, devProcess{Name: "postgres", Kind: "postgres", Kill: func() error {
			// The postmaster alone, as a crash would end it; pgserver's
			// restart kills the backends it leaves behind.
			select {
			case <-pg.Done():
				// Its pid may be anyone's by now.
				return fmt.Errorf("postgres is not running: %w", os.ErrProcessDone)
			default:
			}
			return syscall.Kill(pg.PID(), syscall.SIGKILL)
		}})
	}
	for _, p := range append(append([]*serviceProc(nil), d.natsNodes...), d.children...) {
		out = append(out, devProcess{Name: p.name, Kind: p.kind, Kill: func() error {
			err := p.child().SignalGroup(syscall.SIGKILL)
			if errors.Is(err, os.ErrProcessDone) {
				return fmt.Errorf("%s is not running: %w", p.name, err)
			}
			return err
		}})
	}
	return out
}

// gatewayURL is the gateway's base URL, as the banner gives it.
func (d *devStack) gatewayURL() string {
	port := servicePort(d.opts.portBase, gatewayName)
	if d.opts.tls {
		// The certificate is for localhost, 127.0.0.1 and ::1.
		return fmt.Sprintf("https://localhost:%d", port)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}
