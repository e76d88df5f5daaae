package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/internal/childproc"
	"github.com/orderflow/orderflow/internal/natsembed"
	"github.com/orderflow/orderflow/internal/pgserver"
	"github.com/orderflow/orderflow/services/gateway"
	"github.com/orderflow/orderflow/services/gateway/auth"
	"github.com/orderflow/orderflow/services/internal/devtls"
	"github.com/orderflow/orderflow/services/internal/pgdb"
	"github.com/orderflow/orderflow/services/internal/serve"
)

const (
	healthTimeout = 30 * time.Second
	stopGrace     = 10 * time.Second
	// readyMarker starts the banner line that says everything answers.
	readyMarker = "orderflow dev stack is ready"
)

// services are the services the dev stack runs, in start order: every
// module of serve's registry, in the registry's order.
var services = func() []string {
	var names []string
	for _, m := range serve.Modules() {
		names = append(names, m.Name)
	}
	return names
}()

const defaultPortBase = 8080

// servicePort is the port of service in a stack whose ports start at
// base: its module's default port (the API contract's layout: gateway
// 8080, orders 8081, ..., sagas 8084) shifted by base - 8080.
func servicePort(base int, service string) int {
	if service == gatewayName {
		return base + gateway.DefaultPort - defaultPortBase
	}
	m, _ := serve.Lookup(service)
	return base + m.Port - defaultPortBase
}

// devTokenTTL is how long the tokens the banner prints are valid.
const devTokenTTL = 24 * time.Hour

// devCustomer is the customer of the banner's customer token and of the
// walk-through's orders.
const devCustomer = "c-42"

type devOptions struct {
	portBase int
	dataDir  string
	keep     bool
	tls      bool
	// cluster runs three NATS nodes as one JetStream cluster and two
	// replicas of every service behind the gateway (dev_cluster.go).
	cluster bool
	// maxExits is the exit within exitWindow that stops the stack; 0
	// means the constant maxExits.
	maxExits int
}

