// Package pgserver runs a private PostgreSQL cluster from the PostgreSQL
// binaries installed on the machine, as a child process of the caller.
//
// It exists so that the dev stack and the tests get a real PostgreSQL without
// Docker or a system service: Start runs initdb (once per data directory),
// starts postgres directly (not through pg_ctl, so the caller owns the
// process and the kernel stops it when the caller dies) and waits until it
// accepts connections. Stop shuts it down and removes what Start created. A
// postmaster that dies on its own (a crash, a SIGKILL) can be started again
// with Restart on the same data, port and password.
//
// PostgreSQL refuses to run as root, so when the caller is root the cluster
// runs as an unprivileged OS user (Config.OSUser, "postgres" by default).
package pgserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/childproc"
)

// Superuser is the name of the cluster's superuser role.
const Superuser = "postgres"

const (
	dataSubdir   = "data"
	passwordFile = "superuser-password"
	// maxSocketDirLen keeps "<sockdir>/.s.PGSQL.<port>.lock" under the kernel's
	// 108-byte limit for unix socket paths.
	maxSocketDirLen = 80
	bindRetries     = 5
)

var (
	// ErrInvalidConfig is wrapped by Config.Validate errors.
	ErrInvalidConfig = errors.New("pgserver: invalid config")
	// ErrRunning is returned by Restart while the postmaster still runs.
	ErrRunning = errors.New("pgserver: the server is running")
	// ErrStopped is returned by Restart after Stop.
	ErrStopped = errors.New("pgserver: the server was stopped")
)

// Config tells Start how to run the cluster. The zero value is usable: a
// fresh cluster in a temporary directory on a free port, fsync on.
type Config struct {
	// Dir holds the cluster (Dir/data), its superuser password and, when the
	// path is short enough, the unix socket. Empty means a new temporary
	// directory that Stop removes. A Dir that already holds a cluster made by
	// Start is reused as it is (its data survives Stop).
	Dir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// NoFsync turns off fsync, synchronous_commit and full_page_writes, and
	// makes initdb skip its syncs. Durability is the default; tests, which
	// throw the cluster away, set this for speed.
	NoFsync bool
	// OSUser is the OS user the cluster runs as when the caller is root
	// (PostgreSQL refuses to run as root). Default "postgres". Ignored when
	// the caller is not root: the cluster then runs as the caller.
	OSUser string
	// BinDir holds initdb and postgres. Default: found on PATH, else the
	// newest /usr/lib/postgresql/*/bin.
	BinDir string
	// Log receives the server's output (initdb's only shows up in the
	// error when initdb fails). It is written from another goroutine. Nil
	// discards it; the tail of the server log is kept for error messages
	// either way.
	Log io.Writer
	// Settings are extra server settings (-c name=value). They override the
	// defaults (max_connections 300, shared_buffers 128MB, ...) but may not
	// set what Start controls (port, listen_addresses, sockets, data dir).
	Settings map[string]string
	// StartTimeout bounds initdb plus the wait until the server accepts
	// connections. Default 60s.
	StartTimeout time.Duration
	// StopTimeout is how long Stop waits for a fast shutdown before it
	// escalates to an immediate shutdown and then to SIGKILL. Default 10s.
	StopTimeout time.Duration
}

// reserved are the settings Start owns.
var reserved = map[string]bool{
	"port":                    true,
	"listen_addresses":        true,
	"unix_socket_directories": true,
	"data_directory":          true,
	"config_file":             true,
	"hba_file":                true,
	"ident_file":              true,
}

