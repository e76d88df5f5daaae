package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orderflow/orderflow/internal/backoff"
	"github.com/orderflow/orderflow/services/gateway/auth"
)

// The gateway phase measures what the front door costs a client placing
// orders: orders accepted per second through the gateway against straight
// to the orders service, on the saga phase's stack, in interleaved rounds
// of the two legs, each leg starting once the sagas of the orders before
// it have finished (ADR 0134).

const (
	// gatewayTarget is the share of the direct rate the gateway should
	// keep.
	gatewayTarget = 0.8
	// benchRateLimit and benchRateBurst are the per-subject rate limit
	// of the gateway of a stack the benchmark starts: far above what a
	// run sends, so that the phase measures the gateway, not its limiter
	// (50/s, burst 100, by default).
	benchRateLimit = 1_000_000_000
	benchRateBurst = 1_000_000
	// gatewayDrainTimeout bounds the wait, before each leg, for the sagas
	// of the orders placed before it.
	gatewayDrainTimeout = 3 * time.Minute
	// gatewayTokenTTL is the lifetime of the clients' tokens, longer than
	// any run.
	gatewayTokenTTL = 24 * time.Hour
)

// The gateway phase's figures.
const (
	gatewayDirectFigure = "gateway_direct_orders_per_s"
	gatewayViaFigure    = "gateway_orders_per_s"
	gatewayRatioFigure  = "gateway_overhead_ratio"
	gatewayErrorsFigure = "gateway_post_errors"
)

// gatewayEnvKeys are the variables of the caller's environment that the
// dev stack the benchmark starts does not inherit: gatewayEnv sets the
// ones that matter, and a JWKS URL or secret file would override them.
var gatewayEnvKeys = []string{auth.SecretEnv + "=", "ORDERFLOW_JWT_SECRET_FILE=", "JWKS_URL=", "RATE_LIMIT=", "RATE_BURST="}

// gatewayEnv is what the benchmark adds to the environment of the dev
// stack it starts: the secret its gateway verifies tokens with (the dev
// command signs its banner's tokens with it too), and a rate limit the
// benchmark does not reach.
func gatewayEnv(secret []byte) []string {
	return []string{
		auth.SecretEnv + "=" + string(secret),
		"RATE_LIMIT=" + strconv.Itoa(benchRateLimit),
		"RATE_BURST=" + strconv.Itoa(benchRateBurst),
	}
}

// newStackSecret returns a fresh HS256 secret for one stack: 32 random
// bytes as base64url text, the form of the dev secret file. A secret of
// the run's own keeps the user's dev secret file out of it.
func newStackSecret() ([]byte, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("the stack's token secret: %w", err)
	}
	return []byte(base64.RawURLEncoding.EncodeToString(raw)), nil
}

// benchCustomer is the customer id of client c, in every phase.
func benchCustomer(c int) string { return fmt.Sprintf("bench-%d", c) }

// orderBody is a single-item order of one unit of sku for customer.
func orderBody(customer, sku string) string {
	return fmt.Sprintf(`{"customer_id":%q,"items":[{"sku":%q,"quantity":1,"unit_price_cents":1299}],`+
		`"shipping_address":{"name":"Bench Client","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}`, customer, sku)
}

// overheadRatio is the rate through the gateway as a share of the rate
// straight to the service; 0 when there is no direct rate to compare with.
func overheadRatio(direct, via float64) float64 {
	if direct <= 0 {
		return 0
	}
	return via / direct
}

// gatewayLegTarget is where one leg sends its orders.
type gatewayLegTarget struct {
	name string // for the progress lines
	url  string // base URL
	// tokens[c] is client c's bearer token; nil straight to the service,
	// which checks none.
	tokens []string
}

// legResult is what one leg measured.
type legResult struct {
	rate     float64 // orders accepted per second in the window
	accepted int64   // in the window
	refused  int64   // answers other than 202 that a client retries
	// lastOrder is the order whose 202 came last, to wait for.
	lastOrder string
	// cpu is the machine's CPU use in the window by process; empty
	// without /proc.
	cpu string
}

