// Package stacktest is the client's side of the whole system under test:
// a stack of running services seen as a base URL per process name, and the
// requests and waits the saga tests make of it (place an order, restock,
// wait for an order's status, a stock level or a saga's, read a metric or
// every page of a list), and the state of its JetStream consumers.
//
// How the services start and stop is each suite's own business:
// services/sagas runs them inside its test process, services/cmd/orderflow
// runs the real binary and kills it. Both find a process by name through
// Config.Base on every request, so a process started again on another
// port is found there. It is imported by tests only.
package stacktest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
)

// Contract checks an answer against the API's published contract;
// servetest.Contract is one. It returns every way the answer differs.
type Contract interface {
	CheckResponse(method, path string, status int, header map[string][]string, body []byte) []string
}

// Config describes a stack as its client sees it.
type Config struct {
	// Base returns the base URL ("http://127.0.0.1:41234") of the process
	// running under name ("orders", "sagas-a"), and false when none does.
	// It is called on every request and may be called from any goroutine.
	Base func(name string) (url string, ok bool)
	// Within bounds every wait of the client for something the stack does
	// within milliseconds when idle; a busy machine needs far more.
	Within time.Duration
	// Contract, when set, checks every answer; a difference is an error
	// of the test (or, for PlaceOrder, its error).
	Contract Contract
}

// Client sends requests to a stack's processes. It is safe for
// concurrent use.
type Client struct {
	cfg  Config
	http *http.Client
}

// New returns a client of the stack cfg describes.
func New(cfg Config) *Client {
	if cfg.Base == nil {
		panic("stacktest: Config.Base is nil")
	}
	if cfg.Within <= 0 {
		panic("stacktest: Config.Within must be positive")
	}
	// Bounded, so that a process that hangs fails the test rather than
	// stalling it until the test binary's own timeout.
	return &Client{cfg: cfg, http: &http.Client{Timeout: 30 * time.Second}}
}

// Response is an answer read in full.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// send sends a request to the process called name and reads the answer
// in full; header holds name/value pairs. It may run on any goroutine.
func (c *Client) send(name, method, path, body string, header ...string) (Response, error) {
	if len(header)%2 != 0 {
		return Response{}, fmt.Errorf("header %q: want name/value pairs", header)
	}
	base, ok := c.cfg.Base(name)
	if !ok {
		return Response{}, fmt.Errorf("%s %s: %s does not run", method, path, name)
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return Response{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.http.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s on %s: %w", method, path, name, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s on %s: %w", method, path, name, err)
	}
	return Response{Status: res.StatusCode, Header: res.Header, Body: b}, nil
}

// breaches lists every way res, the answer to method path, breaks the
// contract; none when the client has no contract.
func (c *Client) breaches(method, path string, res Response) []string {
	if c.cfg.Contract == nil {
		return nil
	}
	return c.cfg.Contract.CheckResponse(method, path, res.Status, res.Header, res.Body)
}

// Do sends a request to the process called name and returns the answer,
// whatever its status; header holds name/value pairs. A non-empty body is
// sent as application/json. Each way the answer breaks the contract is
// an error of the test.
func (c *Client) Do(t testing.TB, name, method, path, body string, header ...string) Response {
	t.Helper()
	res, err := c.send(name, method, path, body, header...)
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range c.breaches(method, path, res) {
		t.Errorf("contract: %s %s: %s", method, path, msg)
	}
	return res
}

// GetJSON sends GET path to name and decodes a 200 answer into v (unless
// v is nil); it returns the status.
func (c *Client) GetJSON(t testing.TB, name, path string, v any) int {
	t.Helper()
	res := c.Do(t, name, http.MethodGet, path, "")
	if res.Status == http.StatusOK && v != nil {
		if err := json.Unmarshal(res.Body, v); err != nil {
			t.Fatalf("GET %s on %s: decode %s: %v", path, name, res.Body, err)
		}
	}
	return res.Status
}

