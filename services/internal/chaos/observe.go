package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Observation is what the read models show of a run.
type Observation struct {
	Orders      []Order
	Sagas       []Saga
	Shipments   []Shipment
	Stock       []Stock
	Projections []Projection
}

// Observe reads, through the gateway as admin, the run's orders (those of
// its customers), their sagas and shipments, the run's skus' stock and
// every projection's state.
func Observe(ctx context.Context, c *Client, cfg LoadConfig, restocked map[string]int64) (Observation, error) {
	var ob Observation
	prefix := cfg.Customer(0)[:len(cfg.Customer(0))-3]
	all, err := List[Order](ctx, c, cfg.AdminToken, "/api/orders")
	if err != nil {
		return ob, err
	}
	mine := map[string]bool{}
	for _, o := range all {
		if strings.HasPrefix(o.CustomerID, prefix) {
			ob.Orders = append(ob.Orders, o)
			mine[o.OrderID] = true
		}
	}
	sagas, err := List[Saga](ctx, c, cfg.AdminToken, "/api/sagas")
	if err != nil {
		return ob, err
	}
	for _, s := range sagas {
		if mine[s.OrderID] {
			ob.Sagas = append(ob.Sagas, s)
		}
	}
	ships, err := List[Shipment](ctx, c, cfg.AdminToken, "/api/shipments")
	if err != nil {
		return ob, err
	}
	for _, s := range ships {
		if mine[s.OrderID] {
			ob.Shipments = append(ob.Shipments, s)
		}
	}
	stock, err := List[Stock](ctx, c, cfg.AdminToken, "/api/inventory")
	if err != nil {
		return ob, err
	}
	for _, s := range stock {
		if _, ok := restocked[s.SKU]; ok {
			ob.Stock = append(ob.Stock, s)
		}
	}
	ob.Projections, err = Projections(ctx, c, cfg.AdminToken)
	return ob, err
}

// Projections reads GET /admin/projections.
func Projections(ctx context.Context, c *Client, admin string) ([]Projection, error) {
	var page struct {
		Items []Projection `json:"items"`
	}
	if err := c.GetRetry(ctx, admin, "/admin/projections", &page); err != nil {
		return nil, err
	}
	return page.Items, nil
}

// Quiet reports whether ob shows a run at rest: every acknowledged order
// has a saga and every saga has ended, and every projection is live and
// caught up. When not, it says what is still moving.
func Quiet(ob Observation, intents []Intent) (bool, string) {
	sagas := make(map[string]string, len(ob.Sagas))
	running := 0
	for _, s := range ob.Sagas {
		sagas[s.SagaID] = s.Status
		if s.Status != "completed" && s.Status != "compensated" && s.Status != "failed" {
			running++
		}
	}
	missing := 0
	for _, in := range intents {
		if _, ok := sagas[in.SagaID]; !ok {
			missing++
		}
	}
	var moving []string
	if running > 0 || missing > 0 {
		moving = append(moving, fmt.Sprintf("%d sagas running, %d not yet seen", running, missing))
	}
	for _, p := range ob.Projections {
		if p.Lag > 0 || p.Status != "live" {
			moving = append(moving, fmt.Sprintf("projection %s %s lag %d", p.Name, p.Status, p.Lag))
		}
	}
	return len(moving) == 0, strings.Join(moving, "; ")
}

// listPaths maps a projection to the list that reads its rows and the
// field that identifies a row.
var listPaths = map[string]struct{ path, id string }{
	"orders":    {"/api/orders", "order_id"},
	"stock":     {"/api/inventory", "sku"},
	"shipments": {"/api/shipments", "shipment_id"},
	"sagas":     {"/api/sagas", "saga_id"},
}

