package bench

import (
	"bytes"
	"context"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/services/gateway/auth"
)

// devBanner is the dev command's banner as it prints it (tokens cut
// short), from its ready line to the line its examples start with.
const devBanner = `
orderflow dev stack is ready (4.2s)

  gateway    http://127.0.0.1:12080   the API: every request goes here, with a token

  Tokens the gateway accepts (HS256, valid 12 hours; bin/orderflow token --role admin,
  or --role customer --sub c-42, prints fresh ones). Paste both:
    export ADMIN_TOKEN=eyJhbGciOiJIUzI1NiJ9.a.b
    export TOKEN=eyJhbGciOiJIUzI1NiJ9.c.d

  ADMIN_TOKEN may do everything; TOKEN is customer c-42: its own orders and
  shipments, and the inventory.

  The services' own ports are for debugging (no tokens checked there):
  orders     http://127.0.0.1:12081
  inventory  http://127.0.0.1:12082
  shipping   http://127.0.0.1:12083
  sagas      http://127.0.0.1:12084
  NATS       nats://127.0.0.1:40123
  projection bin/orderflow projections status --database-url ...
  PostgreSQL postgres://postgres@127.0.0.1:40124/postgres?sslmode=disable
  data       /tmp/orderflow-dev-1 (removed at Ctrl-C; kept if the stack fails)

Try, through the gateway (after the two exports above):
`

func TestParseBanner(t *testing.T) {
	tests := []struct {
		name    string
		banner  string
		want    bannerURLs
		wantErr bool
	}{
		{
			name:   "the banner with the gateway",
			banner: devBanner,
			want: bannerURLs{orders: "http://127.0.0.1:12081", inventory: "http://127.0.0.1:12082", sagas: "http://127.0.0.1:12084",
				ordersAll: []string{"http://127.0.0.1:12081"},
				gateway:   "http://127.0.0.1:12080", postgres: "postgres://postgres@127.0.0.1:40124/postgres?sslmode=disable"},
		},
		{
			name:   "a gateway over HTTPS",
			banner: strings.Replace(devBanner, "http://127.0.0.1:12080", "https://localhost:12080", 1),
			want: bannerURLs{orders: "http://127.0.0.1:12081", inventory: "http://127.0.0.1:12082", sagas: "http://127.0.0.1:12084",
				ordersAll: []string{"http://127.0.0.1:12081"},
				gateway:   "https://localhost:12080", postgres: "postgres://postgres@127.0.0.1:40124/postgres?sslmode=disable"},
		},
		{
			name:   "a banner without a gateway line",
			banner: regexp.MustCompile(`(?m)^  gateway .*\n`).ReplaceAllString(devBanner, ""),
			want: bannerURLs{orders: "http://127.0.0.1:12081", inventory: "http://127.0.0.1:12082", sagas: "http://127.0.0.1:12084",
				ordersAll: []string{"http://127.0.0.1:12081"},
				postgres:  "postgres://postgres@127.0.0.1:40124/postgres?sslmode=disable"},
		},
		{
			// Every replica has its line; each service's first one
			// stands for it, and the orders are spread over both.
			name: "a cluster's banner",
			banner: strings.Replace(devBanner, `  orders     http://127.0.0.1:12081
  inventory  http://127.0.0.1:12082
  shipping   http://127.0.0.1:12083
  sagas      http://127.0.0.1:12084
  NATS       nats://127.0.0.1:40123
`, `  orders-1    http://127.0.0.1:12081
  orders-2    http://127.0.0.1:12091
  inventory-1 http://127.0.0.1:12082
  inventory-2 http://127.0.0.1:12092
  shipping-1  http://127.0.0.1:12083
  shipping-2  http://127.0.0.1:12093
  sagas-1     http://127.0.0.1:12084
  sagas-2     http://127.0.0.1:12094
  nats-1      nats://127.0.0.1:40125
  nats-2      nats://127.0.0.1:40126
  nats-3      nats://127.0.0.1:40127
  NATS        nats://127.0.0.1:40125,nats://127.0.0.1:40126,nats://127.0.0.1:40127
`, 1),
			want: bannerURLs{orders: "http://127.0.0.1:12081", inventory: "http://127.0.0.1:12082", sagas: "http://127.0.0.1:12084",
				ordersAll: []string{"http://127.0.0.1:12081", "http://127.0.0.1:12091"},
				gateway:   "http://127.0.0.1:12080", postgres: "postgres://postgres@127.0.0.1:40124/postgres?sslmode=disable"},
		},
		{
			name:    "no orders URL",
			banner:  strings.Replace(devBanner, "  orders     http://127.0.0.1:12081\n", "", 1),
			wantErr: true,
		},
		{
			name:    "no PostgreSQL URL",
			banner:  regexp.MustCompile(`(?m)^  PostgreSQL .*\n`).ReplaceAllString(devBanner, ""),
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseBanner(tt.banner)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseBanner = %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseBanner: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseBanner =\n %+v, want\n %+v", got, tt.want)
			}
		})
	}
}

