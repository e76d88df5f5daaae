package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orderflow/orderflow/services/internal/testenv"
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

// syncBuffer collects a child's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type devRun struct {
	cmd   *exec.Cmd
	base  int
	out   *syncBuffer
	done  chan struct{}
	err   error
	dir   string // the temporary data dir the banner names
	ports []int  // every port the stack listens on
}

// freePortBase finds N..N+4 all free.
func freePortBase(t *testing.T) int {
	t.Helper()
	for range 100 {
		base := 20000 + rand.IntN(40000)
		free := true
		for p := base; p <= base+4 && free; p++ {
			free = portFree(p)
		}
		if free {
			return base
		}
	}
	t.Fatal("no five consecutive free ports")
	return 0
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
	dataRE = regexp.MustCompile(`(?m)^\s+data\s+(\S+) \(removed at exit\)`)
	pgRE   = regexp.MustCompile(`PostgreSQL ready on 127\.0\.0\.1:(\d+)`)
	natsRE = regexp.MustCompile(`NATS ready on nats://127\.0\.0\.1:(\d+)`)
)

// startDev runs "orderflow dev" with an embedded NATS and a private
// PostgreSQL and waits for its banner.
func startDev(t *testing.T) *devRun {
	t.Helper()
	r := &devRun{base: freePortBase(t), out: &syncBuffer{}, done: make(chan struct{})}
	r.cmd = exec.Command(binary(t), "dev", "--port-base", strconv.Itoa(r.base))
	r.cmd.Env = envWithout(os.Environ(), "DATABASE_URL", "NATS_URL", "ADDR")
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
	for i := 1; i <= 3; i++ {
		r.ports = append(r.ports, r.base+i)
	}
	return r
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
	if pids := processesMatching(r.dir); len(pids) > 0 {
		t.Errorf("processes still running on %s: %v", r.dir, pids)
	}
	if pids := processesIn(r.dir); len(pids) > 0 {
		t.Errorf("PostgreSQL processes still running in %s: %v", r.dir, pids)
	}
	for i := 1; i <= 3; i++ {
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
	if _, err := os.Stat(r.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir %s not removed (%v)", r.dir, err)
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

func TestDevServesAndStopsCleanly(t *testing.T) {
	r := startDev(t)

	for i := 1; i <= 3; i++ {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", r.base+i))
		if err != nil {
			t.Fatalf("healthz on %d: %v", r.base+i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("healthz on %d: %d", r.base+i, resp.StatusCode)
		}
	}

	url := fmt.Sprintf("http://127.0.0.1:%d/api/inventory/SKU-1/restock", r.base+2)
	resp, err := http.Post(url, "application/json", strings.NewReader(`{"quantity":5}`))
	if err != nil {
		t.Fatalf("restock: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("restock answered %d, want 202", resp.StatusCode)
	}
	if pids := processesMatching(r.dir); len(pids) == 0 {
		t.Fatalf("no postgres process on %s while the stack runs; the checks below would prove nothing", r.dir)
	}
	if n := len(processesIn(r.dir)); n < 2 {
		t.Fatalf("%d processes work in %s, want the postmaster and its workers; the checks below would prove nothing", n, r.dir)
	}

	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := r.waitExit(t, time.Minute); code != 0 {
		t.Errorf("dev exited with %d after SIGINT, want 0", code)
	}
	r.assertAllGone(t)
}

// A service that dies takes the stack down with a non-zero exit that names it.
func TestDevStopsWhenAServiceDies(t *testing.T) {
	r := startDev(t)
	addr := "127.0.0.1:" + strconv.Itoa(r.base+2)
	pids := processesMatching("serve inventory --addr " + addr)
	if len(pids) != 1 {
		t.Fatalf("want one inventory process, found %v", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := r.waitExit(t, time.Minute); code == 0 {
		t.Error("dev exited with 0 after a service died")
	}
	if out := r.out.String(); !strings.Contains(out, "inventory exited unexpectedly") {
		t.Error("output does not name the service that died")
	}
	r.assertAllGone(t)
}

func TestUsage(t *testing.T) {
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
