package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// scripted is a real HTTP server answering each POST with the next of its
// answers ("drop" closes the connection unanswered), recording the
// Idempotency-Key of each.
type scripted struct {
	mu      sync.Mutex
	answers []string
	keys    []string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.keys = append(s.keys, r.Header.Get("Idempotency-Key"))
	a := "202"
	if len(s.answers) > 0 {
		a, s.answers = s.answers[0], s.answers[1:]
	}
	s.mu.Unlock()
	switch a {
	case "drop":
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
	case "202":
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprint(w, `{"order_id": "o-1"}`)
	case "429", "503":
		w.Header().Set("Retry-After", "0")
		var code int
		fmt.Sscan(a, &code)
		w.WriteHeader(code)
	case "409-contention":
		w.WriteHeader(http.StatusConflict)
		fmt.Fprint(w, `{"type": "https://orderflow.dev/problems/version-conflict"}`)
	case "409-state":
		w.WriteHeader(http.StatusConflict)
		fmt.Fprint(w, `{"type": "https://orderflow.dev/problems/illegal-state"}`)
	default:
		var code int
		fmt.Sscan(a, &code)
		w.WriteHeader(code)
	}
}

func TestWriteRetriesUnderOneKeyUntilAFinalAnswer(t *testing.T) {
	tests := []struct {
		name       string
		answers    []string
		retry404   bool
		wantStatus int
		wantTries  int
	}{
		{"acknowledged at once", nil, false, 202, 1},
		{"through outages and limits", []string{"503", "drop", "429", "409-contention", "502"}, false, 202, 6},
		{"a 404 the read model may still lag on", []string{"404", "404"}, true, 202, 3},
		{"a 404 that is final", []string{"404"}, false, 404, 1},
		{"an illegal state is final", []string{"409-state"}, false, 409, 1},
		{"a bad request is final", []string{"400"}, false, 400, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &scripted{answers: tt.answers}
			srv := httptest.NewServer(s)
			t.Cleanup(srv.Close)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			a, retries, err := NewClient(srv.URL).Write(ctx, "tok", "/api/orders", `{}`, "key-1", tt.retry404)
			if err != nil {
				t.Fatal(err)
			}
			if a.Status != tt.wantStatus {
				t.Errorf("status %d, want %d", a.Status, tt.wantStatus)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			// net/http itself retries a request with an Idempotency-Key
			// once on a connection closed unanswered, so the server may see
			// one attempt more than Write counts.
			if len(s.keys) != tt.wantTries || retries > tt.wantTries-1 || retries < tt.wantTries-2 || (tt.wantTries > 1 && retries == 0) {
				t.Errorf("%d attempts (%d retries counted), want %d", len(s.keys), retries, tt.wantTries)
			}
			for _, k := range s.keys {
				if k != "key-1" {
					t.Errorf("attempt with key %q, want every one with key-1", k)
				}
			}
		})
	}
}

func TestWriteGivesUpWhenItsContextEnds(t *testing.T) {
	answers := make([]string, 1000)
	for i := range answers {
		answers[i] = "503"
	}
	srv := httptest.NewServer(&scripted{answers: answers})
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, _, err := NewClient(srv.URL).Write(ctx, "tok", "/api/orders", `{}`, "k", false)
	if !errors.Is(err, ErrNoFinalAnswer) {
		t.Fatalf("Write = %v, want ErrNoFinalAnswer", err)
	}
}