func runDev(ctx context.Context, args []string) error {
	// Whoever reads our output (a pager, tee) may be gone by the time we
	// shut down; a write to a closed pipe must then fail quietly instead
	// of killing us before the cluster and temp dirs are cleaned up.
	signal.Ignore(syscall.SIGPIPE)
	tuneGC() // the embedded NATS server's collector; the services tune their own
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	var opts devOptions
	fs.IntVar(&opts.portBase, "port-base", defaultPortBase, "first port: gateway N, orders N+1, inventory N+2, shipping N+3, sagas N+4")
	fs.StringVar(&opts.dataDir, "data-dir", "", "keep PostgreSQL's and NATS's data here across runs (default: a temporary directory)")
	fs.BoolVar(&opts.keep, "keep", false, "keep the temporary data directory at exit")
	fs.BoolVar(&opts.cluster, "cluster", false, "run three NATS nodes as one JetStream cluster (streams with 3 replicas) and two replicas of every service behind the gateway; the second replicas listen on N+11..N+14")
	fs.BoolVar(&opts.tls, "tls", false, "serve the gateway over HTTPS with a certificate from a throw-away CA made for this run (the banner says how to trust it)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: orderflow dev [flags]

Runs the stack on this machine: an embedded NATS server, a private
PostgreSQL cluster (unless DATABASE_URL names a superuser URL to use, or
NATS_URL a NATS server) and each service as a child process.

A child that exits (a service, or the private PostgreSQL) is restarted
with backoff; a "status:" line shows every change, and SIGUSR1
(kill -USR1 PID) prints a table of the children and their restarts.
Ctrl-C stops everything. So does a child that exits 5 times within a
minute, and then the data directory is kept for --data-dir.

With --cluster it runs three NATS nodes as one JetStream cluster (streams
with 3 replicas, each node a child process), two replicas of every service
(orders-1 on N+1, orders-2 on N+11, ...; the sagas replicas are the saga
coordinators) and the gateway balancing across them.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if last := opts.portBase + lastPortOffset(opts.cluster); opts.portBase < 1 || last > 65535 {
		return usagef("dev: --port-base %d out of range 1..%d", opts.portBase, 65535-lastPortOffset(opts.cluster))
	}
	// Registered before anything starts: SIGUSR1's default action would
	// end the stack.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	d := &devStack{opts: opts, con: newConsole(os.Stdout), pgTail: newLineTail(30), statusRequests: usr1}
	return d.run(ctx)
}

// devStack is the dev command's state; run owns it.
type devStack struct {
	opts devOptions
	con  *console

	dir    string
	ownDir bool

	nats    *natsembed.Server
	natsURL string

	pg       *pgserver.Server
	pgTail   *lineTail
	adminURL string

	children []*serviceProc
	// natsNodes are the NATS cluster's nodes, with --cluster; they stop
	// after the services.
	natsNodes []*serviceProc
	// dbURLs are each service's database URLs (pgdb.Provision's).
	dbURLs map[string]pgdb.URLs

	// secret signs the tokens the gateway accepts (auth.DevSecret).
	secret []byte
	// tls holds the gateway's certificate, with --tls.
	tls devtls.Files

	// statusRequests delivers SIGUSR1, which asks for the status table.
	statusRequests <-chan os.Signal
	// served is set once the banner is out: from then on clients may
	// hold acknowledged writes in the data directory.
	served bool
	// ready, if set, is closed right after the banner: from then on
	// processes may be called from another goroutine (the chaos command).
	ready chan struct{}
}

func (d *devStack) run(ctx context.Context) (err error) {
	defer func() {
		// A stack that stops on its own after it served keeps the data it
		// acknowledged, whatever its directory.
		abnormal := err != nil && d.served
		if sErr := d.shutdown(abnormal); sErr != nil {
			err = errors.Join(err, sErr)
		}
		if abnormal && d.ownDir {
			err = fmt.Errorf("%w\n\nThe data is kept in %s; run the stack on it again with:\n  orderflow dev --data-dir %s", err, d.dir, d.dir)
		}
	}()
	start := time.Now()
	err = d.start(ctx)
	if ctx.Err() != nil {
		// Interrupted while starting: the user asked to stop.
		d.con.Printf("interrupted, shutting down...\n")
		return nil
	}
	if err != nil {
		return err
	}
	d.banner(time.Since(start))
	d.served = true
	if d.ready != nil {
		close(d.ready)
	}
	return d.supervise(ctx)
}

func (d *devStack) start(ctx context.Context) error {
	if err := d.checkPorts(); err != nil {
		return err
	}
	if err := d.makeDir(); err != nil {
		return err
	}
	startNATS := d.startNATS
	if d.opts.cluster {
		startNATS = d.startNATSCluster
	}
	if err := startNATS(ctx); err != nil {
		return err
	}
	if err := d.startPostgres(ctx); err != nil {
		return err
	}
	urls := make(map[string]pgdb.URLs, len(services))
	for _, svc := range services {
		u, err := pgdb.Provision(ctx, d.adminURL, svc)
		if err != nil {
			return fmt.Errorf("provision the %s database: %w", svc, err)
		}
		urls[svc] = u
	}
	d.dbURLs = urls
	d.con.Printf("provisioned a database per service (%s), each with an owner role for migrations and a runtime role with DML rights only\n", strings.Join(services, ", "))

	secret, err := auth.DevSecret()
	if err != nil {
		return fmt.Errorf("the dev tokens' secret: %w", err)
	}
	d.secret = secret

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	if d.opts.cluster {
		return d.startReplicas(ctx, exe)
	}
	upstreams := make(map[string]string, len(services))
	for _, svc := range services {
		p := &serviceProc{name: svc, kind: serviceKind(svc), port: servicePort(d.opts.portBase, svc), tail: newLineTail(30), con: d.con}
		if err := p.start(exe, urls[svc], d.natsURL); err != nil {
			return err
		}
		d.children = append(d.children, p)
		upstreams[svc] = fmt.Sprintf("http://127.0.0.1:%d", p.port)
	}
	if err := d.startGateway(exe, upstreams); err != nil {
		return err
	}
	d.con.Printf("started %s and the gateway; waiting for GET /healthz...\n", strings.Join(services, ", "))
	return d.waitHealthy(ctx)
}

// startGateway starts the gateway in front of upstreams (service name ->
// base URLs, comma-separated), over HTTPS with --tls.
func (d *devStack) startGateway(exe string, upstreams map[string]string) error {
	gw := &serviceProc{name: gatewayName, kind: "gateway", port: servicePort(d.opts.portBase, gatewayName), tail: newLineTail(30), con: d.con}
	if d.opts.tls {
		var err error
		if d.tls, err = devtls.Generate(filepath.Join(d.dir, "tls")); err != nil {
			return err
		}
		if gw.client, err = trusting(d.tls.CA); err != nil {
			return err
		}
		gw.scheme = "https"
	}
	if err := gw.startGateway(exe, upstreams, d.secret, d.natsURL, d.tls); err != nil {
		return err
	}
	d.children = append(d.children, gw)
	return nil
}

// checkPorts fails early, naming the service, when a port is taken.
func (d *devStack) checkPorts() error {
	for _, np := range d.ports() {
		svc, port := np.name, np.port
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("port %d for %s is not free (%v); stop what uses it or pick another --port-base", port, svc, err)
		}
		l.Close()
	}
	return nil
}

