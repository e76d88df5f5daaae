package serve_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/pgserver"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

// lockedBuffer collects output written from several goroutines.
type lockedBuffer = testenv.Buffer

// answer is one response, read in full, with what was asked.
type answer struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
	took         time.Duration
}

// send makes one request with a client of its own; it never fails the
// test, so that load goroutines can use it (a transport error is an
// answer with status 0 and the error as body).
func send(client *http.Client, baseURL, method, path, body string, header ...string) answer {
	a := answer{method: method, path: path}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, baseURL+path, rd)
	if err != nil {
		a.body = []byte(err.Error())
		return a
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	start := time.Now()
	res, err := client.Do(req)
	if err != nil {
		a.body = []byte(err.Error())
		a.took = time.Since(start)
		return a
	}
	defer res.Body.Close()
	a.body, err = io.ReadAll(res.Body)
	a.took = time.Since(start)
	if err != nil {
		a.body = []byte(err.Error())
		return a
	}
	a.status, a.header = res.StatusCode, res.Header
	return a
}

func (a answer) String() string {
	return fmt.Sprintf("%s %s: %d %s (%s)", a.method, a.path, a.status, bytes.TrimSpace(a.body), a.took.Round(time.Millisecond))
}

// checkContract checks answers against the OpenAPI document from the test
// goroutine.
func checkContract(t *testing.T, answers []answer) {
	t.Helper()
	c, err := servetest.LoadContract()
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, a := range answers {
		for _, msg := range c.CheckResponse(a.method, a.path, a.status, a.header, a.body) {
			if bad++; bad <= 5 {
				t.Errorf("contract: %s", msg)
			}
		}
	}
	if bad > 5 {
		t.Errorf("contract: %d more", bad-5)
	}
}

// wantUnavailable checks that a is the 503 a dependency's outage must be:
// a problem with Retry-After, whose detail, for a command, says that a
// same-key retry is safe.
func wantUnavailable(t *testing.T, a answer) {
	t.Helper()
	if a.status != http.StatusServiceUnavailable {
		t.Fatalf("%s, want 503", a)
	}
	var p httpx.Problem
	if err := json.Unmarshal(a.body, &p); err != nil || p.Type != httpx.ProblemTypeBase+httpx.SlugUnavailable {
		t.Fatalf("%s: not an unavailable problem (%v)", a, err)
	}
	if n, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || n < 1 {
		t.Fatalf("%s: Retry-After %q", a, a.header.Get("Retry-After"))
	}
	if got, want := strings.Contains(p.Detail, "Idempotency-Key"), a.method == http.MethodPost; got != want {
		t.Fatalf("%s: a command's 503 must say a same-key retry is safe, a read's must not speak of keys", a)
	}
	for _, leak := range []string{"127.0.0.1", "SQLSTATE", "failed to", "dial", "stock-", "order-"} {
		if strings.Contains(p.Detail, leak) {
			t.Fatalf("%s: detail leaks %q", a, leak)
		}
	}
}

// faultLoad is what one service is asked during the fault tests: setup
// creates what the reads need and returns their paths; request returns
// worker w's i-th request.
type faultLoad struct {
	service string
	setup   func(t *testing.T, baseURL string) []string
	request func(w, i int, reads []string) (method, path, body string)
}

var faultLoads = []faultLoad{
	{
		service: "orders",
		setup: func(t *testing.T, baseURL string) []string {
			a := send(http.DefaultClient, baseURL, http.MethodPost, "/api/orders", orderBody())
			var placed struct {
				OrderID string `json:"order_id"`
			}
			if err := json.Unmarshal(a.body, &placed); a.status != http.StatusAccepted || err != nil {
				t.Fatalf("place: %s", a)
			}
			return []string{"/api/orders/" + placed.OrderID, "/api/orders?customer_id=c-42&limit=5"}
		},
		request: func(w, i int, reads []string) (string, string, string) {
			if i%2 == 0 {
				return http.MethodPost, "/api/orders", orderBody(`"c-42"`, fmt.Sprintf(`"c-w%d"`, w))
			}
			return http.MethodGet, reads[(i/2)%len(reads)], ""
		},
	},
	{
		service: "inventory",
		setup: func(t *testing.T, baseURL string) []string {
			if a := send(http.DefaultClient, baseURL, http.MethodPost, "/api/inventory/SEED/restock", `{"quantity":5}`); a.status != http.StatusAccepted {
				t.Fatalf("restock: %s", a)
			}
			return []string{"/api/inventory/SEED", "/api/inventory?limit=10"}
		},
		request: func(w, i int, reads []string) (string, string, string) {
			if i%2 == 0 {
				// One sku per worker: contention is not what this test is about.
				return http.MethodPost, fmt.Sprintf("/api/inventory/SKU-W%d/restock", w), `{"quantity":1}`
			}
			return http.MethodGet, reads[(i/2)%len(reads)], ""
		},
	},
}

