package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/gateway"
	"github.com/orderflow/orderflow/services/gateway/auth"
)

var build struct {
	once sync.Once
	path string
	err  error
}

// binary builds the orderflow command once per test binary.
func binary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "orderflow-bin-")
		if err != nil {
			build.err = err
			return
		}
		build.path = filepath.Join(dir, "orderflow")
		// go test puts its own toolchain first on PATH.
		cmd := exec.Command("go", "build", "-o", build.path, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

func TestMain(m *testing.M) {
	testenv.AtExit(func() {
		if build.path != "" {
			os.RemoveAll(filepath.Dir(build.path))
		}
	})
	testenv.Main(m)
}

// syncBuffer collects output written from several goroutines.
type syncBuffer = testenv.Buffer

type devRun struct {
	cmd   *exec.Cmd
	base  int
	out   *syncBuffer
	done  chan struct{}
	err   error
	dir   string // the temporary data dir the banner names
	ports []int  // every port the stack listens on
}

// freePortBase finds a port base whose stack ports (N..N+4, or N..N+14
// with cluster) are all free, below the kernel's ephemeral range: there,
// any process's outgoing connection or listener on port 0 (the private
// PostgreSQL, NATS, other tests) could take one of them between this
// check and the service's bind.
func freePortBase(t *testing.T, cluster bool) int {
	t.Helper()
	low := ephemeralLow()
	last := lastPortOffset(cluster)
	for range 200 {
		base := 10000 + rand.IntN(low-10000-last-1)
		free := true
		for p := base; p <= base+last && free; p++ {
			free = portFree(p)
		}
		if free {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports", last+1)
	return 0
}

// ephemeralLow is the first port the kernel hands out for port 0.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if f := strings.Fields(string(b)); err == nil && len(f) == 2 {
		if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
			return n
		}
	}
	return 32768 // Linux's default
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

var (
	dataRE = regexp.MustCompile(`(?m)^\s+data\s+(\S+) \((removed at Ctrl-C|kept)`)
	pgRE   = regexp.MustCompile(`PostgreSQL ready on 127\.0\.0\.1:(\d+)`)
	natsRE = regexp.MustCompile(`NATS ready on nats://127\.0\.0\.1:(\d+)`)
)

// startDev runs "orderflow dev" with an embedded NATS, a private
// PostgreSQL and the extra flags given, and waits for its banner.
func startDev(t *testing.T, flags ...string) *devRun {
	t.Helper()
	r := &devRun{base: freePortBase(t, false), out: &syncBuffer{}, done: make(chan struct{})}
	r.cmd = exec.Command(binary(t), append([]string{"dev", "--port-base", strconv.Itoa(r.base)}, flags...)...)
	// The secret in the environment keeps the stack from making one in
	// the user's configuration directory.
	r.cmd.Env = append(envWithout(os.Environ(), "DATABASE_URL", "NATS_URL", "ADDR", auth.SecretEnv), auth.SecretEnv+"="+devTestSecret)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		// A test that failed midway still stops the stack the way a user
		// would, so that it removes its data dir; SIGKILL is the fallback.
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
	for _, re := range []*regexp.Regexp{pgRE, natsRE} {
		m := re.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("output lacks %s", re)
		}
		p, _ := strconv.Atoi(m[1])
		r.ports = append(r.ports, p)
	}
	for i := 0; i <= 4; i++ {
		r.ports = append(r.ports, r.base+i)
	}
	return r
}

// devTestSecret is the dev stacks' HS256 secret in these tests.
const devTestSecret = "the dev stack tests' secret, 32 bytes or more"

