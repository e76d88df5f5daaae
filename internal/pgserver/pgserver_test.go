package pgserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/childproc"
)

func startTest(t *testing.T, cfg Config) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

func queryString(t *testing.T, url, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, sql).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func processGone(pid int) bool {
	err := syscall.Kill(pid, 0)
	return errors.Is(err, syscall.ESRCH)
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func TestStartQueryStop(t *testing.T) {
	s := startTest(t, Config{NoFsync: true, Settings: map[string]string{"work_mem": "8MB"}})

	checks := []struct{ sql, want string }{
		{"SELECT current_user", Superuser},
		{"SHOW fsync", "off"},
		{"SHOW synchronous_commit", "off"},
		{"SHOW max_connections", "300"},
		{"SHOW work_mem", "8MB"},
		{"SHOW server_encoding", "UTF8"},
		{"SELECT split_part(current_setting('server_version'), '.', 1)", "15"},
	}
	for _, c := range checks {
		if got := queryString(t, s.URL("postgres"), c.sql); got != c.want {
			t.Errorf("%s = %q, want %q", c.sql, got, c.want)
		}
	}

	// The password in the URL is what authenticates: a wrong one must fail.
	bad := strings.Replace(s.URL("postgres"), s.password, "wrong", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, bad); err == nil {
		conn.Close(ctx)
		t.Error("connecting with a wrong password succeeded")
	}

	if os.Geteuid() == 0 {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.PID()))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(line, "Uid:") && strings.Fields(line)[1] == "0" {
				t.Errorf("postgres runs as root: %s", line)
			}
		}
	}

	pid, port, dir := s.PID(), s.Port(), s.Dir()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case <-s.Done():
	default:
		t.Error("Done not closed after Stop")
	}
	if !processGone(pid) {
		t.Errorf("postmaster %d still running after Stop", pid)
	}
	if !portFree(port) {
		t.Errorf("port %d still bound after Stop", port)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s not removed: %v", dir, err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// A caller-chosen Dir is kept and reused: data written before Stop is there
// after the next Start, with the same password.
func TestDirIsReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cluster")
	if os.Geteuid() == 0 {
		// t.TempDir's parents are private to root; the cluster's OS user must
		// be able to reach the directory.
		d, err := os.MkdirTemp("", "pgserver-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(d, "cluster")
	}

	s := startTest(t, Config{Dir: dir, NoFsync: true})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
		t.Fatalf("cluster not kept in Dir: %v", err)
	}

	s2 := startTest(t, Config{Dir: dir, NoFsync: true})
	if got := queryString(t, s2.URL("postgres"), "SELECT v FROM kept"); got != "survives" {
		t.Errorf("after restart got %q", got)
	}
}

func TestPortInUseFailsWithLog(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Config{Port: port, NoFsync: true})
	if err == nil {
		s.Stop(ctx)
		t.Fatal("Start on a bound port succeeded")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "server log") || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("error lacks the server log or port: %v", err)
	}
}

func TestUnreachableDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the cluster to another OS user")
	}
	parent := t.TempDir()
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Config{Dir: filepath.Join(parent, "c"), NoFsync: true})
	if err == nil || !strings.Contains(err.Error(), "not searchable") {
		t.Fatalf("want a not searchable error, got %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"port", Config{Port: 5432}, true},
		{"negative port", Config{Port: -1}, false},
		{"large port", Config{Port: 70000}, false},
		{"setting", Config{Settings: map[string]string{"work_mem": "4MB"}}, true},
		{"reserved setting", Config{Settings: map[string]string{"Port": "1"}}, false},
		{"listen", Config{Settings: map[string]string{"listen_addresses": "*"}}, false},
		{"malformed", Config{Settings: map[string]string{"a=b": "1"}}, false},
		{"negative timeout", Config{StopTimeout: -time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

// A SIGKILLed postmaster comes back with Restart on the same port and
// password, with every committed row, even while a backend of the old one
// still holds its shared memory.
func TestRestartAfterKill(t *testing.T) {
	// Durable settings, as the dev stack runs them: with fsync off a killed
	// server may lose commits, and this test would rightly fail.
	s := startTest(t, Config{})
	url, port, oldPID := s.URL("postgres"), s.Port(), s.PID()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.Restart(ctx); !errors.Is(err, ErrRunning) {
		t.Fatalf("Restart of a running server: %v, want ErrRunning", err)
	}

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('committed')"); err != nil {
		t.Fatal(err)
	}
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		t.Fatal(err)
	}
	// A stopped backend cannot notice its postmaster's death: it keeps the
	// shared memory attached, as a busy one does for a while.
	if err := syscall.Kill(backend, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(backend, syscall.SIGKILL) })

	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("Done not closed 30s after the postmaster was killed")
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Err() = %v, want the kill", err)
	}
	if !childproc.Alive(backend) {
		t.Fatalf("backend %d died with its postmaster; the test would not show that Restart clears the old group", backend)
	}

	start := time.Now()
	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	t.Logf("restarted in %s", time.Since(start).Round(time.Millisecond))
	if s.PID() == oldPID {
		t.Error("PID unchanged after Restart")
	}
	if s.Port() != port || s.URL("postgres") != url {
		t.Errorf("Restart moved the server: port %d, want %d", s.Port(), port)
	}
	if childproc.Alive(backend) {
		t.Errorf("backend %d of the killed postmaster survived Restart", backend)
	}
	if got := queryString(t, url, "SELECT v FROM kept"); got != "committed" {
		t.Errorf("after restart got %q", got)
	}
	if got := queryString(t, url, "SHOW recovery_init_sync_method"); runtime.GOOS == "linux" && got != "syncfs" {
		t.Errorf("recovery_init_sync_method = %q, want syncfs (a crash restart would fsync file by file)", got)
	}
	select {
	case <-s.Done():
		t.Fatal("Done of the restarted server is closed")
	default:
	}

	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !portFree(port) {
		t.Errorf("port %d still bound after Stop", port)
	}
	if err := s.Restart(ctx); !errors.Is(err, ErrStopped) {
		t.Errorf("Restart after Stop: %v, want ErrStopped", err)
	}
}

// Stop after the postmaster was killed leaves none of its backends behind
// and removes the temporary directory.
func TestStopAfterKill(t *testing.T) {
	s := startTest(t, Config{NoFsync: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(backend, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(backend, syscall.SIGKILL) })
	if err := syscall.Kill(s.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.Done()
	if !childproc.Alive(backend) {
		t.Fatalf("backend %d died with its postmaster; the test would prove nothing", backend)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if childproc.Alive(backend) {
		t.Errorf("backend %d outlived Stop", backend)
	}
	if _, err := os.Stat(s.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s not removed: %v", s.Dir(), err)
	}
}