// Post sends POST path with body to name, fails the test unless the
// answer has status want, and decodes it into v unless v is nil.
func (c *Client) Post(t testing.TB, name, path, body string, want int, v any) Response {
	t.Helper()
	res := c.Do(t, name, http.MethodPost, path, body)
	if res.Status != want {
		t.Fatalf("POST %s on %s: %d %s, want %d", path, name, res.Status, res.Body, want)
	}
	if v != nil {
		if err := json.Unmarshal(res.Body, v); err != nil {
			t.Fatalf("POST %s on %s: decode %s: %v", path, name, res.Body, err)
		}
	}
	return res
}

// List reads every page of the list at path (with or without a query)
// from name, 500 items a page, following the next cursors.
func List[T any](t testing.TB, c *Client, name, path string) []T {
	t.Helper()
	sep := "&"
	if !strings.Contains(path, "?") {
		sep = "?"
	}
	var items []T
	after := ""
	for {
		var page struct {
			Items []T    `json:"items"`
			Next  string `json:"next"`
		}
		p := path + sep + "limit=500"
		if after != "" {
			p += "&after=" + url.QueryEscape(after)
		}
		if code := c.GetJSON(t, name, p, &page); code != http.StatusOK {
			t.Fatalf("GET %s on %s: %d", p, name, code)
		}
		items = append(items, page.Items...)
		if page.Next == "" {
			return items
		}
		after = page.Next
	}
}

// Metric returns the value of an unlabelled metric of name's /metrics.
func (c *Client) Metric(t testing.TB, name, metric string) float64 {
	t.Helper()
	res := c.Do(t, name, http.MethodGet, "/metrics", "")
	if res.Status != http.StatusOK {
		t.Fatalf("GET /metrics on %s: %d", name, res.Status)
	}
	for _, line := range strings.Split(string(res.Body), "\n") {
		if v, ok := strings.CutPrefix(line, metric+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: metric %q", name, line)
			}
			return f
		}
	}
	t.Fatalf("%s has no metric %s", name, metric)
	return 0
}

// Line is one line of an order: quantity units of sku.
type Line struct {
	SKU      string
	Quantity int
}

// Placed is an order placed through POST /api/orders.
type Placed struct {
	OrderID string
	SagaID  string
	Country string
	Lines   []Line
}

// PlaceOrder places an order of lines for customer, shipped to country,
// through the process called "orders"; it may run on any goroutine. The
// answer must be 202 with the new order pending and the saga id derived
// from the order id.
func (c *Client) PlaceOrder(customer, country string, lines ...Line) (Placed, error) {
	items := make([]string, len(lines))
	for i, l := range lines {
		items[i] = fmt.Sprintf(`{"sku": %q, "quantity": %d, "unit_price_cents": 1299}`, l.SKU, l.Quantity)
	}
	body := fmt.Sprintf(`{"customer_id": %q, "items": [%s], "shipping_address": {"name": "Ada L.", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": %q}}`,
		customer, strings.Join(items, ", "), country)
	res, err := c.send("orders", http.MethodPost, "/api/orders", body)
	if err != nil {
		return Placed{}, err
	}
	if msgs := c.breaches(http.MethodPost, "/api/orders", res); len(msgs) > 0 {
		return Placed{}, fmt.Errorf("contract: POST /api/orders: %v", msgs)
	}
	if res.Status != http.StatusAccepted {
		return Placed{}, fmt.Errorf("POST /api/orders: %d %s", res.Status, res.Body)
	}
	var pl struct {
		OrderID string `json:"order_id"`
		SagaID  string `json:"saga_id"`
		Status  string `json:"status"`
	}
	if err := json.Unmarshal(res.Body, &pl); err != nil || pl.OrderID == "" || pl.SagaID != sagas.SagaID(pl.OrderID) || pl.Status != "pending" {
		return Placed{}, fmt.Errorf("POST /api/orders: %s (%v)", res.Body, err)
	}
	return Placed{OrderID: pl.OrderID, SagaID: pl.SagaID, Country: country, Lines: lines}, nil
}