// CompareReplay reads every row of the projection name, asks for a fresh
// replay of it from its store, waits (within ctx) until the rebuilt model
// is swapped in, reads every row again and returns how the two differ.
func CompareReplay(ctx context.Context, c *Client, admin, name string) ReplayDiff {
	d := ReplayDiff{Projection: name}
	lp, ok := listPaths[name]
	if !ok {
		d.Err = "no list reads this projection"
		return d
	}
	before, err := rows(ctx, c, admin, lp.path, lp.id)
	if err != nil {
		d.Err = err.Error()
		return d
	}
	version := -1
	ps, err := Projections(ctx, c, admin)
	if err != nil {
		d.Err = err.Error()
		return d
	}
	for _, p := range ps {
		if p.Name == name {
			version = p.ActiveVersion
		}
	}
	a, _, err := c.Write(ctx, admin, "/admin/projections/"+name+"/replay", `{}`, "", false)
	if err != nil {
		d.Err = err.Error()
		return d
	}
	if a.Status != http.StatusAccepted {
		d.Err = fmt.Sprintf("replay answered %d %s", a.Status, a.Body)
		return d
	}
	for swapped := false; !swapped; {
		ps, err := Projections(ctx, c, admin)
		if err != nil {
			d.Err = fmt.Sprintf("wait for the replay: %v", err)
			return d
		}
		for _, p := range ps {
			if p.Name == name && p.ActiveVersion > version && p.Status == "live" && p.Lag == 0 {
				swapped = true
			}
		}
		if swapped {
			break
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			d.Err = fmt.Sprintf("the replay was not swapped in (active version still %d): %v", version, ctx.Err())
			return d
		case <-t.C:
		}
	}
	after, err := rows(ctx, c, admin, lp.path, lp.id)
	if err != nil {
		d.Err = err.Error()
		return d
	}
	d.Missing, d.Extra, d.Changed = diffRows(before, after)
	return d
}

// rows reads every item of the list at path, canonical JSON by id.
func rows(ctx context.Context, c *Client, admin, path, idField string) (map[string]string, error) {
	items, err := List[map[string]any](ctx, c, admin, path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(items))
	for _, it := range items {
		id := fmt.Sprint(it[idField])
		b, err := json.Marshal(it) // maps marshal with sorted keys
		if err != nil {
			return nil, err
		}
		out[id] = string(b)
	}
	return out, nil
}

// diffRows compares two sets of rows by id.
func diffRows(before, after map[string]string) (missing, extra, changed []string) {
	for _, id := range sortedKeys(before) {
		a, ok := after[id]
		switch {
		case !ok:
			missing = append(missing, id)
		case a != before[id]:
			changed = append(changed, id)
		}
	}
	for _, id := range sortedKeys(after) {
		if _, ok := before[id]; !ok {
			extra = append(extra, id)
		}
	}
	return missing, extra, changed
}

// JetStreamBusy lists the JetStream consumers of the cluster at url that
// still have messages to deliver or awaiting their ack ("STREAM/consumer
// 3 pending, 1 unacked"), leaving out those that acknowledge nothing;
// none means no command or event is in flight. A
// command whose run was cut short by a kill is redelivered only after its
// ack wait, and may still have work to undo (a partial reservation), so
// a run is not at rest before this is empty.
func JetStreamBusy(ctx context.Context, url string) ([]string, error) {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var busy []string
	streams := js.ListStreams(ctx)
	for si := range streams.Info() {
		s, err := js.Stream(ctx, si.Config.Name)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", si.Config.Name, err)
		}
		cons := s.ListConsumers(ctx)
		for ci := range cons.Info() {
			if ci.Config.AckPolicy == jetstream.AckNonePolicy {
				// A reader that acknowledges nothing holds no work: the
				// search a relay makes of what it published, left behind
				// by a killed relay until its inactivity threshold.
				continue
			}
			if ci.NumPending > 0 || ci.NumAckPending > 0 {
				busy = append(busy, fmt.Sprintf("%s/%s %d pending, %d unacked", si.Config.Name, ci.Name, ci.NumPending, ci.NumAckPending))
			}
		}
		if err := cons.Err(); err != nil {
			return nil, fmt.Errorf("consumers of %s: %w", si.Config.Name, err)
		}
	}
	if err := streams.Err(); err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	return busy, nil
}