// Validate reports a configuration Start cannot use.
func (c Config) Validate() error {
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("%w: port %d out of range 0..65535", ErrInvalidConfig, c.Port)
	}
	if c.StartTimeout < 0 || c.StopTimeout < 0 {
		return fmt.Errorf("%w: negative timeout", ErrInvalidConfig)
	}
	for k, v := range c.Settings {
		name := strings.ToLower(strings.TrimSpace(k))
		if name == "" {
			return fmt.Errorf("%w: empty setting name", ErrInvalidConfig)
		}
		if reserved[name] {
			return fmt.Errorf("%w: setting %q is controlled by pgserver", ErrInvalidConfig, k)
		}
		if strings.ContainsAny(k, "= \t\n") || strings.ContainsAny(v, "\x00\n") {
			return fmt.Errorf("%w: malformed setting %q", ErrInvalidConfig, k)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.OSUser == "" {
		c.OSUser = "postgres"
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 60 * time.Second
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = 10 * time.Second
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

// Server is a running cluster. Its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	dir      string
	ownDir   bool // Start created dir, Stop removes it
	sockDir  string
	ownSock  bool
	port     int
	password string
	cred     *syscall.Credential
	bin      string
	log      *tailBuffer

	// mu guards proc, which Restart replaces, and stopped; Restart holds
	// it throughout, so that Stop waits for a restart to end and then
	// stops what it started.
	mu      sync.Mutex
	proc    *childproc.Child
	stopped bool

	stopOnce sync.Once
	stopErr  error
}

// Start initialises the cluster if Dir holds none, starts postgres and waits
// until it accepts connections. The returned Server must be stopped with
// Stop; if the caller dies first, the kernel stops postgres (see childproc).
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()

	s := &Server{cfg: cfg, log: newTailBuffer(64 << 10)}
	ok := false
	defer func() {
		if !ok {
			s.removeDirs()
		}
	}()

	bin, err := findBinDir(cfg.BinDir)
	if err != nil {
		return nil, err
	}
	s.bin = bin
	if os.Geteuid() == 0 {
		if s.cred, err = lookupCredential(cfg.OSUser); err != nil {
			return nil, err
		}
	}
	if err := s.prepareDirs(); err != nil {
		return nil, err
	}
	if err := s.initdb(ctx, bin); err != nil {
		return nil, err
	}

	for attempt := 1; ; attempt++ {
		port := cfg.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		s.port = port
		err = s.startPostgres(ctx)
		if err == nil {
			ok = true
			return s, nil
		}
		// Another process may grab a port between freePort and postgres
		// binding it; only then is a new port worth a try.
		if cfg.Port != 0 || attempt == bindRetries || !errors.Is(err, errPortInUse) {
			return nil, err
		}
	}
}

// URL returns the superuser URL of database db over TCP, with the password.
func (s *Server) URL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(Superuser, s.password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port returns the TCP port the server listens on.
func (s *Server) Port() int { return s.port }

// Dir returns the directory holding the cluster.
func (s *Server) Dir() string { return s.dir }

// PID returns the process id of the postmaster.
func (s *Server) PID() int { return s.child().Pid() }

// Done is closed when the postmaster has exited, whether through Stop or
// not. After Restart it is another channel: call Done again.
func (s *Server) Done() <-chan struct{} { return s.child().Done() }

// Err says why the postmaster exited (nil for a clean exit, else its exit
// status or signal); call it once Done is closed.
func (s *Server) Err() error { return s.child().Err() }

func (s *Server) child() *childproc.Child {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// Restart starts the postmaster again after it exited without Stop (a
// crash, a SIGKILL), on the same directory, port and password, so that the
// URLs handed out before stay valid; a client's pool reconnects to it on
// its own. PostgreSQL recovers from its write-ahead log at start: with
// fsync on (see Config.NoFsync), every committed transaction is there.
//
// The backends and workers of a postmaster that was SIGKILLed outlive it
// for a while and keep its shared memory, which a new postmaster refuses to
// share, so they are killed first. Restart
// fails with ErrRunning while the postmaster runs and with ErrStopped after
// Stop; other failures (the port taken meanwhile, a broken data directory)
// leave the server stopped, and Restart may be called again.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	select {
	case <-s.proc.Done():
	default:
		return ErrRunning
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	if err := s.killRemains(ctx); err != nil {
		return err
	}
	return s.startPostgres(ctx)
}

// LogTail returns the last part of the server's log.
func (s *Server) LogTail() string { return s.log.String() }

// Stop shuts the server down: a fast shutdown (SIGINT) first, an immediate
// one (SIGQUIT) when that takes longer than StopTimeout or ctx ends, and
// SIGKILL as a last resort. It then removes the directories Start created.
// Calling Stop again returns the first result.
func (s *Server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.stopErr = s.stop(ctx)
	})
	return s.stopErr
}

func (s *Server) stop(ctx context.Context) error {
	s.mu.Lock()
	s.stopped = true
	proc := s.proc
	s.mu.Unlock()
	terminate(ctx, proc, s.cfg.StopTimeout)
	// A postmaster that died before Stop, or that terminate had to
	// SIGKILL, may have left backends behind.
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.killRemains(kctx); err != nil {
		return err
	}
	return s.removeDirs()
}

