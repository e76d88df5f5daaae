package serve_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

type projectionItem struct {
	Name            string  `json:"name"`
	Checkpoint      uint64  `json:"checkpoint"`
	Head            uint64  `json:"head"`
	Lag             uint64  `json:"lag"`
	Status          string  `json:"status"`
	EventsPerSecond float64 `json:"events_per_second"`
	Parked          int64   `json:"parked"`
	ActiveVersion   int     `json:"active_version"`
	Rebuild         *struct {
		Phase           string  `json:"phase"`
		Done            uint64  `json:"done"`
		Total           uint64  `json:"total"`
		Events          uint64  `json:"events"`
		EventsPerSecond float64 `json:"events_per_second"`
		ETASeconds      float64 `json:"eta_seconds"`
	} `json:"rebuild"`
	Progress *struct {
		Phase           string  `json:"phase"`
		Done            uint64  `json:"done"`
		Total           uint64  `json:"total"`
		Events          uint64  `json:"events"`
		EventsPerSecond float64 `json:"events_per_second"`
		Percent         float64 `json:"percent"`
	} `json:"progress"`
}

// projection reads the one projection a service runs from
// GET /admin/projections.
func projection(t *testing.T, env *servetest.Env, name string) projectionItem {
	t.Helper()
	res := env.Get(t, "/admin/projections")
	if res.Status != http.StatusOK {
		t.Fatalf("GET /admin/projections: %d %s", res.Status, res.Body)
	}
	var list struct {
		Items []projectionItem `json:"items"`
	}
	res.JSON(t, &list)
	if len(list.Items) != 1 || list.Items[0].Name != name {
		t.Fatalf("projections %s, want exactly %s", res.Body, name)
	}
	return list.Items[0]
}