// TestStackLogReady checks that the stack counts as ready at the line
// that starts the banner's examples, whatever follows "Try", and only
// after the ready line.
func TestStackLogReady(t *testing.T) {
	tests := []struct {
		name      string
		text      string
		wantReady bool
	}{
		{"the banner of the gateway's stack", "starting NATS...\n" + devBanner + "  A=...\n", true},
		{"the banner before the gateway", "orderflow dev stack is ready (1.0s)\n  orders     http://127.0.0.1:1\nTry:\n  curl ...\n", true},
		{"no ready line", "Try: something else\n  orders     http://127.0.0.1:1\n", false},
		{"the banner cut before its examples", strings.TrimSuffix(devBanner, "Try, through the gateway (after the two exports above):\n"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newStackLog()
			// Written in pieces that split lines, as a pipe delivers them.
			for chunk := range slicesOf(tt.text, 7) {
				if _, err := l.Write([]byte(chunk)); err != nil {
					t.Fatal(err)
				}
			}
			ready := false
			select {
			case <-l.ready:
				ready = true
			default:
			}
			if ready != tt.wantReady {
				t.Fatalf("ready = %t, want %t", ready, tt.wantReady)
			}
			if !ready {
				return
			}
			banner := l.bannerString()
			if strings.Contains(banner, "curl") || strings.Contains(banner, "A=...") {
				t.Errorf("the banner goes past its Try line:\n%s", banner)
			}
			if _, err := parseBanner(banner + "  PostgreSQL postgres://x@h/db\n  inventory  http://i\n  sagas      http://s\n"); err != nil {
				t.Errorf("the banner kept: %v", err)
			}
		})
	}
}

// slicesOf yields s in pieces of n bytes.
func slicesOf(s string, n int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for len(s) > 0 {
			k := min(n, len(s))
			if !yield(s[:k]) {
				return
			}
			s = s[k:]
		}
	}
}

func TestOverheadRatio(t *testing.T) {
	tests := []struct {
		direct, via, want float64
	}{
		{1000, 900, 0.9},
		{1000, 1000, 1},
		{1000, 1200, 1.2}, // a noisy round may favour the gateway
		{1000, 0, 0},
		{0, 900, 0}, // nothing to compare with
		{-1, 900, 0},
	}
	for _, tt := range tests {
		if got := overheadRatio(tt.direct, tt.via); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("overheadRatio(%v, %v) = %v, want %v", tt.direct, tt.via, got, tt.want)
		}
	}
}