// gateway runs the gateway phase on the stack s talks to.
func (r *runner) gateway(ctx context.Context, s *sagaClient) error {
	st := s.st
	if st.gateway == "" {
		return errors.New("gateway: the dev stack's banner names no gateway URL")
	}
	secret := st.secret
	if secret == nil {
		// A stack someone else started: its gateway verifies with the
		// dev secret, as the tokens `orderflow token` prints.
		var err error
		if secret, err = auth.DevSecret(); err != nil {
			return fmt.Errorf("gateway: the running stack's token secret: %w", err)
		}
	}
	clients := r.cfg.GatewayClients
	tokens := make([]string, clients)
	for c := range tokens {
		var err error
		tokens[c], err = auth.Sign(secret, auth.Principal{Subject: benchCustomer(c), Role: auth.RoleCustomer}, gatewayTokenTTL)
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}
	direct := gatewayLegTarget{name: "straight to the orders service", url: s.orders}
	via := gatewayLegTarget{name: "through the gateway", url: st.gateway, tokens: tokens}

	d, warm := r.cfg.GatewayDuration, sagaWarmup(r.cfg.GatewayDuration)
	rounds := fmt.Sprintf("%d rounds", r.cfg.GatewayRounds)
	if r.cfg.GatewayRounds == 1 {
		rounds = "1 round"
	}
	fmt.Fprintf(r.w, "  gateway: %d clients, each a customer with its own token, placing single-item orders one after the other (POST /api/orders, 202 counted); %s of %s (+%s warm-up) per leg, legs alternating, each after the sagas of the orders before it have finished\n",
		clients, rounds, d, warm)
	if st.rateLimited {
		fmt.Fprintf(r.w, "  gateway: the stack's gateway runs with RATE_LIMIT=%d RATE_BURST=%d per subject (50/s, burst 100 by default), so that its limiter does not set the pace\n",
			benchRateLimit, benchRateBurst)
	} else {
		fmt.Fprintf(r.w, "  gateway: the running stack's gateway keeps its own rate limit; unless it was started with RATE_LIMIT=%d RATE_BURST=%d, 429s below measure its limiter\n",
			benchRateLimit, benchRateBurst)
	}
	// lastOrder is the last order placed; each leg waits until it and
	// every order before it have left pending.
	var lastOrder string
	if r.cfg.SagaClients <= 0 {
		// Without the saga phase before it, the stack is fresh: a leg
		// each way opens the connections, then the tables get their
		// statistics (as the saga peak's warm-up does, see analyze).
		fmt.Fprintf(r.w, "  gateway: warm-up, %s each way, then ANALYZE ...\n", warm)
		for _, t := range []gatewayLegTarget{direct, via} {
			res, err := r.gatewayLeg(ctx, s, t, 0, warm)
			if err != nil {
				return fmt.Errorf("gateway warm-up: %w", err)
			}
			lastOrder = res.lastOrder
		}
		if err := st.analyze(ctx); err != nil {
			return fmt.Errorf("gateway warm-up: %w", err)
		}
	}

	for round := 1; round <= r.cfg.GatewayRounds; round++ {
		// Alternating which leg goes first keeps a drift over the run
		// (tables growing, another user's load) from always favouring
		// the same one.
		legs := []gatewayLegTarget{direct, via}
		if round%2 == 0 {
			legs[0], legs[1] = legs[1], legs[0]
		}
		got := make(map[string]legResult, 2)
		for i, t := range legs {
			if err := r.gatewayDrain(ctx, s, lastOrder); err != nil {
				return fmt.Errorf("gateway: %w", err)
			}
			fmt.Fprintf(r.w, "  round %d/%d [%d/2] %s, %d clients ...", round, r.cfg.GatewayRounds, i+1, t.name, clients)
			res, err := r.gatewayLeg(ctx, s, t, warm, d)
			if err != nil {
				fmt.Fprintln(r.w)
				return fmt.Errorf("gateway: %w", err)
			}
			fmt.Fprintf(r.w, " %.0f orders/s (%d accepted in %s), %d answered other than 202\n", res.rate, res.accepted, d, res.refused)
			if res.cpu != "" {
				fmt.Fprintf(r.w, "    CPU per order: %s\n", res.cpu)
			}
			got[t.name] = res
			lastOrder = res.lastOrder
		}
		dr, vr := got[direct.name], got[via.name]
		if dr.accepted == 0 {
			return fmt.Errorf("gateway: round %d: no order accepted straight to the orders service", round)
		}
		ratio := overheadRatio(dr.rate, vr.rate)
		r.add(gatewayDirectFigure, dr.rate, "orders/s")
		r.add(gatewayViaFigure, vr.rate, "orders/s")
		r.add(gatewayRatioFigure, ratio, "x")
		r.add(gatewayErrorsFigure, float64(dr.refused+vr.refused), "count")
		fmt.Fprintf(r.w, "  round %d: gateway/direct %.3fx\n", round, ratio)
	}
	return nil
}