// MustPlaceOrder is PlaceOrder that fails the test on an error.
func (c *Client) MustPlaceOrder(t testing.TB, customer, country string, lines ...Line) Placed {
	t.Helper()
	p, err := c.PlaceOrder(customer, country, lines...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Restock adds quantity units to sku.
func (c *Client) Restock(t testing.TB, sku string, quantity int) {
	t.Helper()
	c.Post(t, "inventory", "/api/inventory/"+sku+"/restock", fmt.Sprintf(`{"quantity": %d}`, quantity), http.StatusAccepted, nil)
}

// StockUp restocks each sku with its quantity (of a sku not stocked
// before) and waits until the inventory's read model shows it.
func (c *Client) StockUp(t testing.TB, stock map[string]int) {
	t.Helper()
	for sku, n := range stock {
		c.Restock(t, sku, n)
	}
	for sku, n := range stock {
		c.WaitStock(t, sku, Stock{OnHand: int64(n), Available: int64(n)})
	}
}

// Stock is GET /api/inventory/{sku}, the part the tests compare.
type Stock struct {
	OnHand    int64 `json:"on_hand"`
	Reserved  int64 `json:"reserved"`
	Available int64 `json:"available"`
}

// WaitStock waits until sku's stock is want.
func (c *Client) WaitStock(t testing.TB, sku string, want Stock) {
	t.Helper()
	coordinatortest.Eventually(t, c.cfg.Within, "stock of "+sku, func() (bool, string) {
		var got Stock
		code := c.GetJSON(t, "inventory", "/api/inventory/"+sku, &got)
		return code == http.StatusOK && got == want, fmt.Sprintf("%d %+v, want %+v", code, got, want)
	})
}

// Order is GET /api/orders/{id}, and an item of GET /api/orders.
type Order struct {
	OrderID    string `json:"order_id"`
	Status     string `json:"status"`
	Reason     string `json:"reason"`
	SagaID     string `json:"saga_id"`
	ShipmentID string `json:"shipment_id"`
}

// WaitOrder waits until the order has status and reason ("" for none)
// and returns it.
func (c *Client) WaitOrder(t testing.TB, orderID, status, reason string) Order {
	t.Helper()
	var got Order
	coordinatortest.Eventually(t, c.cfg.Within, "order "+orderID, func() (bool, string) {
		got = Order{}
		code := c.GetJSON(t, "orders", "/api/orders/"+orderID, &got)
		return code == http.StatusOK && got.Status == status && got.Reason == reason,
			fmt.Sprintf("%d %s %q, want %s %q", code, got.Status, got.Reason, status, reason)
	})
	return got
}

// Shipment is an item of GET /api/shipments, and GET /api/shipments/{id}.
type Shipment struct {
	ShipmentID string `json:"shipment_id"`
	OrderID    string `json:"order_id"`
	Status     string `json:"status"`
}

// Saga is GET /api/sagas/{id}, and an item of GET /api/sagas (which has
// no history).
type Saga struct {
	SagaID            string  `json:"saga_id"`
	Type              string  `json:"type"`
	DefinitionVersion int     `json:"definition_version"`
	OrderID           string  `json:"order_id"`
	Status            string  `json:"status"`
	CurrentStep       string  `json:"current_step"`
	Steps             []Step  `json:"steps"`
	History           []Entry `json:"history"`
	StartedAt         string  `json:"started_at"`
	EndedAt           string  `json:"ended_at"`
}

// Step is a step of a Saga.
type Step struct {
	Name                 string `json:"name"`
	Status               string `json:"status"`
	Attempts             int    `json:"attempts"`
	StartedAt            string `json:"started_at"`
	EndedAt              string `json:"ended_at"`
	Error                string `json:"error"`
	CompensationAttempts int    `json:"compensation_attempts"`
}

// Entry is an entry of a Saga's history.
type Entry struct {
	At     string         `json:"at"`
	Event  string         `json:"event"`
	Detail map[string]any `json:"detail"`
}

// StepStatuses lists the saga's steps as "name:status", space separated.
func (v Saga) StepStatuses() string {
	out := make([]string, len(v.Steps))
	for i, st := range v.Steps {
		out[i] = st.Name + ":" + st.Status
	}
	return strings.Join(out, " ")
}

// Events lists the history's event names.
func (v Saga) Events() []string {
	out := make([]string, len(v.History))
	for i, h := range v.History {
		out[i] = h.Event
	}
	return out
}

// Has reports whether the history holds an entry of event whose detail
// has every given key/value pair (values compared as fmt.Sprint prints
// them).
func (v Saga) Has(event string, detail ...any) bool {
next:
	for _, h := range v.History {
		if h.Event != event {
			continue
		}
		for i := 0; i+1 < len(detail); i += 2 {
			if fmt.Sprint(h.Detail[detail[i].(string)]) != fmt.Sprint(detail[i+1]) {
				continue next
			}
		}
		return true
	}
	return false
}

// WaitSaga asks the coordinator process called name until the saga has
// status, and returns it.
func (c *Client) WaitSaga(t testing.TB, name, sagaID, status string) Saga {
	t.Helper()
	var got Saga
	coordinatortest.Eventually(t, c.cfg.Within, "saga "+sagaID, func() (bool, string) {
		got = Saga{}
		code := c.GetJSON(t, name, "/api/sagas/"+sagaID, &got)
		return code == http.StatusOK && got.Status == status, fmt.Sprintf("%d status %q current %q, want %s", code, got.Status, got.CurrentStep, status)
	})
	return got
}

// WaitSagaAt waits, as WaitSaga, until the saga has status with current
// step step. Waiting for both keeps a test on its path on a slow machine:
// an action of a running service that misses its deadlines parks the
// saga early, and its late answer resumes it.
func (c *Client) WaitSagaAt(t testing.TB, name, sagaID, status, step string) Saga {
	t.Helper()
	var got Saga
	coordinatortest.Eventually(t, c.cfg.Within, "saga "+sagaID, func() (bool, string) {
		got = Saga{}
		code := c.GetJSON(t, name, "/api/sagas/"+sagaID, &got)
		return code == http.StatusOK && got.Status == status && got.CurrentStep == step,
			fmt.Sprintf("%d %s at %q, want %s at %q", code, got.Status, got.CurrentStep, status, step)
	})
	return got
}

// ConsumerState returns how many messages the durable consumer of stream
// has not yet delivered, and how many it delivered and has not had
// acknowledged.
func ConsumerState(t testing.TB, js jetstream.JetStream, stream, durable string) (pending, unacked uint64) {
	t.Helper()
	pending, unacked, err := consumerState(js, stream, durable)
	if err != nil {
		t.Fatal(err)
	}
	return pending, unacked
}

func consumerState(js jetstream.JetStream, stream, durable string) (pending, unacked uint64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, stream, durable)
	if err != nil {
		return 0, 0, fmt.Errorf("consumer %s of %s: %w", durable, stream, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("consumer %s of %s: %w", durable, stream, err)
	}
	return info.NumPending, uint64(info.NumAckPending), nil
}

// WaitDrained waits until the durable consumer of stream has delivered
// every message and had every delivery acknowledged (what was delivered
// to a process that died comes back after the consumer's AckWait). A
// consumer not found yet counts as not drained.
func WaitDrained(t testing.TB, js jetstream.JetStream, stream, durable string, within time.Duration) {
	t.Helper()
	coordinatortest.Eventually(t, within, fmt.Sprintf("consumer %s of %s drained", durable, stream), func() (bool, string) {
		pending, unacked, err := consumerState(js, stream, durable)
		if err != nil {
			return false, err.Error()
		}
		return pending == 0 && unacked == 0, fmt.Sprintf("%d pending, %d unacknowledged", pending, unacked)
	})
}