func (s *Server) removeDirs() error {
	var errs []error
	if s.ownSock && s.sockDir != "" {
		errs = append(errs, os.RemoveAll(s.sockDir))
	}
	if s.ownDir && s.dir != "" {
		errs = append(errs, os.RemoveAll(s.dir))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pgserver: remove directories: %w", err)
	}
	return nil
}

// prepareDirs creates (or adopts) the cluster and socket directories and
// makes them the OS user's.
func (s *Server) prepareDirs() error {
	if s.cfg.Dir == "" {
		d, err := os.MkdirTemp("", "pgserver-")
		if err != nil {
			return fmt.Errorf("pgserver: create temp dir: %w", err)
		}
		s.dir, s.ownDir = d, true
	} else {
		d, err := filepath.Abs(s.cfg.Dir)
		if err != nil {
			return fmt.Errorf("pgserver: dir %s: %w", s.cfg.Dir, err)
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("pgserver: create dir: %w", err)
		}
		s.dir = d
	}
	if err := s.own(s.dir); err != nil {
		return err
	}
	if err := s.checkReachable(s.dir); err != nil {
		return err
	}

	s.sockDir = s.dir
	if len(s.dir) > maxSocketDirLen {
		d, err := os.MkdirTemp("", "pgsock-")
		if err != nil {
			return fmt.Errorf("pgserver: create socket dir: %w", err)
		}
		s.sockDir, s.ownSock = d, true
		if err := s.own(d); err != nil {
			return err
		}
	}
	return nil
}

// own hands path to the OS user the cluster runs as.
func (s *Server) own(path string) error {
	if s.cred == nil {
		return nil
	}
	if err := os.Chown(path, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
		return fmt.Errorf("pgserver: chown %s to %s: %w", path, s.cfg.OSUser, err)
	}
	return nil
}