// waitProjection polls GET /admin/projections until done accepts the
// projection.
func waitProjection(t *testing.T, env *servetest.Env, name string, within time.Duration, done func(projectionItem) bool) projectionItem {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		p := projection(t, env, name)
		if done(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("projection %s not as expected within %s: %+v", name, within, p)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func caughtUp(p projectionItem) bool {
	return p.Status == "live" && p.Lag == 0 && p.Checkpoint >= 1 && p.Head == p.Checkpoint
}

func meta() commands.Meta { return commands.Meta{CommandID: uuid.NewString()} }

// TestAdminProjections: every service runs its read model's projection,
// which catches up (live, lag 0) and shows in the metrics; replaying a
// projection the service does not have is a 404.
func TestAdminProjections(t *testing.T) {
	tests := []struct {
		service, projection string
		act                 func(t *testing.T, env *servetest.Env)
	}{
		{"inventory", "stock", func(t *testing.T, env *servetest.Env) {
			if _, err := commands.NewInventory(env.Store, commands.Config{}).Restock(t.Context(), meta(), "SKU-1", 5); err != nil {
				t.Fatal(err)
			}
		}},
		{"orders", "orders", func(t *testing.T, env *servetest.Env) {
			_, err := commands.NewOrders(env.Store, commands.Config{}).Place(t.Context(), meta(), commands.PlaceOrder{
				OrderID: uuid.NewString(), SagaID: uuid.NewString(), CustomerID: "c-1",
				Items:   []order.Item{{SKU: "SKU-1", Quantity: 1, UnitPriceCents: 10}},
				Address: order.Address{Name: "N", Line1: "L", City: "C", PostalCode: "1", Country: "US"},
			})
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"shipping", "shipments", func(t *testing.T, env *servetest.Env) {
			_, err := commands.NewShipping(env.Store, commands.Config{}).Schedule(t.Context(), meta(), commands.ScheduleShipment{
				ShipmentID: uuid.NewString(), OrderID: uuid.NewString(),
				Items:   []order.Item{{SKU: "SKU-1", Quantity: 1, UnitPriceCents: 10}},
				Address: order.Address{Name: "N", Line1: "L", City: "C", PostalCode: "1", Country: "US"},
			})
			if err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			env := servetest.Start(t, tt.service)
			tt.act(t, env)
			tt.act(t, env)
			p := waitProjection(t, env, tt.projection, 5*time.Second, caughtUp)
			if p.Checkpoint != env.Head(t) || p.ActiveVersion != 1 || p.Parked != 0 || p.Rebuild != nil {
				t.Fatalf("projection %+v, store head %d", p, env.Head(t))
			}

			res := env.Get(t, "/metrics")
			for _, want := range []string{
				fmt.Sprintf(`orderflow_projection_checkpoint{projection=%q} %d`+"\n", tt.projection, p.Checkpoint),
				fmt.Sprintf(`orderflow_projection_lag{projection=%q} 0`+"\n", tt.projection),
				fmt.Sprintf(`orderflow_projection_parked_events{projection=%q} 0`+"\n", tt.projection),
				fmt.Sprintf(`orderflow_projection_status{projection=%q,status="live"} 1`+"\n", tt.projection),
				fmt.Sprintf(`orderflow_projection_status{projection=%q,status="rebuilding"} 0`+"\n", tt.projection),
			} {
				if !bytes.Contains(res.Body, []byte(want)) {
					t.Errorf("metrics lack %q:\n%s", want, res.Body)
				}
			}
			// Without NATS there is no relay, and no relay metrics.
			if bytes.Contains(res.Body, []byte("orderflow_relay_")) {
				t.Errorf("relay metrics without a relay:\n%s", res.Body)
			}

			env.Post(t, "/admin/projections/nonesuch/replay", `{}`).WantProblem(t, http.StatusNotFound, httpx.SlugNotFound)
			other := map[string]string{"stock": "orders", "orders": "shipments", "shipments": "stock"}[tt.projection]
			env.Post(t, "/admin/projections/"+other+"/replay", ``).WantProblem(t, http.StatusNotFound, httpx.SlugNotFound)
			env.Post(t, "/admin/projections/"+tt.projection+"/replay", `{"now":true}`).
				WantProblem(t, http.StatusBadRequest, httpx.SlugValidation, "now")
			if got := projection(t, env, tt.projection); got.Status != "live" || got.ActiveVersion != 1 {
				t.Fatalf("a refused replay changed the projection: %+v", got)
			}
		})
	}
}

// TestReplayKeepsServing rebuilds the stock read model while clients keep
// reading it: every read during the rebuild answers 200 with the same
// data, the rebuilt version is swapped in, and it holds the same rows.
func TestReplayKeepsServing(t *testing.T) {
	env := servetest.Start(t, "inventory")
	const skus, restocksPerSKU = 200, 10
	inv := commands.NewInventory(env.Store, commands.Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < skus; i += 8 {
				for r := range restocksPerSKU {
					if _, err := inv.Restock(context.Background(), meta(), fmt.Sprintf("SKU-%03d", i), r+1); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	before := waitProjection(t, env, "stock", 10*time.Second, caughtUp)

	const listPath, itemPath = "/api/inventory?limit=500", "/api/inventory/SKU-042"
	snapshot := map[string][]byte{}
	for _, path := range []string{listPath, itemPath} {
		res := env.Get(t, path)
		if res.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", path, res.Status, res.Body)
		}
		snapshot[path] = res.Body
	}
	if !bytes.Contains(snapshot[itemPath], []byte(`"on_hand":55,`)) {
		t.Fatalf("SKU-042 before the replay: %s", snapshot[itemPath])
	}

	// Readers run from before the replay until it has been swapped in.
	ctx, stop := context.WithCancel(context.Background())
	var reads atomic.Int64
	failures := make(chan string, 16)
	var readers sync.WaitGroup
	for _, path := range []string{listPath, itemPath, listPath, itemPath} {
		readers.Go(func() {
			for ctx.Err() == nil {
				status, body, err := get(ctx, env.URL+path)
				if ctx.Err() != nil {
					return
				}
				if err != nil || status != http.StatusOK || !bytes.Equal(body, snapshot[path]) {
					select {
					case failures <- fmt.Sprintf("GET %s during the replay: %d %v %.300s", path, status, err, body):
					default:
					}
					return
				}
				reads.Add(1)
			}
		})
	}
	stopReaders := func() {
		stop()
		readers.Wait()
		close(failures)
		for f := range failures {
			t.Error(f)
		}
	}

	res := env.Post(t, "/admin/projections/stock/replay", `{}`)
	if res.Status != http.StatusAccepted {
		stopReaders()
		t.Fatalf("replay: %d %s", res.Status, res.Body)
	}
	var accepted struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	}
	res.JSON(t, &accepted)
	if accepted.Name != "stock" || accepted.Status != "rebuilding" {
		t.Errorf("replay answer %s", res.Body)
	}
	// The rebuild of 2,000 events takes far longer than one request.
	env.Post(t, "/admin/projections/stock/replay", ``).WantProblem(t, http.StatusConflict, httpx.SlugIllegalState)
	if p := projection(t, env, "stock"); p.Status != "rebuilding" || p.Rebuild == nil || p.ActiveVersion != before.ActiveVersion {
		t.Errorf("during the replay: %+v", p)
	} else if g := p.Progress; g == nil || g.Phase != p.Rebuild.Phase || g.Percent < 0 || g.Percent > 100 ||
		(g.Phase == "replay" && (g.Total < g.Done || g.Total == 0)) {
		t.Errorf("progress during the replay: %+v (rebuild %+v)", g, p.Rebuild)
	}

	after := waitProjection(t, env, "stock", 30*time.Second, func(p projectionItem) bool {
		return p.ActiveVersion == before.ActiveVersion+1 && caughtUp(p)
	})
	stopReaders()
	if reads.Load() == 0 {
		t.Fatal("no read completed during the replay")
	}
	t.Logf("%d reads during the replay; projection after it: %+v", reads.Load(), after)
	if after.Checkpoint != before.Checkpoint {
		t.Errorf("checkpoint %d after the replay, %d before (nothing was appended)", after.Checkpoint, before.Checkpoint)
	}
	for path, want := range snapshot {
		if res := env.Get(t, path); res.Status != http.StatusOK || !bytes.Equal(res.Body, want) {
			t.Errorf("%s after the replay differs:\n%.500s\nbefore:\n%.500s", path, res.Body, want)
		}
	}

	// The rebuilt version keeps following new events.
	if _, err := inv.Restock(t.Context(), meta(), "SKU-042", 45); err != nil {
		t.Fatal(err)
	}
	env.Eventually(t, 10*time.Second, itemPath, func(r servetest.Response) bool {
		return bytes.Contains(r.Body, []byte(`"on_hand":100,`))
	})
}

func get(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, body, err
}

// TestRelayMetrics: with NATS, /metrics reports the relay's progress next
// to the projection's.
func TestRelayMetrics(t *testing.T) {
	env := servetest.Start(t, "inventory", func(c *serve.Config) { c.NATSURL = testenv.NATS(t) })
	for range 3 {
		if res := env.Post(t, "/api/inventory/SKU-1/restock", `{"quantity":1}`); res.Status != http.StatusAccepted {
			t.Fatalf("restock: %d %s", res.Status, res.Body)
		}
	}
	head := env.Head(t)
	metric := func(body []byte, name string) (float64, bool) {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(body)
		if m == nil {
			return 0, false
		}
		v, err := strconv.ParseFloat(string(m[1]), 64)
		return v, err == nil
	}
	var last []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		last = env.Get(t, "/metrics").Body
		published, _ := metric(last, "orderflow_relay_published_total")
		cp, _ := metric(last, "orderflow_relay_checkpoint")
		lag, okLag := metric(last, "orderflow_relay_lag")
		parked, okParked := metric(last, "orderflow_relay_parked_total")
		pcp, _ := metric(last, `orderflow_projection_checkpoint{projection="stock"}`)
		plag, okPlag := metric(last, `orderflow_projection_lag{projection="stock"}`)
		if published == 3 && cp == float64(head) && okLag && lag == 0 && okParked && parked == 0 &&
			pcp == float64(head) && okPlag && plag == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed the relay and projection caught up at %d:\n%s", head, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{
		"# TYPE orderflow_relay_published_total counter",
		"# TYPE orderflow_relay_lag gauge",
		"orderflow_relay_active 1",
	} {
		if !bytes.Contains(last, []byte(want)) {
			t.Errorf("metrics lack %q:\n%s", want, last)
		}
	}
}
