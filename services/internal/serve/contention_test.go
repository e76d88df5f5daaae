package serve_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/commands/commandstest"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/eventstore/postgres/pgtest"
	"github.com/orderflow/orderflow/services/internal/serve"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

// TestCommandContentionOnPostgres runs the command handlers' contention
// suite (one process's callers queue on a stream and share appends; other
// processes' appends are conflicts retried within the budget) on the
// PostgreSQL event store.
func TestCommandContentionOnPostgres(t *testing.T) {
	commandstest.RunContention(t, func(t *testing.T) commands.EventStore {
		s, _ := pgtest.New(t, postgres.Config{})
		return s
	})
}

// hotRestocks is how many concurrent clients restock one sku.
const hotRestocks = 200

// TestHotSkuThroughHTTP: 200 concurrent clients restock one sku by 1
// through one inventory process. Every one is answered 202, with its own
// version, and the read model ends at 200 on hand.
func TestHotSkuThroughHTTP(t *testing.T) {
	env := servetest.Start(t, "inventory")
	statuses := restockConcurrently(t, []string{env.URL}, "HOT-1", hotRestocks)
	wantAllAccepted(t, statuses)
	waitOnHand(t, env, "HOT-1", hotRestocks)

	m := scrape(t, env.URL)
	if m["orderflow_command_conflicts_total"] != 0 || m["orderflow_command_conflicts_surfaced_total"] != 0 {
		t.Errorf("one process conflicted with itself: %v", m)
	}
	if got := m["orderflow_command_appended_commands_total"]; got != hotRestocks {
		t.Errorf("orderflow_command_appended_commands_total = %v, want %d", got, hotRestocks)
	}
	if a := m["orderflow_command_appends_total"]; a < 1 || a > hotRestocks {
		t.Errorf("orderflow_command_appends_total = %v, want 1..%d", a, hotRestocks)
	}
	t.Logf("%d restocks in %v appends", hotRestocks, m["orderflow_command_appends_total"])
}

// TestHotSkuSharedByTwoProcesses: two inventory processes on one database
// share 200 concurrent restocks of one sku. Their appends conflict with
// each other's; the conflicts are retried inside the services, so every
// client gets 202 and the stock ends at 200.
func TestHotSkuSharedByTwoProcesses(t *testing.T) {
	var dbURL string
	first := servetest.Start(t, "inventory", func(c *serve.Config) { dbURL = c.DatabaseURL })
	second := servetest.Start(t, "inventory", func(c *serve.Config) { c.DatabaseURL = dbURL })
	statuses := restockConcurrently(t, []string{first.URL, second.URL}, "HOT-2", hotRestocks)
	wantAllAccepted(t, statuses)
	waitOnHand(t, first, "HOT-2", hotRestocks)
	waitOnHand(t, second, "HOT-2", hotRestocks)

	var conflicts, surfaced, appended float64
	for _, env := range []*servetest.Env{first, second} {
		m := scrape(t, env.URL)
		conflicts += m["orderflow_command_conflicts_total"]
		surfaced += m["orderflow_command_conflicts_surfaced_total"]
		appended += m["orderflow_command_appended_commands_total"]
	}
	if surfaced != 0 || appended != hotRestocks {
		t.Errorf("%v conflicts surfaced, %v commands appended; want 0 and %d", surfaced, appended, hotRestocks)
	}
	t.Logf("%v conflicts between the two processes, all retried", conflicts)
}

// restockConcurrently sends n `+1` restocks of sku at once, one client
// goroutine each, spread over the services at urls in turn, and returns
// each answer's status. Transport failures and answers that break the
// contract fail the test.
func restockConcurrently(t *testing.T, urls []string, sku string, n int) []int {
	t.Helper()
	contract, err := servetest.LoadContract()
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{
		Timeout:   time.Minute,
		Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0},
	}
	t.Cleanup(client.CloseIdleConnections)
	path := "/api/inventory/" + sku + "/restock"
	statuses := make([]int, n)
	versions := make([]int64, n)
	problems := make([][]string, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			res, err := client.Post(urls[i%len(urls)]+path, "application/json", strings.NewReader(`{"quantity":1}`))
			if err != nil {
				problems[i] = []string{err.Error()}
				return
			}
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			if err != nil {
				problems[i] = []string{err.Error()}
				return
			}
			statuses[i] = res.StatusCode
			problems[i] = contract.CheckResponse(http.MethodPost, path, res.StatusCode, res.Header, body)
			if res.StatusCode != http.StatusAccepted {
				problems[i] = append(problems[i], fmt.Sprintf("%d %s", res.StatusCode, body))
				return
			}
			var ans struct {
				SKU     string `json:"sku"`
				Version int64  `json:"version"`
			}
			if err := json.Unmarshal(body, &ans); err != nil || ans.SKU != sku {
				problems[i] = append(problems[i], fmt.Sprintf("answer %s: %v", body, err))
			}
			versions[i] = ans.Version
		})
	}
	close(start)
	wg.Wait()
	reported := 0
	for i, p := range problems {
		if len(p) > 0 && reported < 10 {
			t.Errorf("client %d: %s", i, strings.Join(p, "; "))
			reported++
		}
	}
	seen := make(map[int64]int)
	for i, v := range versions {
		if statuses[i] != http.StatusAccepted {
			continue
		}
		if j, dup := seen[v]; dup || v < 1 || v > int64(n) {
			t.Errorf("client %d got version %d (client %d got it too: %t); versions must be distinct, 1..%d", i, v, j, dup, n)
		}
		seen[v] = i
	}
	return statuses
}

func wantAllAccepted(t *testing.T, statuses []int) {
	t.Helper()
	count := make(map[int]int)
	for _, s := range statuses {
		count[s]++
	}
	if count[http.StatusAccepted] != len(statuses) {
		t.Fatalf("statuses %v, want %d x 202", count, len(statuses))
	}
}

// waitOnHand polls the sku's read model until it shows onHand.
func waitOnHand(t *testing.T, env *servetest.Env, sku string, onHand int) {
	t.Helper()
	env.Eventually(t, 30*time.Second, "/api/inventory/"+sku, func(r servetest.Response) bool {
		if r.Status != http.StatusOK {
			return false
		}
		var st struct {
			OnHand int `json:"on_hand"`
		}
		return json.Unmarshal(r.Body, &st) == nil && st.OnHand == onHand
	})
}

var sampleLine = regexp.MustCompile(`^(orderflow_command_[a-z_]+) ([0-9.e+-]+)$`)

// scrape returns the command metrics of the service at url.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	res, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for line := range strings.Lines(string(body)) {
		if m := sampleLine.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			out[m[1]] = v
		}
	}
	for _, name := range []string{
		"orderflow_command_conflicts_total", "orderflow_command_retries_total", "orderflow_command_conflicts_surfaced_total",
		"orderflow_command_appends_total", "orderflow_command_appended_commands_total", "orderflow_command_queued",
		"orderflow_command_cached_streams",
	} {
		if _, ok := out[name]; !ok {
			t.Fatalf("metrics lack %s:\n%s", name, body)
		}
	}
	return out
}
