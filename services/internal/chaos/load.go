package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Stock the load restocks: ServedSKUs with ample units (no served order
// can run short), and one scarce sku that over-stock orders ask more of
// than it ever had.
const (
	servedSKUs     = 8
	ampleUnits     = 1_000_000
	scarceUnits    = 100
	overStockUnits = 1000 // the API's largest quantity, > scarceUnits
)

// LoadConfig shapes the load.
type LoadConfig struct {
	// RunID makes skus, customers and idempotency keys unique to a run,
	// so that a run on a kept data directory starts from nothing.
	RunID string
	// Orders is how many orders to place; Workers how many clients place
	// them at once; Customers how many customers they are spread over
	// (the gateway rate-limits each subject).
	Orders, Workers, Customers int
	Seed                       uint64
	// AdminToken is an admin's bearer token; CustomerToken returns one
	// for a customer.
	AdminToken    string
	CustomerToken func(customer string) (string, error)
	// WriteTimeout bounds each write's retries (default 3 minutes).
	WriteTimeout time.Duration
	// Rate paces the load at this many orders a second (0: as fast as
	// the workers go), so that it can span the kills instead of ending
	// before most of them.
	Rate float64
}

// SKUs returns the run's served skus and its scarce sku.
func (cfg LoadConfig) SKUs() (served []string, scarce string) {
	for i := range servedSKUs {
		served = append(served, fmt.Sprintf("CHAOS-%s-%d", cfg.RunID, i))
	}
	return served, fmt.Sprintf("CHAOS-%s-SCARCE", cfg.RunID)
}

// Customer returns the run's i-th customer id.
func (cfg LoadConfig) Customer(i int) string {
	return fmt.Sprintf("chaos-%s-c%03d", cfg.RunID, i)
}

// Restock stocks up the run's skus through the gateway and returns the
// units restocked per sku.
func Restock(ctx context.Context, c *Client, cfg LoadConfig) (map[string]int64, error) {
	served, scarce := cfg.SKUs()
	want := map[string]int64{scarce: scarceUnits}
	for _, s := range served {
		want[s] = ampleUnits
	}
	for _, sku := range sortedKeys(want) {
		body := fmt.Sprintf(`{"quantity": %d}`, want[sku])
		a, _, err := c.Write(ctx, cfg.AdminToken, "/api/inventory/"+sku+"/restock", body, "chaos-"+cfg.RunID+"-restock-"+sku, false)
		if err != nil {
			return nil, fmt.Errorf("restock %s: %w", sku, err)
		}
		if a.Status != http.StatusAccepted {
			return nil, fmt.Errorf("restock %s: %d %s", sku, a.Status, a.Body)
		}
	}
	return want, nil
}

// planned is an order the load will place.
type planned struct {
	index    int
	kind     Kind
	customer string
	country  string
	lines    []Line
	// cancelAfter is how long after its acknowledgement a Cancelled
	// order is cancelled: at once, or after its saga may have confirmed it.
	cancelAfter time.Duration
}

// plan draws the run's orders from its seed: about 70% served, 10% each
// refused, over-stock and cancelled, over the run's customers.
func plan(cfg LoadConfig) []planned {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x63686f73))
	served, scarce := cfg.SKUs()
	out := make([]planned, cfg.Orders)
	for i := range out {
		p := planned{index: i, customer: cfg.Customer(rng.IntN(max(cfg.Customers, 1))), country: "US"}
		switch r := rng.IntN(10); {
		case r == 0:
			p.kind, p.country = Refused, "AQ"
		case r == 1:
			p.kind = OverStock
		case r == 2:
			p.kind = Cancelled
			p.cancelAfter = time.Duration(rng.IntN(1000)) * time.Millisecond
		default:
			p.kind = Served
		}
		n := 1 + rng.IntN(2)
		for _, j := range rng.Perm(len(served))[:n] {
			p.lines = append(p.lines, Line{SKU: served[j], Quantity: int64(1 + rng.IntN(3))})
		}
		if p.kind == OverStock {
			p.lines = append(p.lines, Line{SKU: scarce, Quantity: overStockUnits})
		}
		out[i] = p
	}
	return out
}

// LoadResult is what the load did.
type LoadResult struct {
	// Intents are the acknowledged orders.
	Intents []Intent
	// Unacknowledged counts orders that got no final answer; their
	// outcome is unknown, so they are not judged.
	Unacknowledged int
	// Retries counts the retried write attempts.
	Retries int64
	// Refusals are final answers other than the expected ones: a valid
	// order refused, or a cancel answered neither 202 nor 409.
	Refusals []Violation
}