// checkReachable fails early, with a message that says what to do, when the
// OS user cannot traverse the directories above dir (a data dir under
// /root, typically); initdb's own message for it is obscure.
func (s *Server) checkReachable(dir string) error {
	if s.cred == nil {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("pgserver: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if ok && !searchable(fi.Mode(), st, s.cred) {
			return fmt.Errorf("pgserver: %s cannot reach %s because %s is not searchable by it; choose a directory elsewhere (e.g. under /tmp) or make %s searchable", s.cfg.OSUser, dir, p, p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func searchable(mode os.FileMode, st *syscall.Stat_t, cred *syscall.Credential) bool {
	perm := mode.Perm()
	switch {
	case st.Uid == cred.Uid:
		return perm&0o100 != 0
	case st.Gid == cred.Gid || slices.Contains(cred.Groups, st.Gid):
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, dataSubdir) }

// initdb creates the cluster unless Dir already holds one, and loads the
// superuser password.
func (s *Server) initdb(ctx context.Context, bin string) error {
	pwPath := filepath.Join(s.dir, passwordFile)
	if _, err := os.Stat(filepath.Join(s.dataDir(), "PG_VERSION")); err == nil {
		pw, err := os.ReadFile(pwPath)
		if err != nil {
			return fmt.Errorf("pgserver: %s holds a cluster but its password is unreadable: %w", s.dir, err)
		}
		s.password = strings.TrimSpace(string(pw))
		return nil
	}

	s.password = randomHex(16)
	if err := os.WriteFile(pwPath, []byte(s.password+"\n"), 0o600); err != nil {
		return fmt.Errorf("pgserver: write password file: %w", err)
	}
	if err := s.own(pwPath); err != nil {
		return err
	}
	args := []string{
		"-D", s.dataDir(),
		"-U", Superuser,
		"--pwfile=" + pwPath,
		"--auth-local=trust",
		"--auth-host=scram-sha-256",
		"--encoding=UTF8",
		"--locale=C",
		"--no-instructions",
	}
	if s.cfg.NoFsync {
		args = append(args, "--no-sync")
	}
	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(bin, "initdb"), args...)
	cmd.Dir = s.dir
	cmd.Env = childEnv()
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = childproc.SysProcAttr(s.cred, syscall.SIGKILL)
	cmd.WaitDelay = 2 * time.Second

	c, err := childproc.Start(cmd)
	if err != nil {
		return fmt.Errorf("pgserver: start initdb: %w", err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		_ = c.Signal(syscall.SIGKILL)
		<-c.Done()
		return fmt.Errorf("pgserver: initdb: %w", ctx.Err())
	}
	if err := c.Err(); err != nil {
		return fmt.Errorf("pgserver: initdb: %w\n%s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

var errPortInUse = errors.New("port in use")

// startPostgres starts the postmaster and waits until it accepts
// connections; on failure the process is gone when it returns. The caller
// holds mu, or is Start, before anyone else can see s.
func (s *Server) startPostgres(ctx context.Context) error {
	settings := map[string]string{
		"max_connections":    "300",
		"shared_buffers":     "128MB",
		"fsync":              onOff(!s.cfg.NoFsync),
		"synchronous_commit": onOff(!s.cfg.NoFsync),
		"full_page_writes":   onOff(!s.cfg.NoFsync),
		"logging_collector":  "off",
	}
	if runtime.GOOS == "linux" && s.majorVersion() >= 14 {
		// After a crash, PostgreSQL first makes sure that everything the
		// dead server wrote is on disk; fsync file by file takes seconds
		// even for a small cluster, one syncfs of the file system does
		// the same in a fraction of that (Restart's time to serve).
		settings["recovery_init_sync_method"] = "syncfs"
	}
	for k, v := range s.cfg.Settings {
		settings[strings.ToLower(strings.TrimSpace(k))] = v
	}
	names := make([]string, 0, len(settings))
	for k := range settings {
		names = append(names, k)
	}
	sort.Strings(names)

	args := []string{
		"-D", s.dataDir(),
		"-k", s.sockDir,
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
	}
	for _, k := range names {
		args = append(args, "-c", k+"="+settings[k])
	}

	s.log.Reset()
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), args...)
	cmd.Dir = s.dir
	cmd.Env = childEnv()
	cmd.Stdout = io.MultiWriter(s.log, s.cfg.Log)
	cmd.Stderr = cmd.Stdout
	// SIGQUIT on parent death is PostgreSQL's immediate shutdown: the
	// postmaster takes its backends down with it.
	cmd.SysProcAttr = childproc.SysProcAttr(s.cred, syscall.SIGQUIT)
	cmd.WaitDelay = 2 * time.Second

	c, err := childproc.Start(cmd)
	if err != nil {
		return fmt.Errorf("pgserver: start postgres: %w", err)
	}
	s.proc = c

	if err := s.waitReady(ctx, c); err != nil {
		terminate(context.Background(), c, s.cfg.StopTimeout)
		tail := s.log.String()
		if strings.Contains(tail, "could not bind") || strings.Contains(tail, "already in use") {
			err = fmt.Errorf("%w: %w", errPortInUse, err)
		}
		return fmt.Errorf("pgserver: postgres on port %d did not become ready: %w\nserver log:\n%s", s.port, err, strings.TrimSpace(tail))
	}
	return nil
}

// waitReady polls until a superuser connection succeeds, the postmaster
// exits or ctx ends.
func (s *Server) waitReady(ctx context.Context, c *childproc.Child) error {
	url := s.URL("postgres")
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = ping(ctx, url); last == nil {
			return nil
		}
		select {
		case <-c.Done():
			return fmt.Errorf("postgres exited: %v", c.Err())
		case <-ctx.Done():
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func ping(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// majorVersion is the PostgreSQL major version of the cluster, 0 if
// unknown.
func (s *Server) majorVersion() int {
	b, err := os.ReadFile(filepath.Join(s.dataDir(), "PG_VERSION"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux; see crypto/rand docs
	return hex.EncodeToString(b)
}

// childEnv is the caller's environment without libpq's PG* variables, which
// would redirect initdb or postgres, and with the C locale so messages are
// predictable.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "LANG=C")
}

func lookupCredential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("pgserver: running as root, so PostgreSQL needs an unprivileged OS user; look up %q: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgserver: user %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgserver: user %s: gid %q: %w", name, u.Gid, err)
	}
	if uid == 0 {
		return nil, fmt.Errorf("pgserver: OS user %s is root; PostgreSQL refuses to run as root", name)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// findBinDir returns the directory holding initdb and postgres.
func findBinDir(dir string) (string, error) {
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err != nil {
			return "", fmt.Errorf("pgserver: BinDir: %w", err)
		}
		return dir, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("postgres"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	// Debian and Ubuntu keep the server binaries off PATH.
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return pgMajor(matches[i]) > pgMajor(matches[j]) })
	for _, m := range matches {
		d := filepath.Dir(m)
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("pgserver: initdb and postgres not found on PATH or in /usr/lib/postgresql/*/bin; install the PostgreSQL server package")
}

func pgMajor(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgserver: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