func (d *devStack) makeDir() error {
	if d.opts.dataDir != "" {
		dir, err := filepath.Abs(d.opts.dataDir)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		d.dir = dir
		return nil
	}
	dir, err := os.MkdirTemp("", "orderflow-dev-")
	if err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	d.dir, d.ownDir = dir, true
	// When we are root, PostgreSQL runs as another OS user that must be
	// able to pass through this directory to its own.
	if err := os.Chmod(dir, 0o711); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	return nil
}

func (d *devStack) startNATS(ctx context.Context) error {
	if u := os.Getenv("NATS_URL"); u != "" {
		d.natsURL = u
		d.con.Printf("using NATS from NATS_URL (%s)\n", u)
		return nil
	}
	d.con.Printf("starting NATS...\n")
	t := time.Now()
	s, err := natsembed.Start(ctx, natsembed.Config{StoreDir: filepath.Join(d.dir, "nats")})
	if err != nil {
		return fmt.Errorf("start NATS: %w", err)
	}
	d.nats, d.natsURL = s, s.URL()
	d.con.Printf("NATS ready on %s in %s\n", d.natsURL, seconds(time.Since(t)))
	return nil
}

func (d *devStack) startPostgres(ctx context.Context) error {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		d.adminURL = u
		d.con.Printf("using PostgreSQL from DATABASE_URL (%s)\n", redactURL(u))
		return nil
	}
	d.con.Printf("starting PostgreSQL...\n")
	t := time.Now()
	s, err := pgserver.Start(ctx, pgserver.Config{
		Dir: filepath.Join(d.dir, "postgres"),
		Log: d.con.Writer("postgres", d.pgTail),
	})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	d.pg, d.adminURL = s, s.URL("postgres")
	d.con.Printf("PostgreSQL ready on 127.0.0.1:%d in %s\n", s.Port(), seconds(time.Since(t)))
	return nil
}

// waitHealthy waits until every service answers GET /healthz, one of them
// exits, or healthTimeout passes.
func (d *devStack) waitHealthy(ctx context.Context) error {
	deadline := time.Now().Add(healthTimeout)
	for _, p := range d.children {
		if err := p.waitServing(ctx, deadline); err != nil {
			if ctx.Err() != nil {
				return err
			}
			return fmt.Errorf("%s %w; its last log lines:\n%s", p.name, err, p.tail.String())
		}
	}
	return nil
}