// TestGatewayReport checks the gateway rows and BENCH lines from given
// rounds: medians of the rates, the median of the rounds' ratios judged
// against the target, and the errors summed.
func TestGatewayReport(t *testing.T) {
	tests := []struct {
		name                string
		direct, via, errors []float64
		wantRatio           float64
		wantVerdict         string
		wantErrors          string
	}{
		{"met", []float64{1000, 1100, 900}, []float64{900, 1045, 700}, []float64{0, 0, 0}, 0.9, "(met)", "0"},
		// The median of the ratios (0.70, 0.75, 1.25) is 0.75; the
		// ratio of the medians (900/1000) would be met.
		{"not met", []float64{1000, 1200, 800}, []float64{700, 900, 1000}, []float64{0, 2, 1}, 0.75, "(NOT met)", "3"},
		{"exactly the target", []float64{1000}, []float64{800}, []float64{0}, 0.8, "(met)", "0"},
		// Just below the target reads as below it, not as 0.80.
		{"just below the target", []float64{1000}, []float64{798}, []float64{0}, 0.798, "(NOT met)", "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			cfg := Config{Rounds: -1, GatewayClients: 64}
			r := &runner{w: &out, cfg: cfg, vals: make(map[string][]float64)}
			for i := range tt.direct {
				r.add(gatewayDirectFigure, tt.direct[i], "orders/s")
				r.add(gatewayViaFigure, tt.via[i], "orders/s")
				r.add(gatewayRatioFigure, overheadRatio(tt.direct[i], tt.via[i]), "x")
				r.add(gatewayErrorsFigure, tt.errors[i], "count")
			}
			r.report()
			text := out.String()
			row := regexp.MustCompile(`(?m)^orders through the gateway, 64 clients +([0-9.]+) o/s +([0-9]+) +([0-9.]+)x >= 0\.8x direct (.*)$`).FindStringSubmatch(text)
			if row == nil {
				t.Fatalf("no gateway row:\n%s", text)
			}
			if row[4] != tt.wantVerdict {
				t.Errorf("verdict %q, want %q:\n%s", row[4], tt.wantVerdict, text)
			}
			ratio, _ := strconv.ParseFloat(row[3], 64)
			if math.Abs(ratio-tt.wantRatio) > 0.0005 {
				t.Errorf("ratio column %v, want %.3f", ratio, tt.wantRatio)
			}
			bench := regexp.MustCompile(`(?m)^BENCH gateway_overhead_ratio ([0-9.]+) x$`).FindStringSubmatch(text)
			if bench == nil || bench[1] != strconv.FormatFloat(tt.wantRatio, 'f', 3, 64) {
				t.Errorf("BENCH gateway_overhead_ratio line %q, want %.3f:\n%s", bench, tt.wantRatio, text)
			}
			for _, want := range []string{
				"\nBENCH gateway_direct_orders_per_s ",
				"\nBENCH gateway_orders_per_s ",
				"\nBENCH gateway_post_errors " + tt.wantErrors + "\n",
				"  straight to the orders service",
			} {
				if !strings.Contains(text, want) {
					t.Errorf("output lacks %q:\n%s", want, text)
				}
			}
			if pe := regexp.MustCompile(`(?m)^  POSTs answered other than 202 .* 0 \((NOT )?met\)$`).FindStringSubmatch(text); pe == nil {
				t.Errorf("no row for the POSTs answered other than 202:\n%s", text)
			} else if (pe[1] == "") != (tt.wantErrors == "0") {
				t.Errorf("POST errors row %q with %s errors", pe[0], tt.wantErrors)
			}
		})
	}
}

// TestGatewayEnv checks what the stack's gateway is given: a secret it
// takes and signs the clients' tokens with, and a rate limit the serve
// command parses, far above the default.
func TestGatewayEnv(t *testing.T) {
	secret, err := newStackSecret()
	if err != nil {
		t.Fatal(err)
	}
	other, err := newStackSecret()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(secret, other) {
		t.Errorf("two stacks got the same secret")
	}
	env := map[string]string{}
	for _, kv := range gatewayEnv(secret) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("%q is no KEY=value", kv)
		}
		env[k] = v
		covered := false
		for _, drop := range gatewayEnvKeys {
			covered = covered || drop == k+"="
		}
		if !covered {
			t.Errorf("%s is set but an inherited value is not removed", k)
		}
	}
	if limit, err := strconv.ParseFloat(env["RATE_LIMIT"], 64); err != nil || limit < 1e6 {
		t.Errorf("RATE_LIMIT=%q, want a number far above any run's rate", env["RATE_LIMIT"])
	}
	if burst, err := strconv.Atoi(env["RATE_BURST"]); err != nil || burst < 10_000 {
		t.Errorf("RATE_BURST=%q, want an integer far above the clients", env["RATE_BURST"])
	}
	v, err := auth.NewHS256([]byte(env[auth.SecretEnv]))
	if err != nil {
		t.Fatalf("the gateway would refuse the secret: %v", err)
	}
	token, err := auth.Sign(secret, auth.Principal{Subject: benchCustomer(7), Role: auth.RoleCustomer}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("the gateway would refuse a client's token: %v", err)
	}
	if p.Subject != "bench-7" || p.Role != auth.RoleCustomer {
		t.Errorf("token of %+v, want customer bench-7", p)
	}
	// The order a client places is its own, as the gateway requires of a
	// customer.
	if !strings.Contains(orderBody(benchCustomer(7), "SKU-1"), `"customer_id":"bench-7"`) {
		t.Errorf("order body %s is not customer bench-7's", orderBody(benchCustomer(7), "SKU-1"))
	}
}

