// Package natsembed runs a NATS server with JetStream inside the calling
// process. The dev stack and the tests use it so that they talk to a real
// nats-server, not a fake, without anything installed on the machine;
// production points at a NATS cluster by URL instead.
package natsembed

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ErrInvalidConfig is wrapped by Config.Validate errors.
var ErrInvalidConfig = errors.New("natsembed: invalid config")

// Config tells Start how to run the server. The zero value is usable.
type Config struct {
	// Host to listen on; default 127.0.0.1.
	Host string
	// Port for clients; 0 or -1 picks a free port.
	Port int
	// StoreDir holds JetStream's files. Empty means a new temporary
	// directory that Shutdown removes; a given directory is kept.
	StoreDir string
	// Log sends the server's log to stderr.
	Log bool
	// ReadyTimeout bounds the wait for the server to accept clients;
	// default 10s.
	ReadyTimeout time.Duration
	// MaxPayload is the largest message accepted; default MaxPayload.
	MaxPayload int32

	// Cluster, when its Name is set, makes the server one node of a
	// JetStream cluster; the zero value runs a standalone server.
	Cluster ClusterConfig
}

// ClusterConfig makes a server a node of a JetStream cluster. JetStream
// replicates a stream only between servers that share a cluster name and
// know each other by a unique server name, so both are required once Name
// is set; each node needs its own StoreDir.
type ClusterConfig struct {
	// Name is the cluster's name, the same on every node.
	Name string
	// ServerName names this node, unique in the cluster. It must stay the
	// same across restarts: JetStream's replicas are placed by it.
	ServerName string
	// Host and Port are where the node listens for routes from the other
	// nodes; Host defaults to Config.Host, Port 0 picks a free port.
	Host string
	Port int
	// Routes are the other nodes' cluster URLs, nats://host:port; at
	// least one. A node listed that is down is retried.
	Routes []string
}

// Validate reports a configuration Start cannot use.
func (c Config) Validate() error {
	if c.Port < -1 || c.Port > 65535 {
		return fmt.Errorf("%w: port %d out of range -1..65535", ErrInvalidConfig, c.Port)
	}
	if c.ReadyTimeout < 0 {
		return fmt.Errorf("%w: negative ready timeout", ErrInvalidConfig)
	}
	if c.MaxPayload < 0 {
		return fmt.Errorf("%w: negative max payload", ErrInvalidConfig)
	}
	return c.Cluster.validate()
}

func (c ClusterConfig) validate() error {
	if c.Name == "" {
		if c.ServerName != "" || c.Host != "" || c.Port != 0 || len(c.Routes) > 0 {
			return fmt.Errorf("%w: cluster settings without a cluster name", ErrInvalidConfig)
		}
		return nil
	}
	if c.ServerName == "" {
		return fmt.Errorf("%w: cluster %q needs a server name", ErrInvalidConfig, c.Name)
	}
	if c.Port < -1 || c.Port > 65535 {
		return fmt.Errorf("%w: cluster port %d out of range -1..65535", ErrInvalidConfig, c.Port)
	}
	if len(c.Routes) == 0 {
		// The server would refuse to start JetStream (and, logging,
		// exit the process).
		return fmt.Errorf("%w: cluster %q needs routes to the other nodes", ErrInvalidConfig, c.Name)
	}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "nats" || u.Port() == "" {
			return fmt.Errorf("%w: route %q is not nats://host:port", ErrInvalidConfig, r)
		}
	}
	return nil
}

// Server is a running embedded NATS server.
type Server struct {
	ns       *server.Server
	storeDir string
	ownStore bool
	once     sync.Once
}