// gatewayLeg runs the clients against t for warm plus d and returns the
// orders accepted in the last d. Each client places a single-item order
// of a random sku as its own customer and, once answered, the next. A
// 503, 409 or 429 is counted and retried after 50 ms, as a client would;
// any other answer but 202 ends the phase.
func (r *runner) gatewayLeg(ctx context.Context, s *sagaClient, t gatewayLegTarget, warm, d time.Duration) (legResult, error) {
	begin := time.Now()
	from, to := begin.Add(warm), begin.Add(warm+d)
	cpu := sampleCPUAt(ctx, s.stackPID, from, to)
	var (
		accepted, refused atomic.Int64
		mu                sync.Mutex
		firstErr          error
		wg                sync.WaitGroup
		// lastBody is the 202's body that came last, at lastAt; it is
		// decoded once, after the leg, to keep the clients' work per
		// order that of a client that does not look at the answer.
		lastBody []byte
		lastAt   time.Time
	)
	for c := range r.cfg.GatewayClients {
		token := ""
		if t.tokens != nil {
			token = t.tokens[c]
		}
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(c), 2))
			var mine []byte
			var mineAt time.Time
			defer func() {
				mu.Lock()
				if mineAt.After(lastAt) {
					lastBody, lastAt = mine, mineAt
				}
				mu.Unlock()
			}()
			for ctx.Err() == nil && time.Now().Before(to) {
				sku := s.skus[rng.IntN(len(s.skus))]
				code, body, err := s.post(ctx, t.url+"/api/orders", token, orderBody(benchCustomer(c), sku))
				at := time.Now()
				if err == nil && code != http.StatusAccepted && !retryable(code) {
					err = fmt.Errorf("POST /api/orders: %d %s", code, body)
				}
				if err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						firstErr = errors.Join(firstErr, fmt.Errorf("%s: %w", t.name, err))
						mu.Unlock()
					}
					return
				}
				if code != http.StatusAccepted {
					refused.Add(1)
					if backoff.Sleep(ctx, 50*time.Millisecond) != nil {
						return
					}
					continue
				}
				mine, mineAt = body, at
				if !at.Before(from) && !at.After(to) {
					accepted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return legResult{}, firstErr
	}
	if err := ctx.Err(); err != nil {
		return legResult{}, err
	}
	res := legResult{accepted: accepted.Load(), refused: refused.Load()}
	if d > 0 {
		res.rate = float64(res.accepted) / d.Seconds()
	}
	if samples, ok := <-cpu; ok {
		res.cpu = cpuPerOrder(samples[0], samples[1], res.accepted)
	}
	if lastBody != nil {
		var placed struct {
			OrderID string `json:"order_id"`
		}
		if err := json.Unmarshal(lastBody, &placed); err != nil || placed.OrderID == "" {
			return legResult{}, fmt.Errorf("%s: POST /api/orders: answer %q has no order_id", t.name, lastBody)
		}
		res.lastOrder = placed.OrderID
	}
	return res, nil
}

// cpuPerOrder says in one line the CPU time per order accepted of each
// group of processes between a and b that used a twentieth of a core or
// more, largest first, then how many cores the rest of the machine used:
// where a leg's time went, and how quiet the machine was meanwhile.
func cpuPerOrder(a, b cpuSample, orders int64) string {
	secs := b.at.Sub(a.at).Seconds()
	if secs <= 0 || orders <= 0 || len(a.procs) == 0 {
		return ""
	}
	type group struct {
		name  string
		ticks uint64
	}
	var groups []group
	var total uint64
	other := 0.0
	for name, t := range used(a, b) {
		if name == otherGroup {
			other = float64(t) / clockTicks / secs
			continue
		}
		total += t
		if float64(t)/clockTicks/secs >= 0.05 {
			groups = append(groups, group{name, t})
		}
	}
	slices.SortFunc(groups, func(x, y group) int { return cmp.Compare(y.ticks, x.ticks) })
	per := func(t uint64) string { return fmt.Sprintf("%.0f µs", float64(t)/clockTicks/float64(orders)*1e6) }
	parts := []string{"all of the stack and the client " + per(total)}
	for _, g := range groups {
		name := strings.TrimPrefix(g.name, "service ")
		name = strings.Replace(name, "PostgreSQL backends, database orderflow_", "PostgreSQL ", 1)
		parts = append(parts, name+" "+per(g.ticks))
	}
	return fmt.Sprintf("%s; other processes on the machine %.2f cores", strings.Join(parts, ", "), other)
}