// TestGatewayPhase runs the gateway phase alone, briefly, against a dev
// stack of separate processes: the skus are restocked without the saga
// phase, the clients' tokens pass the gateway (a refused one would end
// the phase), both legs are measured in each round, and the report has
// the gateway's rows and none of the sagas'.
func TestGatewayPhase(t *testing.T) {
	bin := orderflowBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	noDB := func(context.Context) (string, error) {
		t.Error("the gateway phase alone asked for a database")
		return "", context.Canceled
	}
	const rounds = 2
	figs, err := Run(ctx, &out, noDB, Config{
		Rounds: -1, ReplayEvents: -1, LagRate: -1, CommandCallers: -1,
		SagaBinary: bin, SagaClients: -1, SagaSKUs: 4,
		GatewayClients: 4, GatewayRounds: rounds, GatewayDuration: 500 * time.Millisecond,
		ClusterClients: -1,
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	text := out.String()
	t.Logf("output:\n%s", text)

	got := make(map[string]float64)
	for _, f := range figs {
		got[f.Name] = f.Value
	}
	want := []string{gatewayDirectFigure, gatewayViaFigure, gatewayRatioFigure, gatewayErrorsFigure}
	if len(figs) != len(want) {
		t.Errorf("%d figures, want %d: %v", len(figs), len(want), figs)
	}
	for _, name := range want {
		if _, ok := got[name]; !ok {
			t.Errorf("figure %s not measured", name)
		}
		if !regexp.MustCompile(`(?m)^BENCH ` + name + ` [0-9.]+`).MatchString(text) {
			t.Errorf("no BENCH line for %s", name)
		}
	}
	for _, name := range []string{gatewayDirectFigure, gatewayViaFigure, gatewayRatioFigure} {
		if got[name] <= 0 {
			t.Errorf("%s = %v, want > 0", name, got[name])
		}
	}
	if got[gatewayErrorsFigure] != 0 {
		t.Errorf("%s = %v, want 0 (the rate limit is raised for the benchmark)", gatewayErrorsFigure, got[gatewayErrorsFigure])
	}
	// Each round's ratio is that round's legs' rates, whose order
	// alternates.
	legs := regexp.MustCompile(`(?m)^  round (\d)/\d \[(\d)/2\] (straight to the orders service|through the gateway), 4 clients \.\.\. (\d+) orders/s`).FindAllStringSubmatch(text, -1)
	if len(legs) != 2*rounds {
		t.Fatalf("%d legs reported, want %d", len(legs), 2*rounds)
	}
	for i, round := range []struct{ first, second string }{
		{"straight to the orders service", "through the gateway"},
		{"through the gateway", "straight to the orders service"},
	} {
		if legs[2*i][3] != round.first || legs[2*i+1][3] != round.second {
			t.Errorf("round %d ran %q then %q, want %q then %q", i+1, legs[2*i][3], legs[2*i+1][3], round.first, round.second)
		}
	}
	ratios := regexp.MustCompile(`(?m)^  round \d: gateway/direct ([0-9.]+)x$`).FindAllStringSubmatch(text, -1)
	if len(ratios) != rounds {
		t.Errorf("%d round ratios reported, want %d", len(ratios), rounds)
	}
	for _, want := range []string{
		"RATE_LIMIT=1000000000 RATE_BURST=1000000",
		"warm-up",
		"orders through the gateway, 4 clients",
		"stack stopped in",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(text, "sagas completed end to end") || strings.Contains(text, "BENCH saga_") {
		t.Errorf("output has saga rows though the saga phase was skipped")
	}
}