// waitFor polls url until done accepts the answer; only the statuses in
// allowed may come meanwhile.
func waitFor(t *testing.T, within time.Duration, client *http.Client, baseURL, method, path, body string, done func(answer) bool, allowed []int, header ...string) answer {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		a := send(client, baseURL, method, path, body, header...)
		if done(a) {
			return a
		}
		if !slices.Contains(allowed, a.status) {
			t.Fatalf("%s: not allowed while waiting", a)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not as expected within %s; last answer %s", within, a)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func is2xx(a answer) bool { return a.status >= 200 && a.status < 300 }

// TestTerminatedConnectionsNeverAnswer500 terminates every connection of
// a service's database again and again while concurrent clients send
// commands and queries: each answer is 2xx or 503 with Retry-After (the
// connections of a request in flight break), never 500, and the service
// keeps serving once the terminations stop.
func TestTerminatedConnectionsNeverAnswer500(t *testing.T) {
	const (
		workers = 6
		rounds  = 12
		// between two rounds of terminations, the clients get this many
		// answers, so the terminations land amid work however slow the
		// machine is.
		answersPerRound = 15
	)
	admin, err := pgxpool.New(context.Background(), testenv.PostgresAdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)

	for _, load := range faultLoads {
		t.Run(load.service, func(t *testing.T) {
			logs := &lockedBuffer{}
			env := servetest.Start(t, load.service, func(c *serve.Config) {
				c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
			})
			db := env.Pool.Config().ConnConfig.Database
			reads := load.setup(t, env.URL)
			for _, path := range reads {
				waitFor(t, 30*time.Second, http.DefaultClient, env.URL, http.MethodGet, path, "", is2xx, []int{404})
			}

			var (
				mu      sync.Mutex
				answers []answer
				stop    = make(chan struct{})
				done    atomic.Int64
				wg      sync.WaitGroup
			)
			client := &http.Client{Timeout: time.Minute}
			for w := range workers {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						method, path, body := load.request(w, i, reads)
						var header []string
						if i%4 == 0 {
							header = []string{"Idempotency-Key", uuid.NewString()}
						}
						a := send(client, env.URL, method, path, body, header...)
						mu.Lock()
						answers = append(answers, a)
						mu.Unlock()
						done.Add(1)
					}
				})
			}

			terminated := 0
			deadline := time.Now().Add(2 * time.Minute)
			for range rounds {
				var n int
				err := admin.QueryRow(context.Background(), `
					SELECT count(*) FROM (
						SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
						WHERE datname = $1 AND pid <> pg_backend_pid()) t
					WHERE ok`, db).Scan(&n)
				if err != nil {
					close(stop)
					wg.Wait()
					t.Fatalf("terminate: %v", err)
				}
				terminated += n
				target := done.Load() + answersPerRound
				for done.Load() < target && time.Now().Before(deadline) {
					time.Sleep(2 * time.Millisecond)
				}
			}
			close(stop)
			wg.Wait()
			if time.Now().After(deadline) {
				t.Fatalf("the clients got only %d answers in 2 minutes", done.Load())
			}

			counts := map[int]int{}
			var unexpected []answer
			for _, a := range answers {
				counts[a.status]++
				if !is2xx(a) && a.status != http.StatusServiceUnavailable {
					unexpected = append(unexpected, a)
				}
			}
			t.Logf("%d connections terminated in %d rounds; %d answers: %v", terminated, rounds, len(answers), counts)
			if terminated == 0 || counts[http.StatusServiceUnavailable] == 0 {
				t.Fatal("no connection was terminated under a request: the test exercised nothing")
			}
			if len(unexpected) > 0 {
				for _, a := range unexpected[:min(5, len(unexpected))] {
					t.Errorf("unexpected answer %s", a)
				}
				for _, l := range logs.Lines("status=500") {
					t.Logf("log: %s", l)
				}
				t.Fatalf("%d of %d answers were neither 2xx nor 503", len(unexpected), len(answers))
			}
			for _, a := range answers {
				if a.status == http.StatusServiceUnavailable {
					wantUnavailable(t, a)
				}
			}
			checkContract(t, answers)

			// The pool replaced its connections: the service serves again.
			method, path, body := load.request(0, 0, reads)
			waitFor(t, 30*time.Second, client, env.URL, method, path, body, is2xx, []int{http.StatusServiceUnavailable})
			for _, path := range reads {
				waitFor(t, 30*time.Second, client, env.URL, http.MethodGet, path, "", is2xx, []int{http.StatusServiceUnavailable})
			}
		})
	}
}