// Start starts the server with JetStream enabled and waits until it accepts
// clients, ctx's deadline or ReadyTimeout, whichever comes first.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port == 0 {
		// The server reads 0 as its default port 4222 and -1 as "any".
		cfg.Port = server.RANDOM_PORT
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	s := &Server{storeDir: cfg.StoreDir}
	if s.storeDir == "" {
		d, err := os.MkdirTemp("", "natsembed-")
		if err != nil {
			return nil, fmt.Errorf("natsembed: create store dir: %w", err)
		}
		s.storeDir, s.ownStore = d, true
	}

	opts := &server.Options{
		Host:      cfg.Host,
		Port:      cfg.Port,
		JetStream: true,
		// The event store accepts events up to eventstore.MaxEventSize;
		// the relay publishes each as one message, so the server must
		// take messages that large (NATS's default is 1 MiB).
		MaxPayload: cmp.Or(cfg.MaxPayload, MaxPayload),
		StoreDir:   s.storeDir,
		NoLog:      !cfg.Log,
		// The embedding process owns signal handling.
		NoSigs: true,
	}
	if err := cfg.Cluster.apply(opts); err != nil {
		s.removeStore()
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		s.removeStore()
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	if cfg.Log {
		ns.ConfigureLogger()
	}
	s.ns = ns
	ns.Start()

	wait := cfg.ReadyTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		wait = time.Until(dl)
	}
	if !ns.ReadyForConnections(wait) {
		s.Shutdown()
		return nil, fmt.Errorf("natsembed: server on %s:%d not ready after %s", cfg.Host, cfg.Port, wait)
	}
	// A clustered node is ready for clients before its cluster has elected
	// a meta leader, which needs a quorum of the nodes; until then
	// JetStream's API does not answer, and clients retry.
	if !ns.JetStreamEnabled() {
		s.Shutdown()
		return nil, errors.New("natsembed: JetStream failed to start (see the server log; Config.Log shows it)")
	}
	return s, nil
}

// apply sets the cluster options of opts.
func (c ClusterConfig) apply(opts *server.Options) error {
	if c.Name == "" {
		return nil
	}
	opts.ServerName = c.ServerName
	opts.Cluster.Name = c.Name
	opts.Cluster.Host = cmp.Or(c.Host, opts.Host)
	opts.Cluster.Port = c.Port
	if c.Port == 0 {
		opts.Cluster.Port = server.RANDOM_PORT
	}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil {
			return fmt.Errorf("%w: route %q: %v", ErrInvalidConfig, r, err)
		}
		opts.Routes = append(opts.Routes, u)
	}
	return nil
}

// URL is the client URL, e.g. nats://127.0.0.1:39123.
func (s *Server) URL() string { return s.ns.ClientURL() }

// ClusterURL is the URL other nodes route to, nats://127.0.0.1:PORT, or
// empty for a standalone server.
func (s *Server) ClusterURL() string {
	addr := s.ns.ClusterAddr()
	if addr == nil {
		return ""
	}
	return "nats://" + addr.String()
}

// Name is the server's name: ClusterConfig.ServerName, or a generated id.
func (s *Server) Name() string { return s.ns.Name() }

// StoreDir is the directory holding JetStream's files.
func (s *Server) StoreDir() string { return s.storeDir }

// Shutdown stops the server, waits until it has stopped and removes a
// temporary store directory. It is safe to call more than once.
func (s *Server) Shutdown() {
	s.once.Do(func() {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		s.removeStore()
	})
}

func (s *Server) removeStore() {
	if s.ownStore {
		_ = os.RemoveAll(s.storeDir)
	}
}

// MaxPayload is the largest message the embedded server accepts: room for
// an event of eventstore.MaxEventSize plus its envelope.
const MaxPayload = 8 << 20

// PeerRoutes returns the route URLs node self (0-based) of a cluster on
// host dials: every other node's route port. Every node of a cluster is
// given its peers' routes this way, so each knows the others from its start.
func PeerRoutes(host string, routePorts []int, self int) []string {
	var routes []string
	for i, p := range routePorts {
		if i != self {
			routes = append(routes, "nats://"+net.JoinHostPort(host, strconv.Itoa(p)))
		}
	}
	return routes
}
