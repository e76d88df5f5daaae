package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/orderflow/orderflow/internal/natsembed"
)

// natsNodeReady starts the line nats-node prints once it accepts clients;
// dev --cluster waits for it.
const natsNodeReady = "nats node ready"

// natsNodeOptions are nats-node's flags.
type natsNodeOptions struct {
	name        string
	addr        string
	clusterAddr string
	routes      string
	clusterName string
	storeDir    string
}

// runNATSNode runs one embedded NATS server as a node of a JetStream
// cluster until ctx ends (SIGTERM or SIGINT). dev --cluster runs three of
// them as child processes, so that a node can be killed and restarted on
// its own like any service.
func runNATSNode(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("nats-node", flag.ContinueOnError)
	var o natsNodeOptions
	fs.StringVar(&o.name, "name", "", "the node's server name, unique in the cluster and the same across restarts (required)")
	fs.StringVar(&o.addr, "addr", "127.0.0.1:4222", "host:port for clients")
	fs.StringVar(&o.clusterAddr, "cluster-addr", "127.0.0.1:6222", "host:port for the other nodes' routes")
	fs.StringVar(&o.routes, "routes", "", "the other nodes' cluster URLs, comma-separated (nats://host:port,...)")
	fs.StringVar(&o.clusterName, "cluster-name", "orderflow", "the cluster's name, the same on every node")
	fs.StringVar(&o.storeDir, "store-dir", "", "JetStream's directory, the node's own (required)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: orderflow nats-node --name N --store-dir DIR [flags]

Runs one NATS server with JetStream as a node of a cluster, until SIGTERM
or SIGINT. orderflow dev --cluster runs three of them; it is not meant to
be run by hand.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	cfg, err := o.config()
	if err != nil {
		return err
	}
	s, err := natsembed.Start(ctx, cfg)
	if err != nil {
		return fmt.Errorf("nats-node %s: %w", o.name, err)
	}
	defer s.Shutdown()
	fmt.Printf("%s: %s clients %s cluster %s store %s\n", natsNodeReady, s.Name(), s.URL(), s.ClusterURL(), s.StoreDir())
	<-ctx.Done()
	return nil
}

// config turns the flags into natsembed's Config, or a usage error.
func (o natsNodeOptions) config() (natsembed.Config, error) {
	if o.name == "" {
		return natsembed.Config{}, usagef("nats-node: --name is required")
	}
	if o.storeDir == "" {
		return natsembed.Config{}, usagef("nats-node: --store-dir is required")
	}
	host, port, err := splitHostPort(o.addr)
	if err != nil {
		return natsembed.Config{}, usagef("nats-node: --addr: %v", err)
	}
	chost, cport, err := splitHostPort(o.clusterAddr)
	if err != nil {
		return natsembed.Config{}, usagef("nats-node: --cluster-addr: %v", err)
	}
	var routes []string
	for r := range strings.SplitSeq(o.routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			routes = append(routes, r)
		}
	}
	cfg := natsembed.Config{
		Host:     host,
		Port:     port,
		StoreDir: o.storeDir,
		// Its log is the dev stack's output for this node: elections
		// and lost routes are what one wants to see there.
		Log: true,
		Cluster: natsembed.ClusterConfig{
			Name:       o.clusterName,
			ServerName: o.name,
			Host:       chost,
			Port:       cport,
			Routes:     routes,
		},
	}
	if err := cfg.Validate(); err != nil {
		return natsembed.Config{}, usageError{fmt.Errorf("nats-node: %w", err)}
	}
	return cfg, nil
}

// splitHostPort parses host:port with a port in 1..65535.
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not in 1..65535", p)
	}
	return host, port, nil
}