// shutdown stops whatever start started, children first so that nothing
// they still do fails against a vanished NATS or database. A temporary
// data directory is removed unless --keep asks to keep it or the stack
// stopped abnormally.
func (d *devStack) shutdown(abnormal bool) error {
	t := time.Now()
	var errs []error
	stopServices(d.children, stopGrace)
	stopServices(d.natsNodes, stopGrace)
	if d.nats != nil {
		d.nats.Shutdown()
	}
	if d.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := d.pg.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop PostgreSQL: %w", err))
		}
		cancel()
	}
	switch {
	case d.dir == "":
	case d.ownDir && !d.opts.keep && !abnormal && len(errs) == 0:
		if err := os.RemoveAll(d.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove data dir: %w", err))
		}
	default:
		d.con.Printf("data kept in %s\n", d.dir)
	}
	if d.dir != "" {
		d.con.Printf("stopped in %s\n", seconds(time.Since(t)))
	}
	return errors.Join(errs...)
}

// stopServices sends SIGTERM to each service's process group, waits up to
// grace for all of them and SIGKILLs the groups of those still running.
func stopServices(procs []*serviceProc, grace time.Duration) {
	for _, p := range procs {
		_ = p.child().SignalGroup(syscall.SIGTERM)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	for _, p := range procs {
		select {
		case <-p.child().Done():
		case <-timer.C:
			// Grace is over for everyone still running.
			for _, q := range procs {
				_ = q.child().SignalGroup(syscall.SIGKILL)
			}
			<-p.child().Done()
		}
	}
	for _, p := range procs {
		<-p.child().Done()
	}
}

func (d *devStack) banner(took time.Duration) {
	b := d.opts.portBase
	base := func(svc string) string { return fmt.Sprintf("http://127.0.0.1:%d", servicePort(b, svc)) }
	gw := base(gatewayName)
	if d.opts.tls {
		// The certificate is for localhost, 127.0.0.1 and ::1.
		gw = fmt.Sprintf("https://localhost:%d", servicePort(b, gatewayName))
	}

	var w strings.Builder
	fmt.Fprintf(&w, "\n%s (%s)\n\n", readyMarker, seconds(took))
	fmt.Fprintf(&w, "  %-10s %s   the API: every request goes here, with a token\n\n", gatewayName, gw)
	fmt.Fprintf(&w, "  %-10s %s/console   the operator console: open it in a browser, sign in with ADMIN_TOKEN\n\n", "console", gw)
	if d.opts.cluster {
		d.clusterBanner(&w)
	}
	if d.opts.tls {
		fmt.Fprintf(&w, "  HTTPS with a certificate of a CA made for this run; trust it in curl with\n")
		fmt.Fprintf(&w, "    export CURL_CA_BUNDLE=%s\n", d.tls.CA)
		fmt.Fprintf(&w, "  (or curl --cacert %s ...)\n\n", d.tls.CA)
	}
	admin, customer, err := d.tokens()
	if err != nil {
		fmt.Fprintf(&w, "  no tokens: %v\n\n", err)
	} else {
		fmt.Fprintf(&w, "  Tokens the gateway accepts (HS256, valid %.0f hours; bin/orderflow token --role admin,\n", devTokenTTL.Hours())
		fmt.Fprintf(&w, "  or --role customer --sub %s, prints fresh ones). Paste both:\n", devCustomer)
		fmt.Fprintf(&w, "    export ADMIN_TOKEN=%s\n", admin)
		fmt.Fprintf(&w, "    export TOKEN=%s\n\n", customer)
		fmt.Fprintf(&w, "  ADMIN_TOKEN may do everything; TOKEN is customer %s: its own orders and\n", devCustomer)
		fmt.Fprintf(&w, "  shipments, and the inventory.\n\n")
	}
	fmt.Fprintf(&w, "  The services' own ports are for debugging (no tokens checked there):\n")
	if d.opts.cluster {
		d.clusterPorts(&w)
	} else {
		for _, svc := range services {
			fmt.Fprintf(&w, "  %-10s %s\n", svc, base(svc))
		}
		fmt.Fprintf(&w, "  %-10s %s\n", "NATS", d.natsURL)
	}
	fmt.Fprintf(&w, "  %-10s %s\n", "projection", projectionsHint(d.adminURL, d.pg != nil))
	if d.pg != nil {
		fmt.Fprintf(&w, "  %-10s %s\n", "PostgreSQL", d.adminURL)
	} else {
		fmt.Fprintf(&w, "  %-10s %s\n", "PostgreSQL", redactURL(d.adminURL))
	}
	switch {
	case !d.ownDir:
		fmt.Fprintf(&w, "  %-10s %s (kept)\n", "data", d.dir)
	case d.opts.keep:
		fmt.Fprintf(&w, "  %-10s %s (kept at exit: --keep)\n", "data", d.dir)
	default:
		fmt.Fprintf(&w, "  %-10s %s (removed at Ctrl-C; kept if the stack fails)\n", "data", d.dir)
	}
	fmt.Fprintf(&w, `
Try, through the gateway (after the two exports above):
  A="Authorization: Bearer $ADMIN_TOKEN"; C="Authorization: Bearer $TOKEN"

  # stock up as admin, then look at it as the customer
  curl -i -X POST %[1]s/api/inventory/SKU-1/restock -H "$A" -d '{"quantity": 50}'
  curl -s %[1]s/api/inventory/SKU-1 -H "$C"

  # place an order as %[5]s (answers order_id and saga_id); its saga confirms it
  curl -i -X POST %[1]s/api/orders -H "$C" -d '{"customer_id": "%[5]s", "items": [{"sku": "SKU-1", "quantity": 2, "unit_price_cents": 1299}], "shipping_address": {"name": "Ada L.", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}}'
  curl -s %[1]s/api/orders/ORDER_ID -H "$C"

  # the saga that drove it (admin): steps, attempts, timings and full history
  curl -s %[1]s/api/sagas/SAGA_ID -H "$A"
  curl -s '%[1]s/api/sagas?status=failed' -H "$A"

  # find its shipment, dispatch it as admin: the order is shipped, the stock consumed
  curl -s '%[1]s/api/shipments?order_id=ORDER_ID' -H "$C"
  curl -i -X POST %[1]s/api/shipments/SHIPMENT_ID/dispatch -H "$A" -d '{}'
  curl -s %[1]s/api/orders/ORDER_ID -H "$C"

  # cancel an order while pending or confirmed: the saga compensates
  curl -i -X POST %[1]s/api/orders/ORDER_ID/cancel -H "$C" -d '{}'

  # no token: 401; the customer at /admin: 403; the admin: every projection
  curl -i %[1]s/api/orders/ORDER_ID
  curl -i %[1]s/admin/projections -H "$C"
  curl -s %[1]s/admin/projections -H "$A"

A child that exits is restarted (PostgreSQL on the same data and port); a
"status:" line shows every change, and kill -USR1 %[2]d prints a table of
the children, their PIDs and restarts. A child that exits %[3]d times within
%[4]s stops the stack.
Press Ctrl-C to stop everything.

`, gw, os.Getpid(), cmp.Or(d.opts.maxExits, maxExits), exitWindow, devCustomer)
	d.con.Printf("%s", w.String())
}

// tokens signs the banner's admin token and customer token.
func (d *devStack) tokens() (admin, customer string, err error) {
	admin, err = auth.Sign(d.secret, auth.Principal{Subject: "admin", Role: auth.RoleAdmin}, devTokenTTL)
	if err != nil {
		return "", "", err
	}
	customer, err = auth.Sign(d.secret, auth.Principal{Subject: devCustomer, Role: auth.RoleCustomer}, devTokenTTL)
	if err != nil {
		return "", "", err
	}
	return admin, customer, nil
}

// serviceProc is one service running as a child process.
type serviceProc struct {
	// name is the child's name in the output; service, when set, is the
	// service it runs (name is then e.g. "orders-2"), else name is.
	name    string
	service string
	// kind is what processes reports: service, coordinator, nats, gateway.
	kind string
	port int
	// env is added to the child's environment, replacing what the dev
	// command's own environment has under the same keys.
	env []string
	// probe, when set, says whether the child serves, instead of GET
	// /healthz on port; probeWhat names it in errors.
	probe     func(ctx context.Context) error
	probeWhat string
	tail      *lineTail
	con       *console
	// scheme and client reach its /healthz: http and a plain client
	// unless it serves HTTPS.
	scheme string
	client *http.Client

	// command makes the command of a new incarnation, the same each time.
	command func() *exec.Cmd
	// proc is the running incarnation. The supervisor replaces it on a
	// restart while the chaos command may kill it, hence the atomic.
	proc atomic.Pointer[childproc.Child]
}

// child is the running (or last) incarnation.
func (p *serviceProc) child() *childproc.Child { return p.proc.Load() }

// start runs the service as its runtime role (DATABASE_URL), with the
// owner role's URL for its migrations and rebuilds (OWNER_DATABASE_URL).
// A restart (spawn) runs it again with the same command.
func (p *serviceProc) start(exe string, db pgdb.URLs, natsURL string) error {
	p.command = func() *exec.Cmd {
		cmd := exec.Command(exe, "serve", cmp.Or(p.service, p.name), "--addr", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)))
		drop := append([]string{"DATABASE_URL", "OWNER_DATABASE_URL", "NATS_URL", "ADDR"}, envKeys(p.env)...)
		cmd.Env = append(append(envWithout(os.Environ(), drop...),
			"DATABASE_URL="+db.Service, "OWNER_DATABASE_URL="+db.Owner, "NATS_URL="+natsURL), p.env...)
		return cmd
	}
	return p.spawn()
}

