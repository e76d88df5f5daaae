package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"

	"github.com/orderflow/orderflow/internal/pgserver"
)

// postgresImage is the container image when Docker is used; the same major
// version as the local binaries the dev stack runs.
const postgresImage = "postgres:15-alpine"

var docker struct {
	once sync.Once
	ok   bool
}

// dockerAvailable reports whether a Docker engine answers a ping, checking
// DOCKER_HOST or else the usual socket paths. It is quick and silent when
// there is none, unlike asking testcontainers, which retries and logs.
func dockerAvailable() bool {
	docker.once.Do(func() { docker.ok = pingDocker() })
	return docker.ok
}

func pingDocker() bool {
	var hosts []string
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		hosts = []string{h}
	} else {
		hosts = append(hosts, "unix:///var/run/docker.sock")
		if home, err := os.UserHomeDir(); err == nil {
			hosts = append(hosts,
				"unix://"+filepath.Join(home, ".docker", "run", "docker.sock"),
				"unix://"+filepath.Join(home, ".docker", "desktop", "docker.sock"))
		}
		if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
			hosts = append(hosts, "unix://"+filepath.Join(rt, "docker.sock"))
		}
	}
	for _, h := range hosts {
		if pingDockerHost(h) {
			return true
		}
	}
	return false
}

func pingDockerHost(host string) bool {
	u, err := url.Parse(host)
	if err != nil {
		return false
	}
	var network, addr string
	switch u.Scheme {
	case "unix":
		network, addr = "unix", u.Path
		if _, err := os.Stat(addr); err != nil {
			return false
		}
	case "tcp":
		network, addr = "tcp", u.Host
		if os.Getenv("DOCKER_TLS_VERIFY") != "" {
			// A TLS engine needs client certificates to ping; that it
			// accepts a connection is enough to try it.
			c, err := net.DialTimeout(network, addr, time.Second)
			if err != nil {
				return false
			}
			c.Close()
			return true
		}
	default:
		return false
	}
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		},
	}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://docker/_ping")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// startContainer runs PostgreSQL in a container removed at exit.
func startContainer(ctx context.Context) (string, error) {
	c, err := tcpostgres.Run(ctx, postgresImage, tcpostgres.BasicWaitStrategies())
	if c != nil {
		atExit(func(context.Context) error { return testcontainers.TerminateContainer(c) })
	}
	if err != nil {
		return "", err
	}
	u, err := c.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		return "", fmt.Errorf("container connection string: %w", err)
	}
	return u, nil
}

// startLocal starts a private cluster that lives as long as the binary.
func startLocal(ctx context.Context) (string, error) {
	s, err := pgserver.Start(ctx, pgserver.Config{NoFsync: true})
	if err != nil {
		return "", err
	}
	atExit(s.Stop)
	return s.URL("postgres"), nil
}
