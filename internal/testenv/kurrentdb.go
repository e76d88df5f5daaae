package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Environment variables for KurrentDB: a server run elsewhere, or the image
// to run when a Docker engine answers.
const (
	EnvKurrentDBURL   = "TEST_KURRENTDB_URL"
	EnvKurrentDBImage = "TEST_KURRENTDB_IMAGE"
)

// kurrentDBImage is the public KurrentDB image run when Docker is used: the
// long-term-support line, which the client library tests against too.
const kurrentDBImage = "kurrentplatform/kurrentdb:lts"

// kurrentDBMaxAppendSize lifts the server's 1 MiB default limit on one
// append so that events up to eventstore.MaxEventSize fit, with room for a
// few of them in one append.
const kurrentDBMaxAppendSize = "16777216"

const kurrentDBSkip = "KurrentDB contract suite skipped: set TEST_KURRENTDB_URL=kurrentdb://host:2113?tls=false or start a Docker engine"

var kdb struct {
	once sync.Once
	url  string
	err  error
}

var logKurrentDBOnce sync.Once

// KurrentDB returns a connection string for a KurrentDB server:
// TEST_KURRENTDB_URL when set, else a container started once per test binary
// (stopped by Main) when a Docker engine answers, else it skips the test.
// The server is shared by every test of the binary and by nobody's cleanup,
// so tests must work on stream names of their own.
func KurrentDB(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvKurrentDBURL); u != "" {
		logKurrentDBOnce.Do(func() { fmt.Fprintf(os.Stderr, "testenv: KurrentDB from %s (%s)\n", EnvKurrentDBURL, redact(u)) })
		return u
	}
	if !dockerAvailable() {
		t.Skip(kurrentDBSkip)
	}
	if !mainCalled.Load() {
		t.Fatal("testenv: the package's TestMain must call testenv.Main(m), which stops the KurrentDB container when the tests end")
	}
	kdb.once.Do(func() { kdb.url, kdb.err = startKurrentDB() })
	if kdb.err != nil {
		t.Fatalf("testenv: KurrentDB unavailable (set %s to use another server): %v", EnvKurrentDBURL, kdb.err)
	}
	return kdb.url
}

// startKurrentDB runs an insecure, in-memory, single-node KurrentDB without
// projections and registers its removal with Main.
func startKurrentDB() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	image := kurrentDBImage
	if img := os.Getenv(EnvKurrentDBImage); img != "" {
		image = img
	}
	req := testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image:        image,
			ExposedPorts: []string{"2113/tcp"},
			Env: map[string]string{
				"KURRENTDB_INSECURE":         "true",
				"KURRENTDB_RUN_PROJECTIONS":  "None",
				"KURRENTDB_MEM_DB":           "true",
				"KURRENTDB_MAX_APPEND_SIZE":  kurrentDBMaxAppendSize,
				"KURRENTDB_TELEMETRY_OPTOUT": "true",
			},
			WaitingFor: wait.ForHTTP("/health/live").
				WithPort("2113/tcp").
				WithStatusCodeMatcher(func(status int) bool { return status >= 200 && status < 300 }).
				WithStartupTimeout(3 * time.Minute),
		},
		Started: true,
	}
	c, err := testcontainers.GenericContainer(ctx, req)
	if c != nil {
		atExit(func(context.Context) error { return testcontainers.TerminateContainer(c) })
	}
	if err != nil {
		return "", fmt.Errorf("start %s: %w", image, err)
	}
	host, err := c.Host(ctx)
	if err != nil {
		return "", fmt.Errorf("container host: %w", err)
	}
	port, err := c.MappedPort(ctx, "2113/tcp")
	if err != nil {
		return "", fmt.Errorf("container port: %w", err)
	}
	u := "kurrentdb://" + net.JoinHostPort(host, port.Port()) + "?tls=false"
	fmt.Fprintf(os.Stderr, "testenv: KurrentDB from a testcontainers container (%s, %s)\n", image, u)
	return u, nil
}