// startGateway runs the gateway in front of the services at upstreams
// (service name -> base URL), verifying tokens signed with secret. The
// secret goes in the environment, which other users cannot read, not on
// the command line, which they can.
func (p *serviceProc) startGateway(exe string, upstreams map[string]string, secret []byte, natsURL string, tls devtls.Files) error {
	p.command = func() *exec.Cmd {
		cmd := exec.Command(exe, "serve", gatewayName, "--addr", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)))
		drop := []string{"DATABASE_URL", "OWNER_DATABASE_URL", "ADDR", "JWKS_URL", auth.SecretEnv, "ORDERFLOW_JWT_SECRET_FILE",
			"NATS_URL", "TLS_CERT", "TLS_KEY"}
		// The gateway registers on NATS as the services do (nats micro
		// ls lists it); its upstreams are the static URLs below.
		env := []string{auth.SecretEnv + "=" + string(secret), "NATS_URL=" + natsURL}
		if tls.Cert != "" {
			env = append(env, "TLS_CERT="+tls.Cert, "TLS_KEY="+tls.Key)
		}
		for _, svc := range gateway.Services() {
			key := strings.ToUpper(svc) + "_URL"
			drop = append(drop, key)
			env = append(env, key+"="+upstreams[svc])
		}
		cmd.Env = append(envWithout(os.Environ(), drop...), env...)
		return cmd
	}
	return p.spawn()
}

// spawn starts a new incarnation of the service.
func (p *serviceProc) spawn() error {
	cmd := p.command()
	out := p.con.Writer(p.name, p.tail)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group keeps a terminal's Ctrl-C from reaching the
	// service, so that the dev command stops the services in order; the
	// kernel sends SIGTERM should the dev command die first (Linux).
	cmd.SysProcAttr = childproc.SysProcAttr(nil, syscall.SIGTERM)
	cmd.WaitDelay = 2 * time.Second
	proc, err := childproc.Start(cmd)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.proc.Store(proc)
	return nil
}

// envKeys are the keys of env's KEY=VALUE entries.
func envKeys(env []string) []string {
	keys := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		keys = append(keys, k)
	}
	return keys
}

func envWithout(env []string, keys ...string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		for _, k := range keys {
			if strings.HasPrefix(kv, k+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
}

// redactURL hides a URL's password for the console.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return "a keyword/value DSN"
	}
	return u.Redacted()
}

// trusting is an HTTP client that trusts only the CA in caFile, for the
// dev command's own probes of a gateway it serves over HTTPS.
func trusting(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no certificate", caFile)
	}
	return &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}, nil
}