func TestPlanMixesEveryKindAndRepeatsWithItsSeed(t *testing.T) {
	cfg := LoadConfig{RunID: "r1", Orders: 2000, Customers: 40, Seed: 9}
	a, b := plan(cfg), plan(cfg)
	counts := map[Kind]int{}
	customers := map[string]bool{}
	_, scarce := cfg.SKUs()
	for i, p := range a {
		if fmt.Sprint(p) != fmt.Sprint(b[i]) {
			t.Fatalf("order %d differs between two plans of one seed: %v %v", i, p, b[i])
		}
		counts[p.kind]++
		customers[p.customer] = true
		over := false
		for _, l := range p.lines {
			if l.SKU == scarce {
				over = l.Quantity > scarceUnits
			}
		}
		if over != (p.kind == OverStock) {
			t.Fatalf("order %d (%s) asks the scarce sku beyond its stock: %v", i, p.kind, over)
		}
		if (p.country == "US") == (p.kind == Refused) {
			t.Fatalf("order %d (%s) ships to %s", i, p.kind, p.country)
		}
	}
	for _, k := range Kinds {
		if counts[k] < 100 {
			t.Errorf("%d %s orders of 2000, want a real share: %v", counts[k], k, counts)
		}
	}
	if len(customers) < 30 {
		t.Errorf("orders spread over %d customers, want most of 40", len(customers))
	}
	if c := plan(LoadConfig{RunID: "r1", Orders: 2000, Customers: 40, Seed: 10}); fmt.Sprint(c) == fmt.Sprint(a) {
		t.Error("two seeds drew the same plan")
	}
}

func TestSumMetric(t *testing.T) {
	text := `# HELP orderflow_saga_events_parked_total x
# TYPE orderflow_saga_events_parked_total counter
orderflow_saga_events_parked_total{reason="a"} 2
orderflow_saga_events_parked_total{reason="b"} 1
orderflow_saga_events_parked_total_extra 40
orderflow_command_consumer_parked_total 0
`
	tests := []struct {
		metric  string
		want    float64
		wantErr error
	}{
		{"orderflow_saga_events_parked_total", 3, nil},
		{"orderflow_command_consumer_parked_total", 0, nil},
		{"orderflow_relay_parked_total", 0, ErrNoMetrics},
	}
	for _, tt := range tests {
		got, err := sumMetric(bufio.NewScanner(strings.NewReader(text)), tt.metric)
		if !errors.Is(err, tt.wantErr) || got != tt.want {
			t.Errorf("sumMetric(%s) = %v, %v; want %v, %v", tt.metric, got, err, tt.want, tt.wantErr)
		}
	}
}

// orderServer is a real HTTP server that acknowledges every order with a
// new id and every cancel with 202, counting them.
type orderServer struct {
	mu      sync.Mutex
	orders  int
	cancels int
}

func (s *orderServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
	if strings.HasSuffix(r.URL.Path, "/cancel") {
		s.cancels++
		return
	}
	s.orders++
	fmt.Fprintf(w, `{"order_id": "o-%d", "saga_id": "s-%d", "status": "pending"}`, s.orders, s.orders)
}

func TestRunRecordsEveryAcknowledgedOrderAtItsRate(t *testing.T) {
	tests := []struct {
		name    string
		rate    float64
		minTook time.Duration
	}{
		{"unpaced", 0, 0},
		{"paced", 100, 390 * time.Millisecond}, // 40 orders at 100/s: the last is due at 0.39 s
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &orderServer{}
			srv := httptest.NewServer(s)
			t.Cleanup(srv.Close)
			cfg := LoadConfig{RunID: "t", Orders: 40, Workers: 4, Customers: 5, Seed: 1, Rate: tt.rate,
				CustomerToken: func(c string) (string, error) { return "tok-" + c, nil }}
			var prog Progress
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			res, err := Run(ctx, NewClient(srv.URL), cfg, &prog)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Intents) != 40 || prog.Placed.Load() != 40 || res.Unacknowledged != 0 || len(res.Refusals) != 0 {
				t.Fatalf("%d intents, %d placed, %d unacknowledged, refusals %v; want 40, 40, 0, none",
					len(res.Intents), prog.Placed.Load(), res.Unacknowledged, res.Refusals)
			}
			if took < tt.minTook {
				t.Errorf("took %s, want at least %s at %v/s", took, tt.minTook, tt.rate)
			}
			cancelled := 0
			ids := map[string]bool{}
			for _, in := range res.Intents {
				ids[in.OrderID] = true
				if in.Kind == Cancelled {
					cancelled++
					if in.CancelStatus != http.StatusAccepted {
						t.Errorf("order %s: cancel status %d, want 202", in.OrderID, in.CancelStatus)
					}
				}
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if len(ids) != 40 || s.cancels != cancelled {
				t.Errorf("%d distinct orders and %d cancels sent for %d cancelled intents", len(ids), s.cancels, cancelled)
			}
		})
	}
}