// waitForRE waits until dev's output matches re.
func (r *devRun) waitForRE(t *testing.T, re *regexp.Regexp, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for !re.MatchString(r.out.String()) {
		select {
		case <-r.done:
			t.Fatalf("dev exited (%v) before printing %s", r.err, re)
		case <-deadline:
			t.Fatalf("no %s within %s", re, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (r *devRun) waitFor(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for !strings.Contains(r.out.String(), s) {
		select {
		case <-r.done:
			t.Fatalf("dev exited (%v) before printing %q", r.err, s)
		case <-deadline:
			t.Fatalf("no %q within %s", s, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitExit waits for dev to exit and returns its exit code.
func (r *devRun) waitExit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		t.Fatalf("dev still running %s after the signal", timeout)
	}
	var ee *exec.ExitError
	if errors.As(r.err, &ee) {
		return ee.ExitCode()
	}
	if r.err != nil {
		t.Fatalf("wait: %v", r.err)
	}
	return 0
}

// assertAllGone checks that dev left nothing behind: no process mentions
// its data dir, which every postgres process does, no service process
// remains, every port is free and the data dir is removed.
func (r *devRun) assertAllGone(t *testing.T) {
	t.Helper()
	r.assertStopped(t)
	if _, err := os.Stat(r.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir %s not removed (%v)", r.dir, err)
	}
}

// assertStopped checks that no process of the stack runs and every port
// is free.
func (r *devRun) assertStopped(t *testing.T) {
	t.Helper()
	if pids := processesMatching(r.dir); len(pids) > 0 {
		t.Errorf("processes still running on %s: %v", r.dir, pids)
	}
	if pids := processesIn(r.dir); len(pids) > 0 {
		t.Errorf("PostgreSQL processes still running in %s: %v", r.dir, pids)
	}
	for i := 0; i <= 4; i++ {
		addr := "127.0.0.1:" + strconv.Itoa(r.base+i)
		if pids := processesMatching(addr); len(pids) > 0 {
			t.Errorf("service processes for %s still running: %v", addr, pids)
		}
	}
	for _, p := range r.ports {
		if !portFree(p) {
			t.Errorf("port %d still bound", p)
		}
	}
}

// processes lists the live processes for whose /proc directory match
// holds.
func processes(match func(procDir string) bool) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && match(filepath.Join("/proc", e.Name())) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processesMatching lists the live processes whose command line contains s.
func processesMatching(s string) []int {
	return processes(func(dir string) bool {
		cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		return err == nil && strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), s)
	})
}

// processesIn lists the live processes whose working directory is under
// dir. Every PostgreSQL process works in its data directory, backends
// included, whose command lines do not name it.
func processesIn(dir string) []int {
	return processes(func(proc string) bool {
		cwd, err := os.Readlink(filepath.Join(proc, "cwd"))
		return err == nil && strings.HasPrefix(cwd, dir+"/")
	})
}

// bannerRE finds the gateway's URL and the two tokens in dev's banner, in
// the order the banner must give them: the gateway first, then the
// tokens, then the services' own ports, for debugging.
var bannerRE = regexp.MustCompile(`(?s)` + regexp.QuoteMeta(readyMarker) + `[^\n]*\n\s*gateway\s+(http://127\.0\.0\.1:\d+)\s.*?` +
	`export ADMIN_TOKEN=(\S+)\n.*?export TOKEN=(\S+)\n.*?for debugging.*?\n\s+orders\s+http://`)

// gatewayRequest sends a request to the dev stack's gateway with token
// (none when empty) and returns the status and body, or fails the test
// when no answer comes.
func gatewayRequest(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDevServesAndStopsCleanly(t *testing.T) {
	r := startDev(t)

	for i := 0; i <= 4; i++ {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", r.base+i))
		if err != nil {
			t.Fatalf("healthz on %d: %v", r.base+i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("healthz on %d: %d", r.base+i, resp.StatusCode)
		}
	}

	// The banner gives the gateway and tokens it accepts, ready to paste.
	m := bannerRE.FindStringSubmatch(r.out.String())
	if m == nil {
		t.Fatalf("the banner lacks the gateway URL, then export ADMIN_TOKEN=..., export TOKEN=... and the services for debugging")
	}
	gw, admin, customer := m[1], m[2], m[3]
	if want := fmt.Sprintf("http://127.0.0.1:%d", r.base); gw != want {
		t.Errorf("the banner's gateway is %s, want %s", gw, want)
	}
	for _, tt := range []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"no token", http.MethodGet, "/api/inventory/SKU-1", "", "", http.StatusUnauthorized},
		{"a customer restocks", http.MethodPost, "/api/inventory/SKU-1/restock", customer, `{"quantity":5}`, http.StatusForbidden},
		{"the admin restocks", http.MethodPost, "/api/inventory/SKU-1/restock", admin, `{"quantity":5}`, http.StatusAccepted},
		{"a customer at /admin", http.MethodGet, "/admin/projections", customer, "", http.StatusForbidden},
		{"the admin at /admin", http.MethodGet, "/admin/projections", admin, "", http.StatusOK},
	} {
		if code, body := gatewayRequest(t, tt.method, gw+tt.path, tt.token, tt.body); code != tt.want {
			t.Errorf("%s: %s %s answered %d %s, want %d", tt.name, tt.method, tt.path, code, body, tt.want)
		}
	}
	// The customer token reads what the admin stocked, once projected.
	for deadline := time.Now().Add(time.Minute); ; {
		code, body := gatewayRequest(t, http.MethodGet, gw+"/api/inventory/SKU-1", customer, "")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the customer's GET /api/inventory/SKU-1: %d %s a minute after the restock", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := gatewayRequest(t, http.MethodGet, gw+"/readyz", "", ""); code != http.StatusOK {
		t.Errorf("the gateway's readyz: %d %s, want 200 with every service up", code, body)
	}

	if pids := processesMatching(r.dir); len(pids) == 0 {
		t.Fatalf("no postgres process on %s while the stack runs; the checks below would prove nothing", r.dir)
	}
	if n := len(processesIn(r.dir)); n < 2 {
		t.Fatalf("%d processes work in %s, want the postmaster and its workers; the checks below would prove nothing", n, r.dir)
	}
	if pids := r.servicePIDs(gatewayName); len(pids) != 1 {
		t.Fatalf("gateway processes %v, want one; the checks below would prove nothing", pids)
	}

	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := r.waitExit(t, time.Minute); code != 0 {
		t.Errorf("dev exited with %d after SIGINT, want 0", code)
	}
	r.assertAllGone(t)
}

func TestUsage(t *testing.T) {
	// What the cases below leave out must not come from the environment.
	for _, key := range []string{auth.SecretEnv, "ORDERFLOW_JWT_SECRET_FILE", "JWKS_URL", "ORDERS_URL", "INVENTORY_URL", "SHIPPING_URL", "SAGAS_URL"} {
		t.Setenv(key, "")
	}
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"no command", nil, 2},
		{"unknown command", []string{"frobnicate"}, 2},
		{"help", []string{"-h"}, 0},
		{"serve help", []string{"serve", "-h"}, 0},
		{"serve without service", []string{"serve"}, 2},
		{"serve unknown service", []string{"serve", "billing"}, 2},
		{"serve extra args", []string{"serve", "orders", "extra"}, 2},
		{"serve bad flag", []string{"serve", "orders", "--nope"}, 2},
		{"serve bad log format", []string{"serve", "orders", "--log-format", "xml"}, 2},
		{"serve gateway without upstreams", []string{"serve", "gateway", "--jwt-secret", devTestSecret}, 2},
		{"serve gateway without a secret", []string{"serve", "gateway",
			"--orders-url", "http://a", "--inventory-url", "http://b", "--shipping-url", "http://c", "--sagas-url", "http://d"}, 2},
		{"serve gateway with a database", []string{"serve", "gateway", "--database-url", "postgres://x"}, 2},
		{"serve orders with a gateway flag", []string{"serve", "orders", "--orders-url", "http://a"}, 2},
		{"dev help", []string{"dev", "-h"}, 0},
		{"dev bad port base", []string{"dev", "--port-base", "70000"}, 2},
		{"dev extra args", []string{"dev", "now"}, 2},
		{"bench help", []string{"bench", "-h"}, 0},
		{"bench bad flag", []string{"bench", "--nope"}, 2},
		{"bench extra args", []string{"bench", "now"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // nothing here may get as far as starting anything
			var stderr bytes.Buffer
			if got := exitCode(run(ctx, tt.args), &stderr); got != tt.code {
				t.Errorf("exit code %d, want %d (%s)", got, tt.code, stderr.String())
			}
		})
	}
}

func TestLineWriter(t *testing.T) {
	var out bytes.Buffer
	con := &console{w: &out}
	tail := newLineTail(2)
	w := con.Writer("orders", tail)
	for _, chunk := range []string{"first li", "ne\nsecond\r\nthi", "rd\n"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	want := "orders    | first line\norders    | second\norders    | third\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
	if got := tail.String(); got != "  second\n  third" {
		t.Errorf("tail %q", got)
	}
	if strings.Contains(out.String(), "\x1b[") {
		t.Error("color codes on a console without a terminal")
	}
}

// httpClient bounds every request of these tests; a service waiting on a
// dead database answers well within it.
var httpClient = &http.Client{Timeout: 30 * time.Second}

// restock asks the inventory service on port for quantity more of sku and
// returns the status, or the error of a request that got no answer.
func restock(ctx context.Context, port int, sku string, quantity int) (int, error) {
	url := fmt.Sprintf("http://127.0.0.1:%d/api/inventory/%s/restock", port, sku)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(fmt.Sprintf(`{"quantity":%d}`, quantity)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// mustRestock restocks and fails the test unless the answer is 202.
func mustRestock(t *testing.T, port int, sku string, quantity int) {
	t.Helper()
	code, err := restock(context.Background(), port, sku, quantity)
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("restock %s: %d %v, want 202", sku, code, err)
	}
}

// onHand reads the stock read model of sku; ok is false while it has no
// row for it (404) or the service does not answer.
func onHand(port int, sku string) (n int, ok bool) {
	resp, err := httpClient.Get(fmt.Sprintf("http://127.0.0.1:%d/api/inventory/%s", port, sku))
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	var body struct {
		OnHand int `json:"on_hand"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		return 0, false
	}
	return body.OnHand, true
}

// waitOnHand polls the read model until it shows at least want of sku and
// returns what it shows then.
func waitOnHand(t *testing.T, port int, sku string, want int, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n, ok := onHand(port, sku)
		if ok && n >= want {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s shows on_hand %d (found: %v) after %s, want at least %d", sku, n, ok, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// healthy reports whether GET /healthz on port answers 200.
func healthy(port int) bool {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// servicePIDs lists the processes serving svc for this stack.
func (r *devRun) servicePIDs(svc string) []int {
	return processesMatching(fmt.Sprintf("serve %s --addr 127.0.0.1:%d", svc, servicePort(r.base, svc)))
}

// postmasters lists the postmasters of this stack's data directory (their
// command line names it; the backends' do not).
func (r *devRun) postmasters() []int {
	// A backend that was just forked still shows the postmaster's command
	// line until it sets its own title, so the postmaster is told apart by
	// its parent, which is not a postgres process of this data directory.
	matching := processesMatching(filepath.Join(r.dir, "postgres", "data") + " ")
	var out []int
	for _, pid := range matching {
		if !slices.Contains(matching, parentPID(pid)) {
			out = append(out, pid)
		}
	}
	return out
}

// parentPID reads the parent of pid from /proc/<pid>/stat ("pid (comm)
// state ppid ..."; comm may hold spaces and parentheses), or 0.
func parentPID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

func onlyPID(t *testing.T, what string, pids []int) int {
	t.Helper()
	if len(pids) != 1 {
		t.Fatalf("want one %s process, found %v", what, pids)
	}
	return pids[0]
}

// upAgainRE is dev's line for a child that serves again after an exit.
var upAgainRE = regexp.MustCompile(`(\w+) is up again \(pid \d+\), (\S+) after it exited`)

// A SIGKILLed service is restarted and serves again within 10 s, on the
// same data; the status output counts the restart.
func TestDevRestartsAKilledService(t *testing.T) {
	r := startDev(t)
	port := servicePort(r.base, "inventory")
	mustRestock(t, port, "SKU-R", 5)
	old := onlyPID(t, "inventory", r.servicePIDs("inventory"))

	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// Generous for a busy machine; the bound that matters is checked below.
	deadline := killed.Add(time.Minute)
	for {
		pids := r.servicePIDs("inventory")
		if len(pids) == 1 && pids[0] != old && healthy(port) {
			break
		}
		select {
		case <-r.done:
			t.Fatalf("dev exited (%v) after a service was killed", r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("inventory not back a minute after SIGKILL (processes %v)", pids)
		}
		time.Sleep(20 * time.Millisecond)
	}
	back := time.Since(killed)
	t.Logf("inventory answered GET /healthz again %s after SIGKILL", back.Round(time.Millisecond))
	if back > 10*time.Second {
		t.Errorf("inventory took %s to come back, want at most 10s", back)
	}

	r.waitFor(t, "inventory up (restarts 1)", 30*time.Second)
	out := r.out.String()
	for _, want := range []string{
		"inventory exited (signal: killed); restarting it in 100ms",
		"inventory starting (restarts 1)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if m := upAgainRE.FindStringSubmatch(out); m == nil || m[1] != "inventory" {
		t.Errorf("output lacks inventory's up-again line (%v)", m)
	} else {
		t.Logf("dev says: %s", m[0])
	}

	// What it acknowledged before is there, and it takes writes again.
	waitOnHand(t, port, "SKU-R", 5, 30*time.Second)
	mustRestock(t, port, "SKU-R", 2)
	if n := waitOnHand(t, port, "SKU-R", 7, 30*time.Second); n != 7 {
		t.Errorf("on_hand %d, want 7", n)
	}

	// The status table names the restart and why the child exited.
	if err := r.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "status of the dev stack", 30*time.Second)
	row := regexp.MustCompile(`(?m)^\s+inventory\s+up\s+\d+\s+\S+\s+1\s+signal: killed, \S+ ago$`)
	r.waitForRE(t, row, 10*time.Second)
	if !regexp.MustCompile(`(?m)^\s+postgres\s+up\s+\d+\s+\S+\s+0\s+-$`).MatchString(r.out.String()) {
		t.Error("status table lacks postgres, up and never restarted")
	}

	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := r.waitExit(t, time.Minute); code != 0 {
		t.Errorf("dev exited with %d after SIGINT, want 0", code)
	}
	r.assertAllGone(t)
}

// restockLoad restocks one sku by 1 from several goroutines and counts
// what it was told: 202s (acknowledged, each must be kept) and requests
// whose outcome is unknown (an error status or no answer: each may or may
// not have landed).
type restockLoad struct {
	mu       sync.Mutex
	acked    int
	unknown  int
	answers  map[string]int
	killedAt time.Time // zero until the kill
	// failedAt is when the first failure after the kill came back: a
	// backend may finish a request or two after its postmaster died.
	failedAt time.Time
	// firstBack is when a request sent after failedAt got a 202.
	firstBack time.Time
}

func (l *restockLoad) run(ctx context.Context, port int, sku string) {
	for ctx.Err() == nil {
		l.mu.Lock()
		sentAfterFailure := !l.failedAt.IsZero()
		l.mu.Unlock()
		code, err := restock(ctx, port, sku, 1)
		l.mu.Lock()
		switch {
		case code == http.StatusAccepted:
			l.acked++
			if sentAfterFailure && l.firstBack.IsZero() {
				l.firstBack = time.Now()
			}
		case err != nil:
			l.unknown++
			l.answers["no answer"]++
		default:
			l.unknown++
			l.answers[strconv.Itoa(code)]++
		}
		if code != http.StatusAccepted && !l.killedAt.IsZero() && l.failedAt.IsZero() {
			l.failedAt = time.Now()
		}
		l.mu.Unlock()
		if code != http.StatusAccepted {
			// Paces the retries of an outage; it waits for nothing.
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

func (l *restockLoad) snapshot() (acked, unknown int, firstBack time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked, l.unknown, l.firstBack
}

// A SIGKILLed PostgreSQL is restarted on the same data and port; the
// services recover on their own within 10 s, and every restock that was
// acknowledged, before or during the outage, is in the read model.
func TestDevRestartsAKilledPostgres(t *testing.T) {
	r := startDev(t)
	port := servicePort(r.base, "inventory")
	const sku = "SKU-PG"
	load := &restockLoad{answers: map[string]int{}}
	for range 20 {
		mustRestock(t, port, sku, 1)
		load.acked++
	}
	ctx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		stopLoad()
		wg.Wait()
	})
	for range 4 {
		wg.Go(func() { load.run(ctx, port, sku) })
	}
	// Some load on a live server first, so that the kill meets requests
	// in flight.
	for deadline := time.Now().Add(time.Minute); ; {
		if acked, _, _ := load.snapshot(); acked >= 40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the load got no 20 restocks acknowledged in a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}

	old := onlyPID(t, "postmaster", r.postmasters())
	load.mu.Lock()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		load.mu.Unlock()
		t.Fatal(err)
	}
	killed := time.Now()
	load.killedAt = killed
	ackedAtKill := load.acked
	load.mu.Unlock()

	// Back: after the outage showed, a restock is acknowledged again.
	// Generous for a busy machine; the bound that matters is checked below.
	for deadline := killed.Add(2 * time.Minute); ; {
		if acked, _, firstBack := load.snapshot(); !firstBack.IsZero() && acked >= ackedAtKill+20 {
			break
		}
		select {
		case <-r.done:
			t.Fatalf("dev exited (%v) after PostgreSQL was killed", r.err)
		default:
		}
		if time.Now().After(deadline) {
			load.mu.Lock()
			defer load.mu.Unlock()
			t.Fatalf("no outage and recovery within 2 minutes of the kill: failure seen at %v, %d acknowledged since the kill (answers: %v)",
				load.failedAt, load.acked-ackedAtKill, load.answers)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopLoad()
	wg.Wait()
	acked, unknown, firstBack := load.snapshot()
	back := firstBack.Sub(killed)
	t.Logf("restocks acknowledged again %s after SIGKILL of PostgreSQL; %d acknowledged, %d unknown (%v)",
		back.Round(time.Millisecond), acked, unknown, load.answers)
	if back > 10*time.Second {
		t.Errorf("the stack took %s to take writes again, want at most 10s", back)
	}

	// Restarted on the same port, as a new process.
	pm := onlyPID(t, "postmaster", r.postmasters())
	if pm == old {
		t.Fatalf("postmaster %d is the killed one", pm)
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pm))
	if pgPort := strconv.Itoa(r.ports[0]); !strings.Contains(string(cmdline), "\x00-p\x00"+pgPort+"\x00") {
		t.Errorf("new postmaster does not listen on port %s: %q", pgPort, cmdline)
	}
	r.waitFor(t, "postgres up (restarts 1)", 30*time.Second)
	if m := upAgainRE.FindStringSubmatch(r.out.String()); m == nil || m[1] != "postgres" {
		t.Errorf("output lacks postgres's up-again line (%v)", m)
	} else {
		t.Logf("dev says: %s", m[0])
	}

	// Every acknowledged restock is kept; none appears from nowhere.
	n := waitOnHand(t, port, sku, acked, time.Minute)
	if n > acked+unknown {
		t.Errorf("on_hand %d, more than the %d acknowledged and %d unknown restocks", n, acked, unknown)
	}
	t.Logf("on_hand %d: %d acknowledged, %d unknown", n, acked, unknown)
	if strings.Contains(r.out.String(), "keeps dying") {
		t.Error("a child kept dying while PostgreSQL restarted")
	}

	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := r.waitExit(t, time.Minute); code != 0 {
		t.Errorf("dev exited with %d after SIGINT, want 0", code)
	}
	r.assertAllGone(t)
}

// A service that keeps dying (here: its port is taken, so each restart
// fails) stops the stack, which names it, says why, and keeps the
// temporary data directory, on which a new stack then serves what was
// acknowledged.
func TestDevStopsWhenAServiceKeepsDying(t *testing.T) {
	r := startDev(t)
	t.Cleanup(func() { os.RemoveAll(r.dir) })
	port := servicePort(r.base, "inventory")
	addr := "127.0.0.1:" + strconv.Itoa(port)
	mustRestock(t, port, "SKU-K", 7)

	// Kill inventory and take its port before a restart can; should a
	// restart win the race, kill that one too.
	var hold net.Listener
	for deadline := time.Now().Add(time.Minute); hold == nil; {
		for _, pid := range r.servicePIDs("inventory") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if l, err := net.Listen("tcp", addr); err == nil {
			hold = l
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("could not take %s from inventory within a minute", addr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The restarts find the port taken and exit; dev gives up after 5.
	code := r.waitExit(t, 3*time.Minute)
	hold.Close()
	if code == 0 {
		t.Error("dev exited with 0 after a service kept dying")
	}
	out := r.out.String()
	for _, want := range []string{
		"inventory keeps dying: 5 exits within 1m0s, the last: exit status 1",
		"address already in use", // why, from its last log lines
		"inventory failed (restarts 4)",
		"data kept in " + r.dir,
		"orderflow dev --data-dir " + r.dir,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	r.assertStopped(t)
	if _, err := os.Stat(filepath.Join(r.dir, "postgres", "data", "PG_VERSION")); err != nil {
		t.Fatalf("the data dir was not kept: %v", err)
	}

	// The printed command serves the kept data.
	r2 := startDev(t, "--data-dir", r.dir)
	if r2.dir != r.dir {
		t.Fatalf("the second stack runs on %s, want %s", r2.dir, r.dir)
	}
	if n := waitOnHand(t, servicePort(r2.base, "inventory"), "SKU-K", 7, time.Minute); n != 7 {
		t.Errorf("on_hand %d on the kept data, want 7", n)
	}
	if err := r2.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := r2.waitExit(t, time.Minute); code != 0 {
		t.Errorf("dev --data-dir exited with %d after SIGINT, want 0", code)
	}
	r2.assertStopped(t)
	if _, err := os.Stat(r.dir); err != nil {
		t.Errorf("--data-dir %s removed at exit: %v", r.dir, err)
	}
}

func TestServeGatewayFlags(t *testing.T) {
	for _, key := range []string{auth.SecretEnv, "ORDERFLOW_JWT_SECRET_FILE", "JWKS_URL", "ORDERS_URL", "INVENTORY_URL",
		"SHIPPING_URL", "SAGAS_URL", "RATE_LIMIT", "RATE_BURST", "UPSTREAM_TIMEOUT"} {
		t.Setenv(key, "")
	}
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(devTestSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	upstreams := []string{"--orders-url", "http://a:1, http://b:2", "--inventory-url", "http://c:3",
		"--shipping-url", "http://d:4", "--sagas-url", "http://e:5/"}
	parse := func(t *testing.T, args ...string) (gateway.Config, error) {
		t.Helper()
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		o := gatewayFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return o.config(":9", "", nil)
	}

	cfg, err := parse(t, append(upstreams, "--jwt-secret", devTestSecret, "--rate-limit", "5", "--rate-burst", "7", "--upstream-timeout", "3s")...)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Upstreams["orders"]; !slices.Equal(got, []string{"http://a:1", "http://b:2"}) {
		t.Errorf("orders upstreams %q, want both, trimmed", got)
	}
	if string(cfg.JWTSecret) != devTestSecret || cfg.RateLimit != 5 || cfg.RateBurst != 7 || cfg.UpstreamTimeout != 3*time.Second || cfg.Addr != ":9" {
		t.Errorf("config %+v, want the flags' values", cfg)
	}
	if cfg, err = parse(t, append(upstreams, "--jwt-secret-file", secretFile)...); err != nil || string(cfg.JWTSecret) != devTestSecret {
		t.Errorf("--jwt-secret-file: secret %q, %v; want the file's text without its newline", cfg.JWTSecret, err)
	}

	bad := []struct {
		name string
		env  [2]string
		args []string
	}{
		{"two secrets", [2]string{}, append(upstreams, "--jwt-secret", devTestSecret, "--jwt-secret-file", secretFile)},
		{"a short secret", [2]string{}, append(upstreams, "--jwt-secret", "short")},
		{"a missing service", [2]string{}, []string{"--orders-url", "http://a:1", "--jwt-secret", devTestSecret}},
		{"a bad rate in the environment", [2]string{"RATE_LIMIT", "fast"}, append(upstreams, "--jwt-secret", devTestSecret)},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env[0] != "" {
				t.Setenv(tt.env[0], tt.env[1])
			}
			cfg, err := parse(t, tt.args...)
			if err == nil {
				// A short secret passes the flags; the gateway refuses it.
				_, err = auth.NewHS256(cfg.JWTSecret)
			}
			if err == nil {
				t.Error("accepted")
			}
		})
	}
}