// Progress counts what the load has done so far; it may be read while Run runs.
type Progress struct {
	Placed, Cancelled, Retries atomic.Int64
}

// Run places cfg.Orders orders through c from cfg.Workers clients and
// cancels the Cancelled ones, recording every acknowledged order.
func Run(ctx context.Context, c *Client, cfg LoadConfig, prog *Progress) (LoadResult, error) {
	orders := plan(cfg)
	tokens := map[string]string{}
	for _, p := range orders {
		if _, ok := tokens[p.customer]; ok {
			continue
		}
		t, err := cfg.CustomerToken(p.customer)
		if err != nil {
			return LoadResult{}, fmt.Errorf("token for %s: %w", p.customer, err)
		}
		tokens[p.customer] = t
	}
	timeout := cfg.WriteTimeout
	if timeout <= 0 {
		timeout = 3 * time.Minute
	}
	var (
		mu  sync.Mutex
		res LoadResult
	)
	work := make(chan planned)
	var wg sync.WaitGroup
	for range max(cfg.Workers, 1) {
		wg.Go(func() {
			for p := range work {
				in, refusals, ok := place(ctx, c, cfg, p, tokens[p.customer], timeout, prog)
				mu.Lock()
				if ok {
					res.Intents = append(res.Intents, in)
				} else if len(refusals) == 0 {
					res.Unacknowledged++
				}
				res.Refusals = append(res.Refusals, refusals...)
				mu.Unlock()
			}
		})
	}
	start := time.Now()
feed:
	for i, p := range orders {
		if cfg.Rate > 0 {
			// The i-th order is due i/Rate seconds after the start.
			due := start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					break feed
				}
			}
		}
		select {
		case work <- p:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	res.Retries = prog.Retries.Load()
	return res, ctx.Err()
}

// place places one planned order and, for a Cancelled one, cancels it.
func place(ctx context.Context, c *Client, cfg LoadConfig, p planned, token string, timeout time.Duration, prog *Progress) (Intent, []Violation, bool) {
	items := make([]string, len(p.lines))
	for i, l := range p.lines {
		items[i] = fmt.Sprintf(`{"sku": %q, "quantity": %d, "unit_price_cents": 1299}`, l.SKU, l.Quantity)
	}
	body := fmt.Sprintf(`{"customer_id": %q, "items": [%s], "shipping_address": {"name": "Chaos Monkey", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": %q}}`,
		p.customer, strings.Join(items, ", "), p.country)
	key := fmt.Sprintf("chaos-%s-order-%d", cfg.RunID, p.index)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	a, retries, err := c.Write(wctx, token, "/api/orders", body, key, false)
	cancel()
	prog.Retries.Add(int64(retries))
	if err != nil {
		return Intent{}, nil, false
	}
	var ack struct {
		OrderID string `json:"order_id"`
		SagaID  string `json:"saga_id"`
	}
	if a.Status != http.StatusAccepted || json.Unmarshal(a.Body, &ack) != nil || ack.OrderID == "" {
		return Intent{}, []Violation{{Invariant: "write-answered", Subject: "order request " + key,
			Detail: fmt.Sprintf("%s order of %s answered %d %s", p.kind, p.customer, a.Status, a.Body)}}, false
	}
	prog.Placed.Add(1)
	in := Intent{OrderID: ack.OrderID, SagaID: ack.SagaID, Customer: p.customer, Kind: p.kind, Country: p.country, Lines: p.lines}
	if p.kind != Cancelled {
		return in, nil, true
	}
	t := time.NewTimer(p.cancelAfter)
	select {
	case <-ctx.Done():
		t.Stop()
		return in, nil, true
	case <-t.C:
	}
	wctx, cancel = context.WithTimeout(ctx, timeout)
	defer cancel()
	// The gateway finds the order's owner in the orders read model, which
	// may not show a just-placed order yet: a 404 is retried.
	a, retries, err = c.Write(wctx, token, "/api/orders/"+ack.OrderID+"/cancel", `{}`, key+"-cancel", true)
	prog.Retries.Add(int64(retries))
	if err != nil {
		return in, nil, true
	}
	switch a.Status {
	case http.StatusAccepted, http.StatusConflict:
		in.CancelStatus = a.Status
		prog.Cancelled.Add(1)
		return in, nil, true
	}
	return in, []Violation{{Invariant: "write-answered", Subject: "order " + ack.OrderID,
		Detail: fmt.Sprintf("cancel answered %d %s", a.Status, a.Body)}}, true
}