// retryable reports whether a client retries a POST answered code after a
// pause: contention, a dependency down, a rate limit.
func retryable(code int) bool {
	return code == http.StatusServiceUnavailable || code == http.StatusConflict || code == http.StatusTooManyRequests
}

// gatewayDrain waits until the orders placed so far are done with, so
// that a leg does not pay for the sagas of the orders the leg before it
// placed: until lastOrder (if any) has left pending in the orders read
// model, no order there is pending and no saga is running or
// compensating. The first says that the read model has caught up with the
// orders placed (a saga the coordinator has not yet started is in none of
// the lists); the second that each of them was decided; the third that
// the sagas' last steps are done. After gatewayDrainTimeout it says what
// is left and lets the leg run: the alternating order spreads what that
// costs over both legs.
func (r *runner) gatewayDrain(ctx context.Context, s *sagaClient, lastOrder string) error {
	start := time.Now()
	for {
		left, err := s.undecided(ctx, lastOrder)
		if err != nil {
			return err
		}
		if left == "" {
			break
		}
		if time.Since(start) > gatewayDrainTimeout {
			fmt.Fprintf(r.w, "  %s after %s; measuring anyway\n", left, gatewayDrainTimeout)
			return nil
		}
		if err := backoff.Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	if waited := time.Since(start); waited >= 500*time.Millisecond {
		fmt.Fprintf(r.w, "  the sagas of the orders before finished in %s\n", waited.Round(100*time.Millisecond))
	}
	return nil
}

// undecided says what of the orders placed up to lastOrder is still in
// progress, or "" when nothing is.
func (s *sagaClient) undecided(ctx context.Context, lastOrder string) (string, error) {
	if lastOrder != "" {
		code, body, err := s.do(ctx, http.MethodGet, s.orders+"/api/orders/"+lastOrder, "")
		if err != nil {
			return "", fmt.Errorf("read order %s: %w", lastOrder, err)
		}
		var o listedOrder
		switch {
		case code == http.StatusNotFound:
			return "the last order placed is not yet in the orders read model", nil
		case code != http.StatusOK:
			return "", fmt.Errorf("read order %s: %d %s", lastOrder, code, body)
		case json.Unmarshal(body, &o) != nil:
			return "", fmt.Errorf("read order %s: %q is no order", lastOrder, body)
		case o.Status == "pending":
			return "the last order placed is pending", nil
		}
	}
	code, body, err := s.do(ctx, http.MethodGet, s.orders+"/api/orders?status=pending&limit=1", "")
	if err != nil {
		return "", fmt.Errorf("list pending orders: %w", err)
	}
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &list) != nil {
		return "", fmt.Errorf("list pending orders: %d %s", code, body)
	}
	if len(list.Items) > 0 {
		return "orders pending", nil
	}
	busy, err := s.busySagas(ctx)
	if err != nil {
		return "", err
	}
	if busy > 0 {
		return "sagas running", nil
	}
	return "", nil
}

// busySagas counts the sagas running or compensating, up to one of each.
func (s *sagaClient) busySagas(ctx context.Context) (int, error) {
	busy := 0
	for _, status := range []string{"running", "compensating"} {
		n, err := s.countSagas(ctx, status, 1)
		if err != nil {
			return 0, err
		}
		busy += n
	}
	return busy, nil
}

// post sends one POST with a JSON body, with token as its bearer token
// unless empty, and returns the status and body.
func (s *sagaClient) post(ctx context.Context, u, token, body string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// gatewayRows adds the gateway phase's rows to the report's table. The
// ratio is the median of the rounds' ratios, each of two legs run back to
// back, not the ratio of the medians: a round's legs share the machine's
// mood of the moment.
func (r *runner) gatewayRows(row func(name string, v float64, unit string, ref float64, target string, ok bool)) {
	via, direct, ratio := r.get(gatewayViaFigure), r.get(gatewayDirectFigure), r.get(gatewayRatioFigure)
	verdict := " (met)"
	if ratio < gatewayTarget {
		verdict = " (NOT met)"
	}
	fmt.Fprintf(r.w, "%-44s %10.1f %-3s %12s %10s %s%s\n", fmt.Sprintf("orders through the gateway, %d clients", r.cfg.GatewayClients),
		via, "o/s", fmt.Sprintf("%.0f", direct), fmt.Sprintf("%.3fx", ratio), fmt.Sprintf(">= %.1fx direct", gatewayTarget), verdict)
	row("  straight to the orders service", direct, "o/s", 0, "-", true)
	pe := r.get(gatewayErrorsFigure)
	row("  POSTs answered other than 202", pe, "", 0, "0", pe == 0)
}