// privateCluster is a PostgreSQL cluster of the test's own, which it may
// stop and start again on the same data and port.
type privateCluster struct {
	dir  string
	port int
	srv  *pgserver.Server
}

func startPrivateCluster(t *testing.T) *privateCluster {
	t.Helper()
	// Not t.TempDir: when the tests run as root the cluster runs as an
	// unprivileged user, who must be able to reach the directory.
	dir, err := os.MkdirTemp("", "orderflow-faults-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	c := &privateCluster{dir: dir}
	c.start(t)
	t.Cleanup(func() {
		if c.srv != nil {
			_ = c.srv.Stop(context.Background())
		}
	})
	return c
}

// start starts the cluster in c.dir, on c.port once it has one.
func (c *privateCluster) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pgserver.Start(ctx, pgserver.Config{Dir: c.dir, Port: c.port, NoFsync: true})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	c.srv, c.port = srv, srv.Port()
}

// stop shuts the cluster down (its data stays in c.dir).
func (c *privateCluster) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.srv.Stop(ctx); err != nil {
		t.Fatalf("stop PostgreSQL: %v", err)
	}
	c.srv = nil
}

// TestDatabaseStoppedAnswers503AndRecovers stops the PostgreSQL server of
// running services: every request, GET or POST, is answered 503 with
// Retry-After within a second (not 500, not after the request timeout);
// once PostgreSQL is back, the same servers answer 2xx without a restart,
// and a command retried with the key of its 503 is applied once.
func TestDatabaseStoppedAnswers503AndRecovers(t *testing.T) {
	cluster := startPrivateCluster(t)
	admin, err := pgx.Connect(context.Background(), cluster.srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	type running struct {
		load  faultLoad
		url   string
		reads []string
		logs  *lockedBuffer
	}
	var services []running
	for _, load := range faultLoads {
		if _, err := admin.Exec(context.Background(), "CREATE DATABASE "+load.service); err != nil {
			t.Fatal(err)
		}
		logs := &lockedBuffer{}
		srv, err := serve.New(context.Background(), serve.Config{
			Service:     load.service,
			DatabaseURL: cluster.srv.URL(load.service),
			Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(hs.Close)
		reads := load.setup(t, hs.URL)
		for _, path := range reads {
			waitFor(t, 30*time.Second, http.DefaultClient, hs.URL, http.MethodGet, path, "", is2xx, []int{404})
		}
		services = append(services, running{load: load, url: hs.URL, reads: reads, logs: logs})
	}
	_ = admin.Close(context.Background())

	cluster.stop(t)

	client := &http.Client{Timeout: time.Minute}
	keys := map[string]string{}
	var answers []answer
	for _, s := range services {
		method, path, body := s.load.request(0, 0, s.reads)
		keys[s.load.service] = uuid.NewString()
		// Twice each: the first requests meet the pool's broken
		// connections, the later ones fail to connect.
		for range 2 {
			for _, a := range []answer{
				send(client, s.url, http.MethodGet, s.reads[0], ""),
				send(client, s.url, http.MethodGet, s.reads[1], ""),
				send(client, s.url, method, path, body, "Idempotency-Key", keys[s.load.service]),
				send(client, s.url, method, path, body),
			} {
				wantUnavailable(t, a)
				if a.took > time.Second {
					t.Errorf("%s: took longer than a second", a)
				}
				answers = append(answers, a)
			}
		}
		if lines := s.logs.Lines("status=500"); len(lines) > 0 {
			t.Fatalf("%s logged 500s: %v", s.load.service, lines)
		}
	}
	checkContract(t, answers)

	cluster.start(t)

	for _, s := range services {
		// The command that got a 503 while PostgreSQL was down, retried
		// with its key, is applied (once).
		method, path, body := s.load.request(0, 0, s.reads)
		a := waitFor(t, time.Minute, client, s.url, method, path, body, is2xx,
			[]int{http.StatusServiceUnavailable}, "Idempotency-Key", keys[s.load.service])
		if a.status != http.StatusAccepted {
			t.Fatalf("%s: retry after recovery: %s", s.load.service, a)
		}
		again := send(client, s.url, method, path, body, "Idempotency-Key", keys[s.load.service])
		if again.status != a.status || !bytes.Equal(again.body, a.body) {
			t.Fatalf("%s: same-key repeat %s, want the replay of %s", s.load.service, again, a)
		}
		for _, path := range s.reads {
			waitFor(t, time.Minute, client, s.url, http.MethodGet, path, "", is2xx, []int{http.StatusServiceUnavailable})
		}
		if lines := s.logs.Lines("status=500"); len(lines) > 0 {
			t.Fatalf("%s logged 500s: %v", s.load.service, lines)
		}
	}
}
