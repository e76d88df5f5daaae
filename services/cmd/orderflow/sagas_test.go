package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/internal/projsource"
	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/sagaview"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/sagas/sagatest"
	"github.com/orderflow/orderflow/services/internal/coordinator"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	sagasvc "github.com/orderflow/orderflow/services/sagas"
)

// The order the sagas of the drawing tests fulfil.
const tOrderID = "0b5e8a4c-1f7e-4f51-9d0c-2f4e5a6b7c8d"

var (
	tSagaID = sagas.SagaID(tOrderID)
	tStart  = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
)

// tTiming: an attempt waits 5 s; a step gets 3 attempts, a compensation 2,
// 1 s then 2 s apart, without jitter, so that a timeout's times are exact.
var tTiming = sagas.Timing{
	Timeout:           5 * time.Second,
	Retry:             sagas.RetryPolicy{MaxAttempts: 3, Initial: time.Second, Multiplier: 2},
	CompensationRetry: sagas.RetryPolicy{MaxAttempts: 2, Initial: time.Second, Multiplier: 2},
}

// The services' answers, as acts on a saga under test. The engine reads
// a reply's type and its causation (the pending command), and the reason
// of a refusal; the rest is what the history shows.
var (
	actReserved = sagatest.Reply("StockReservationAccepted",
		map[string]any{"order_id": tOrderID, "lines": []map[string]any{{"sku": "SKU-1", "quantity": 2}}})
	actOutOfStock = sagatest.Reply("StockReservationRejected",
		map[string]any{"order_id": tOrderID, "reason": "insufficient_stock", "sku": "SKU-1", "requested": 2, "available": 0})
	actReleased          = sagatest.Reply("StockReservationReleased", map[string]any{"order_id": tOrderID})
	actConsumed          = sagatest.Reply("StockReservationConsumed", map[string]any{"order_id": tOrderID})
	actScheduled         = sagatest.Reply(shipping.TypeShipmentScheduled, map[string]any{"order_id": tOrderID})
	actRefused           = sagatest.Reply(shipping.TypeShipmentRefused, map[string]any{"order_id": tOrderID, "reason": order.ReasonDestinationNotServed})
	actShipmentCancelled = sagatest.Reply(shipping.TypeShipmentCancelled, map[string]any{"order_id": tOrderID, "reason": order.ReasonCancelledByCustomer})
	actConfirmed         = sagatest.Reply(order.TypeOrderConfirmed, map[string]any{"order_id": tOrderID})
	actShipped           = sagatest.Reply(order.TypeOrderShipped, map[string]any{"order_id": tOrderID})
	actRejected          = func(reason string) sagatest.Act {
		return sagatest.Reply(order.TypeOrderRejected, map[string]any{"order_id": tOrderID, "reason": reason})
	}
	actCustomerCancels = sagatest.External(order.TypeOrderCancelled, map[string]any{"order_id": tOrderID, "reason": order.ReasonCancelledByCustomer})
	actDispatched      = sagatest.External(shipping.TypeShipmentDispatched, map[string]any{"order_id": tOrderID})
	actExpire          = sagatest.Expire()
	wait               = sagatest.Advance
)

// sagaScenario is a saga driven by the engine's own decisions; after
// says how long after its last act the drawing is made (a running saga's
// span ends then).
type sagaScenario struct {
	name    string
	country string
	acts    []sagatest.Act
	after   time.Duration
}

var sagaScenarios = []sagaScenario{
	{name: "completed", country: "US", acts: []sagatest.Act{wait(120 * time.Millisecond), actReserved,
		wait(80 * time.Millisecond), actScheduled, wait(50 * time.Millisecond), actConfirmed}},
	{name: "insufficient stock", country: "US", acts: []sagatest.Act{wait(30 * time.Millisecond), actOutOfStock,
		wait(20 * time.Millisecond), actRejected(order.ReasonInsufficientStock)}},
	{name: "destination not served", country: "AQ", acts: []sagatest.Act{wait(100 * time.Millisecond), actReserved,
		wait(100 * time.Millisecond), actRefused, wait(300 * time.Millisecond), actReleased,
		wait(500 * time.Millisecond), actRejected(order.ReasonDestinationNotServed)}},
	{name: "cancelled while confirmed", country: "US", acts: []sagatest.Act{wait(100 * time.Millisecond), actReserved,
		wait(100 * time.Millisecond), actScheduled, wait(100 * time.Millisecond), actConfirmed,
		wait(2 * time.Second), actCustomerCancels, wait(100 * time.Millisecond), actShipmentCancelled,
		wait(100 * time.Millisecond), actReleased}},
	{name: "shipped", country: "US", acts: []sagatest.Act{wait(100 * time.Millisecond), actReserved,
		wait(100 * time.Millisecond), actScheduled, wait(100 * time.Millisecond), actConfirmed,
		wait(700 * time.Millisecond), actDispatched, wait(100 * time.Millisecond), actConsumed,
		wait(100 * time.Millisecond), actShipped}},
	// reserve_inventory goes unanswered through its 3 attempts (5 s each,
	// 1 s then 2 s apart); the order is rejected, then the reservation
	// that may have happened is released.
	{name: "step timeout", country: "US", acts: []sagatest.Act{actExpire, actExpire, actExpire, actExpire, actExpire,
		wait(40 * time.Millisecond), actRejected(sagas.ReasonStepTimeout), wait(60 * time.Millisecond), actReleased}},
	// The release of the stock goes unanswered through its budget.
	{name: "compensation parks", country: "AQ", acts: []sagatest.Act{wait(100 * time.Millisecond), actReserved,
		wait(100 * time.Millisecond), actRefused, actExpire, actExpire, actExpire}},
	// The same, until an operator retries it and the inventory answers.
	{name: "retried", country: "AQ", acts: []sagatest.Act{wait(100 * time.Millisecond), actReserved,
		wait(100 * time.Millisecond), actRefused, actExpire, actExpire, actExpire, wait(time.Minute), sagatest.Retry(),
		wait(200 * time.Millisecond), actReleased, wait(100 * time.Millisecond), actRejected(order.ReasonDestinationNotServed)}},
	// The shipment is not answered yet.
	{name: "running", country: "US", acts: []sagatest.Act{wait(100 * time.Millisecond), actReserved}, after: 900 * time.Millisecond},
}

func scenario(t testing.TB, name string) sagaScenario {
	t.Helper()
	i := slices.IndexFunc(sagaScenarios, func(s sagaScenario) bool { return s.name == name })
	if i < 0 {
		t.Fatalf("no scenario %q", name)
	}
	return sagaScenarios[i]
}

// drive runs sc for the order orderID placed at start, and returns the
// saga and the time it is drawn at.
func drive(t testing.TB, sc sagaScenario, orderID string, start time.Time) (*sagatest.Saga, time.Time) {
	t.Helper()
	s := sagatest.Start(t, sagas.OrderFulfillmentV1(tTiming), sagas.SagaID(orderID), coordinatortest.Placed(orderID, sc.country, start), start)
	for _, a := range sc.acts {
		a(s)
	}
	return s, s.Now.Add(sc.after)
}

// viewOf is the saga's view as the service answers it: through JSON.
func viewOf(t testing.TB, s *sagatest.Saga) sagas.View {
	t.Helper()
	v, err := normalize(s.State.View())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func draw(t testing.TB, v sagas.View, o timelineOptions) string {
	t.Helper()
	var b strings.Builder
	if err := renderSaga(&b, v, o); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var ansiRE = regexp.MustCompile("\x1b\\[[0-9;]*m")

func stripANSI(s string) string { return ansiRE.ReplaceAllString(s, "") }

// matchLines checks that each pattern matches a line of out, in order.
func matchLines(t *testing.T, out string, patterns []string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	i := 0
	for _, p := range patterns {
		re := regexp.MustCompile(p)
		for i < len(lines) && !re.MatchString(lines[i]) {
			i++
		}
		if i == len(lines) {
			t.Errorf("no line (after the ones matched before) matches %q in:\n%s", p, out)
			return
		}
		i++
	}
}

// section returns the lines of out from the one starting with start up to
// the next empty line.
func section(out, start string) string {
	i := strings.Index(out, start)
	if i < 0 {
		return ""
	}
	s := out[i:]
	if j := strings.Index(s, "\n\n"); j >= 0 {
		s = s[:j+1]
	}
	return s
}

func TestSagaTimeline(t *testing.T) {
	id := regexp.QuoteMeta(tSagaID)
	tests := []struct {
		scenario string
		// timeline, when set, is the timeline section exactly.
		timeline string
		// lines match lines of the whole drawing, in order.
		lines []string
	}{
		{
			scenario: "completed",
			timeline: `  timeline                        0s                       250ms
  ✓ reserve_inventory  succeeded  ███████████████···············  120ms  1 attempt  ← inventory
  ✓ schedule_shipment  succeeded  ··············██████████······   80ms  1 attempt  ← shipping
  ✓ confirm_order      succeeded  ························██████   50ms  1 attempt  ← orders
`,
			lines: []string{
				`^saga ` + id + `  order_fulfillment v1$`,
				`^  order    ` + tOrderID + `$`,
				`^  status   completed$`,
				`^  started  2025-03-04 05:06:07\.000Z$`,
				`^  ended    2025-03-04 05:06:07\.250Z, took 250ms$`,
				`^history$`,
				`^ +\+0ms  SagaStarted +order_fulfillment v1, order ` + tOrderID + `$`,
				`^ +\+0ms  CommandIssued +reserve_inventory → inventory\.reserve_stock #1$`,
				`^ +\+120ms  StockReservationAccepted  reserve_inventory ← inventory #1: success$`,
				`^ +\+250ms  SagaCompleted$`,
			},
		},
		{
			scenario: "destination not served",
			timeline: `  timeline                               0s                          1s
  ↩ reserve_inventory       compensated  ███···························  100ms  1 attempt  ← inventory
  ✗ schedule_shipment       failed       ···███························  100ms  1 attempt  ← shipping   destination_not_served
  – confirm_order           skipped
  ↩ undo reserve_inventory  compensated  ······▓▓▓▓▓▓▓▓▓···············  300ms  1 attempt  ← inventory
  ✓ close reject_order      done         ···············▓▓▓▓▓▓▓▓▓▓▓▓▓▓▓  500ms  1 attempt  ← orders
`,
			lines: []string{
				`^  status   compensated: destination_not_served \(after ShipmentRefused\)$`,
				`^  ended    2025-03-04 05:06:08\.000Z, took 1s$`,
				`^ +\+200ms  ShipmentRefused +schedule_shipment ← shipping #1: failure destination_not_served$`,
				`^ +\+200ms  CompensationStarted +destination_not_served \(after ShipmentRefused\)$`,
				`^ +\+200ms  CommandIssued +undo reserve_inventory → inventory\.release_stock #1$`,
				`^ +\+500ms  StockReservationReleased +undo reserve_inventory ← inventory #1: success$`,
				`^ +\+500ms  CommandIssued +close reject_order → orders\.reject_order #1$`,
				`^ +\+1s  CompensationDone +close reject_order$`,
				`^ +\+1s  SagaCompensated +destination_not_served$`,
			},
		},
		{
			scenario: "insufficient stock",
			lines: []string{
				`^  status   compensated: insufficient_stock \(after StockReservationRejected\)$`,
				`^  ✗ reserve_inventory +failed +█{18}·{12}  30ms  1 attempt  ← inventory  insufficient_stock$`,
				`^  – schedule_shipment +skipped$`,
				`^  – confirm_order +skipped$`,
				`^  ✓ close reject_order +done +·{18}▓{12}  20ms  1 attempt  ← orders$`,
			},
		},
		{
			scenario: "cancelled while confirmed",
			lines: []string{
				`^  status   compensated: cancelled_by_customer \(after OrderCancelled\)$`,
				`^  ↩ reserve_inventory +compensated +██·{28}  100ms  1 attempt  ← inventory$`,
				`^  ↩ schedule_shipment +compensated +·██·{27}  100ms  1 attempt  ← shipping$`,
				`^  ✓ confirm_order +succeeded +··██·{26}  100ms  1 attempt  ← orders$`,
				// 2.3 s of 2.5 s: the 28th of 30 cells.
				`^  ⚑ OrderCancelled +received +·{27}│··$`,
				// The shipment is cancelled first, then the stock released.
				`^  ↩ undo schedule_shipment +compensated +·{27}▓▓·  100ms  1 attempt  ← shipping$`,
				`^  ↩ undo reserve_inventory +compensated +·{28}▓▓  100ms  1 attempt  ← inventory$`,
				`^ +\+2\.3s  OrderCancelled +outside event$`,
			},
		},
		{
			scenario: "shipped",
			lines: []string{
				`^  status   completed$`,
				`^  ✓ confirm_order +succeeded `,
				`^  ✓ consume_stock +succeeded +·{25}███··  100ms  1 attempt  ← inventory$`,
				`^  ✓ mark_order_shipped +succeeded +·{27}███  100ms  1 attempt  ← orders$`,
				`^  ⚑ ShipmentDispatched +received +·{25}│·{4}$`,
				`^ +\+1\.1s  CommandIssued +mark_order_shipped → orders\.mark_order_shipped #1$`,
			},
		},
		{
			scenario: "step timeout",
			lines: []string{
				`^  status   compensated: step_timeout$`,
				`^  ended    2025-03-04 05:06:25\.100Z, took 18\.1s$`,
				// Unanswered, so undone all the same: its outcome is unknown.
				`^  ↩ reserve_inventory +compensated +█{30} +18s  3 attempts \(2 retries\)  ✗ inventory  no answer after 3 attempts from inventory$`,
				`^  ✓ close reject_order +done +·{29}▓ +40ms  1 attempt +← orders$`,
				`^  ↩ undo reserve_inventory +compensated +·{29}▓ +60ms  1 attempt +← inventory$`,
				`^ +\+5s  AttemptTimedOut +reserve_inventory #1 unanswered, next attempt in 1s$`,
				`^ +\+6s  CommandIssued +reserve_inventory → inventory\.reserve_stock #2$`,
				`^ +\+11s  AttemptTimedOut +reserve_inventory #2 unanswered, next attempt in 2s$`,
				`^ +\+18s  StepTimedOut +reserve_inventory: no answer after 3 attempts$`,
				`^ +\+18s  CompensationStarted +step_timeout$`,
			},
		},
		{
			scenario: "compensation parks",
			lines: []string{
				`^  status   failed: destination_not_served \(after ShipmentRefused\)$`,
				`^  started  2025-03-04 05:06:07\.000Z$`,
				`^  parked   on undo reserve_inventory since \+11\.2s: compensation_timeout: no answer after 2 attempts$`,
				`^           orderflow sagas retry ` + id + ` resumes it$`,
				`^  ↺ reserve_inventory +compensating +█·{29}  100ms  1 attempt +← inventory$`,
				`^  ✗ undo reserve_inventory +failed +░{30} +11s  2 attempts \(1 retry\)  ✗ inventory  compensation_timeout: no answer after 2 attempts$`,
				`^ +\+11\.2s  SagaFailed +undo reserve_inventory: compensation_timeout: no answer after 2 attempts$`,
			},
		},
		{
			scenario: "retried",
			lines: []string{
				`^  status   compensated: destination_not_served \(after ShipmentRefused\)$`,
				`^  ↩ undo reserve_inventory +compensated +▓{30}  1m11s  3 attempts \(1 retry\), 1 operator retry  ← inventory$`,
				`^  ✓ close reject_order +done +·{29}▓  100ms  1 attempt +← orders$`,
				`^ +\+1m11s  SagaRetried +undo reserve_inventory from attempt #3 \(operator\)$`,
				`^ +\+1m11s  StockReservationReleased +undo reserve_inventory ← inventory #3: success$`,
			},
		},
		{
			scenario: "running",
			lines: []string{
				// Drawn 900 ms after the shipment was asked for.
				`^  status   running, at schedule_shipment, for 1s$`,
				`^  ✓ reserve_inventory +succeeded +███·{27} +100ms  1 attempt  ← inventory$`,
				`^  ▶ schedule_shipment +running +···░{27}  900ms…  1 attempt  … shipping$`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			s, now := drive(t, scenario(t, tt.scenario), tOrderID, tStart)
			v := viewOf(t, s)
			plain := draw(t, v, timelineOptions{now: now, history: true})
			if strings.Contains(plain, "\x1b") {
				t.Errorf("colour escapes in the plain drawing:\n%q", plain)
			}
			if tt.timeline != "" {
				if got := section(plain, "  timeline"); got != tt.timeline {
					t.Errorf("timeline:\n%s\nwant:\n%s", got, tt.timeline)
				}
			}
			matchLines(t, plain, tt.lines)
			// One history line per history entry.
			if got, want := len(strings.Split(strings.TrimSpace(section(plain, "history")), "\n"))-1, len(v.History); got != want {
				t.Errorf("%d history lines, want %d", got, want)
			}

			colored := draw(t, v, timelineOptions{now: now, history: true, color: true})
			if !strings.Contains(colored, "\x1b[") {
				t.Errorf("no colour on a terminal:\n%s", colored)
			}
			// Colour changes nothing else: the layout is the same.
			if got := stripANSI(colored); got != plain {
				t.Errorf("the coloured drawing without its escapes differs from the plain one:\n%s\nplain:\n%s", got, plain)
			}

			short := draw(t, v, timelineOptions{now: now})
			if strings.Contains(short, "history") || !strings.Contains(short, "  timeline") {
				t.Errorf("without history:\n%s", short)
			}
		})
	}
}

func TestSagaTimelineColours(t *testing.T) {
	s, now := drive(t, scenario(t, "destination not served"), tOrderID, tStart)
	out := draw(t, viewOf(t, s), timelineOptions{now: now, color: true})
	for _, want := range []string{
		"\x1b[32m✓\x1b[0m",                      // a closing action done: green
		"\x1b[31mfailed\x1b[0m",                 // a failed step: red
		"\x1b[31mdestination_not_served\x1b[0m", // its error
		"\x1b[33mcompensated\x1b[0m",            // a compensated step: yellow
		"\x1b[35minventory\x1b[0m",              // the services in the dev stack's colours
		"\x1b[33mshipping\x1b[0m",
		"\x1b[36morders\x1b[0m",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%q", want, out)
		}
	}
}

func TestSagaTimelineFitsTheTerminal(t *testing.T) {
	s, now := drive(t, scenario(t, "completed"), tOrderID, tStart)
	v := viewOf(t, s)
	barRE := regexp.MustCompile(`[█▓░│·]+`)
	tests := []struct {
		cols, bar int
	}{
		{0, plainBarWidth},
		{300, maxBarWidth},
		{100, 100 - 1 - (2 + 2 + len("schedule_shipment") + 2 + len("succeeded") + 2 + 2 + len("120ms") + 2 + len("1 attempt") + 2 + utf8.RuneCountInString("← inventory"))},
		{40, minBarWidth},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.cols), func(t *testing.T) {
			out := draw(t, v, timelineOptions{now: now, cols: tt.cols})
			row := regexp.MustCompile(`(?m)^  ✓ reserve_inventory .*$`).FindString(out)
			if got := utf8.RuneCountInString(barRE.FindString(row)); got != tt.bar {
				t.Errorf("bar of %d cells, want %d:\n%s", got, tt.bar, out)
			}
			if tt.cols >= 100 {
				for _, line := range strings.Split(section(out, "  timeline"), "\n") {
					if n := utf8.RuneCountInString(line); n >= tt.cols {
						t.Errorf("line of %d columns on a terminal of %d: %q", n, tt.cols, line)
					}
				}
			}
		})
	}
}

func TestSagaDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0ms"},
		{340 * time.Microsecond, "0.3ms"},
		{3400 * time.Microsecond, "3.4ms"},
		{120 * time.Millisecond, "120ms"},
		{1250 * time.Millisecond, "1.25s"},
		{18 * time.Second, "18s"},
		{245 * time.Second, "4m05s"},
		{-2 * time.Second, "-2s"},
	}
	for _, tt := range tests {
		if got := sagaDuration(tt.d); got != tt.want {
			t.Errorf("sagaDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// sagaRun is one in-process run of the sagas command.
type sagaRun struct {
	out, errOut string
	err         error
	code        int
}

// sagaCmd runs "orderflow sagas args..." in process, as on a pipe, with
// env as its whole environment and the clock at now.
func sagaCmd(t *testing.T, env map[string]string, now time.Time, args ...string) sagaRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	st := sagaTerm{out: &out, errOut: &errOut, now: func() time.Time { return now }, getenv: func(k string) string { return env[k] }}
	if len(args) == 0 || args[0] != "sagas" {
		t.Fatalf("not a sagas command line: %q", args)
	}
	err := runSagasOn(ctx, st, args[1:])
	code := exitCode(err, &errOut)
	return sagaRun{out: out.String(), errOut: errOut.String(), err: err, code: code}
}

// sagaServer is an httptest stand-in for the sagas service's routes,
// answering from views: GET /api/sagas/{id}, GET /api/sagas (one page of
// every summary, recording the query) and POST /api/sagas/{id}/retry.
type sagaServer struct {
	*httptest.Server
	mu    sync.Mutex
	views map[string]sagas.View
	query string
}

func newSagaServer(t *testing.T, views ...sagas.View) *sagaServer {
	t.Helper()
	s := &sagaServer{views: make(map[string]sagas.View)}
	for _, v := range views {
		s.views[v.SagaID] = v
	}
	problem := func(w http.ResponseWriter, status int, detail string) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail}) //nolint:errcheck
	}
	answer := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v) //nolint:errcheck
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/sagas/{id}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		v, ok := s.views[r.PathValue("id")]
		s.mu.Unlock()
		if !ok {
			problem(w, http.StatusNotFound, fmt.Sprintf("no saga with id %q", r.PathValue("id")))
			return
		}
		answer(w, http.StatusOK, v)
	})
	mux.HandleFunc("GET /api/sagas", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.query = r.URL.RawQuery
		page := sagaPage{Items: []sagas.Summary{}}
		for _, v := range s.views {
			page.Items = append(page.Items, v.Summary)
		}
		slices.SortFunc(page.Items, func(a, b sagas.Summary) int { return strings.Compare(a.SagaID, b.SagaID) })
		answer(w, http.StatusOK, page)
	})
	mux.HandleFunc("POST /api/sagas/{id}/retry", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		v, ok := s.views[r.PathValue("id")]
		s.mu.Unlock()
		switch {
		case !ok:
			problem(w, http.StatusNotFound, "no saga")
		case r.Header.Get("Authorization") != "Bearer admin-token":
			problem(w, http.StatusForbidden, "retrying a saga is for admins")
		case v.Status != sagas.StatusFailed:
			problem(w, http.StatusConflict, fmt.Sprintf("saga %s is %s; only a failed saga can be retried", v.SagaID, v.Status))
		default:
			answer(w, http.StatusAccepted, map[string]string{"saga_id": v.SagaID, "status": "compensating"})
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusNotFound, "no route")
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// closedURL is the URL of a port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestSagasShowOverHTTP(t *testing.T) {
	s, now := drive(t, scenario(t, "destination not served"), tOrderID, tStart)
	v := viewOf(t, s)
	srv := newSagaServer(t, v)
	want := draw(t, v, timelineOptions{now: now, history: true})

	t.Run("url flag", func(t *testing.T) {
		r := sagaCmd(t, nil, now, "sagas", "show", tSagaID, "--url", srv.URL)
		if r.code != 0 || r.out != want {
			t.Fatalf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", r.code, r.errOut, r.out, want)
		}
	})
	t.Run("url from the environment, upper-case id", func(t *testing.T) {
		r := sagaCmd(t, map[string]string{"ORDERFLOW_SAGAS_URL": srv.URL + "/"}, now, "sagas", "show", strings.ToUpper(tSagaID))
		if r.code != 0 || r.out != want {
			t.Fatalf("exit %d, stderr %q, stdout:\n%s", r.code, r.errOut, r.out)
		}
	})
	t.Run("by order id", func(t *testing.T) {
		r := sagaCmd(t, nil, now, "sagas", "show", "--order-id", tOrderID, "--url", srv.URL)
		if r.code != 0 || r.out != want {
			t.Fatalf("exit %d, stderr %q, stdout:\n%s", r.code, r.errOut, r.out)
		}
	})
	t.Run("json", func(t *testing.T) {
		r := sagaCmd(t, nil, now, "sagas", "show", tSagaID, "--json", "--url", srv.URL)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.errOut)
		}
		var got, sent any
		if err := json.Unmarshal([]byte(r.out), &got); err != nil {
			t.Fatalf("--json printed no JSON: %v\n%s", err, r.out)
		}
		raw, _ := json.Marshal(s.State.View())
		if err := json.Unmarshal(raw, &sent); err != nil {
			t.Fatal(err)
		}
		if !jsonEqual(got, sent) {
			t.Errorf("--json printed:\n%s\nthe service sent:\n%s", r.out, raw)
		}
	})
	t.Run("unknown saga", func(t *testing.T) {
		other := uuid.NewString()
		r := sagaCmd(t, nil, now, "sagas", "show", other, "--url", srv.URL)
		if r.code != 1 || !errors.Is(r.err, errSagaNotFound) || !strings.Contains(r.errOut, "no saga "+other) {
			t.Errorf("exit %d, err %v, stderr %q", r.code, r.err, r.errOut)
		}
		if r.out != "" {
			t.Errorf("stdout %q", r.out)
		}
	})
	t.Run("stack not running", func(t *testing.T) {
		u := closedURL(t)
		r := sagaCmd(t, map[string]string{"ORDERFLOW_SAGAS_URL": u}, now, "sagas", "show", tSagaID)
		if r.code != 1 || !errors.Is(r.err, errSagasUnreachable) {
			t.Fatalf("exit %d, err %v", r.code, r.err)
		}
		if strings.Contains(r.errOut, "unreachable") {
			t.Errorf("the sentinel's words in the message: %s", r.errOut)
		}
		for _, want := range []string{"cannot reach the sagas service at " + u, "connection refused", "is `make run` running?", "--database-url"} {
			if !strings.Contains(r.errOut, want) {
				t.Errorf("stderr lacks %q: %s", want, r.errOut)
			}
		}
	})
	t.Run("not the sagas service", func(t *testing.T) {
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"order_id": "x"}`)
		}))
		defer other.Close()
		r := sagaCmd(t, nil, now, "sagas", "show", tSagaID, "--url", other.URL)
		if r.code != 1 || !strings.Contains(r.errOut, "is not a saga (is it the sagas service?)") {
			t.Errorf("exit %d, stderr %q", r.code, r.errOut)
		}
	})
	t.Run("service unavailable", func(t *testing.T) {
		down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"type": "x", "title": "Service Unavailable", "status": 503, "detail": "the database is unavailable"}`)
		}))
		defer down.Close()
		r := sagaCmd(t, nil, now, "sagas", "show", tSagaID, "--url", down.URL)
		if r.code != 1 || !strings.Contains(r.errOut, "answered 503: the database is unavailable") {
			t.Errorf("exit %d, stderr %q", r.code, r.errOut)
		}
	})
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestSagasListAndRetryOverHTTP(t *testing.T) {
	parked, now := drive(t, scenario(t, "compensation parks"), tOrderID, tStart)
	other := "7d1f4c2e-9b3a-4e5f-8a6b-1c2d3e4f5a6b"
	done, _ := drive(t, scenario(t, "completed"), other, tStart.Add(-time.Hour))
	srv := newSagaServer(t, viewOf(t, parked), viewOf(t, done))
	now = now.Add(3 * time.Minute)

	r := sagaCmd(t, nil, now, "sagas", "list", "--status", "failed", "--order-id", strings.ToUpper(tOrderID), "--limit", "7", "--url", srv.URL)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.errOut)
	}
	srv.mu.Lock()
	query := srv.query
	srv.mu.Unlock()
	if want := "limit=7&order_id=" + tOrderID + "&status=failed"; query != want {
		t.Errorf("query %q, want %q", query, want)
	}
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and two rows:\n%s", r.out)
	}
	if got, want := strings.Fields(lines[0]), []string{"SAGA", "TYPE", "STATUS", "STEP", "ORDER", "AGE", "TOOK"}; !slices.Equal(got, want) {
		t.Errorf("header %q", got)
	}
	rows := map[string][]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		rows[f[0]] = f
	}
	// The parked saga names the step it is parked on; it started 3 min
	// 11 s before now and has not ended.
	if got, want := rows[tSagaID], []string{tSagaID, "order_fulfillment", "v1", "failed", "reserve_inventory", tOrderID, "3m", "-"}; !slices.Equal(got, want) {
		t.Errorf("parked row %q, want %q", got, want)
	}
	if got, want := rows[sagas.SagaID(other)], []string{sagas.SagaID(other), "order_fulfillment", "v1", "completed", "-", other, "1h", "250ms"}; !slices.Equal(got, want) {
		t.Errorf("completed row %q, want %q", got, want)
	}
	if strings.Contains(r.out, "\x1b") {
		t.Errorf("colour on a pipe: %q", r.out)
	}

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"retry a failed saga", []string{tSagaID, "--token", "admin-token"}, 0, "saga " + tSagaID + " resumed (compensating)", ""},
		{"token from the environment", []string{"--order-id", tOrderID}, 0, "resumed (compensating)", ""},
		{"not failed", []string{sagas.SagaID(other), "--token", "admin-token"}, 1, "", "answered 409: saga " + sagas.SagaID(other) + " is completed; only a failed saga can be retried"},
		{"no admin", []string{tSagaID, "--token", "customer"}, 1, "", "answered 403: retrying a saga is for admins (the gateway wants a token"},
		{"unknown", []string{uuid.NewString(), "--token", "admin-token"}, 1, "", "knows no saga with that id"},
		{"database flags are not for retry", []string{tSagaID, "--database-url", "postgres://x/y"}, 2, "", "flag provided but not defined: -database-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"ORDERFLOW_SAGAS_URL": srv.URL, "ORDERFLOW_TOKEN": "admin-token"}
			r := sagaCmd(t, env, now, append([]string{"sagas", "retry"}, tt.args...)...)
			if r.code != tt.code || !strings.Contains(r.out, tt.stdout) || !strings.Contains(r.errOut, tt.stderr) {
				t.Errorf("exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)", r.code, tt.code, r.out, tt.stdout, r.errOut, tt.stderr)
			}
		})
	}
}

func TestSagasCommandLine(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no subcommand", []string{"sagas"}, 2, "no subcommand given"},
		{"unknown subcommand", []string{"sagas", "explain"}, 2, `unknown subcommand "explain"`},
		{"help", []string{"sagas", "-h"}, 0, ""},
		{"show help", []string{"sagas", "show", "-h"}, 0, "Usage: orderflow sagas show ID"},
		{"show without id", []string{"sagas", "show"}, 2, "no saga ID given"},
		{"show bad id", []string{"sagas", "show", "42"}, 2, `"42" is not a saga id (a UUID)`},
		{"show two ids", []string{"sagas", "show", tSagaID, tSagaID}, 2, "one saga at a time"},
		{"show id and order", []string{"sagas", "show", tSagaID, "--order-id", tOrderID}, 2, "not both"},
		{"show bad order id", []string{"sagas", "show", "--order-id", "o-1"}, 2, "is not an order id"},
		{"show bad flag", []string{"sagas", "show", tSagaID, "--nope"}, 2, "flag provided but not defined: -nope"},
		{"show bad url", []string{"sagas", "show", tSagaID, "--url", "127.0.0.1:8084"}, 2, "is not an http:// or https:// URL"},
		{"show two databases", []string{"sagas", "show", tSagaID, "--db", "--database-url", "postgres://x/y"}, 2, "give one of --database-url, --admin-url and --db"},
		{"show url and database", []string{"sagas", "show", tSagaID, "--url", "http://x", "--database-url", "postgres://x/y"}, 2, "do not go with a database flag"},
		{"show db without env", []string{"sagas", "show", tSagaID, "--db"}, 2, "neither is set"},
		{"show unparsable database url", []string{"sagas", "show", tSagaID, "--database-url", "postgres://[::1"}, 2, "cannot be parsed"},
		{"show bad admin url", []string{"sagas", "show", tSagaID, "--admin-url", "mysql://x"}, 2, "must be a postgres:// URL"},
		{"list extra args", []string{"sagas", "list", "failed"}, 2, "unexpected arguments"},
		{"list bad status", []string{"sagas", "list", "--status", "broken"}, 2, `--status "broken"`},
		{"list limit 0", []string{"sagas", "list", "--limit", "0"}, 2, "--limit 0 out of range 1..500"},
		{"list limit 501", []string{"sagas", "list", "--limit", "501"}, 2, "out of range"},
		{"list bad order id", []string{"sagas", "list", "--order-id", "nope"}, 2, "is not an order id"},
		{"retry without id", []string{"sagas", "retry"}, 2, "no saga ID given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sagaCmd(t, nil, tStart, tt.args...)
			if r.code != tt.code || !strings.Contains(r.errOut, tt.stderr) {
				t.Errorf("exit %d (want %d), stderr:\n%s\n(want %q)", r.code, tt.code, r.errOut, tt.stderr)
			}
		})
	}
}

// sagaDatabase is a sagas service's database in miniature: an event store
// holding the streams of the scenarios' sagas.
type sagaDatabase struct {
	url   string
	pool  *pgxpool.Pool
	store *postgres.Store
	// sagas are the sagas stored, by id, and when each is drawn.
	sagas map[string]*sagatest.Saga
	now   map[string]time.Time
	ids   []string // in the order stored
}

func newSagaDatabase(t *testing.T) *sagaDatabase {
	t.Helper()
	ctx := context.Background()
	d := &sagaDatabase{url: testenv.Postgres(t), sagas: make(map[string]*sagatest.Saga), now: make(map[string]time.Time)}
	pool, err := pgxpool.New(ctx, d.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	store, err := postgres.New(ctx, pool, postgres.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	d.pool, d.store = pool, store
	return d
}

// add drives sc for orderID placed at start and appends the saga's events
// to its stream, in two appends, as a coordinator records decisions.
func (d *sagaDatabase) add(t *testing.T, sc sagaScenario, orderID string, start time.Time) string {
	t.Helper()
	s, now := drive(t, sc, orderID, start)
	id := s.State.ID()
	envs := coordinatortest.Envelopes(t, s)
	half := len(envs) / 2
	ctx := context.Background()
	if _, err := d.store.Append(ctx, sagas.Stream(id), domain.NoStream, envs[:half]); err != nil {
		t.Fatal(err)
	}
	if _, err := d.store.Append(ctx, sagas.Stream(id), domain.ExactVersion(int64(half)), envs[half:]); err != nil {
		t.Fatal(err)
	}
	d.sagas[id], d.now[id] = s, now
	d.ids = append(d.ids, id)
	return id
}

// buildReadModel builds the coordinator's saga read model from the
// store, as the sagas service or "orderflow projections replay" would.
func (d *sagaDatabase) buildReadModel(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	src, err := projsource.New(d.store, eventstore.Filter{StreamPrefixes: sagaview.StreamPrefixes}, projsource.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// Every state stays in memory during one rebuild, so no loader is
	// needed.
	if err := projections.RebuildWith(ctx, d.pool, src, sagaview.New(nil, 0), projections.RebuildConfig{}); err != nil {
		t.Fatal(err)
	}
}

// listIDs returns the saga ids of a list's rows, in order.
func listIDs(t *testing.T, out string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "SAGA ") {
		t.Fatalf("no table:\n%s", out)
	}
	var ids []string
	for _, l := range lines[1:] {
		ids = append(ids, strings.Fields(l)[0])
	}
	return ids
}

// nextCursor reads the cursor a list printed on stderr.
func nextCursor(t *testing.T, errOut string) string {
	t.Helper()
	m := regexp.MustCompile(`more sagas: add --after (\S+)`).FindStringSubmatch(errOut)
	if m == nil {
		t.Fatalf("no cursor in %q", errOut)
	}
	return m[1]
}

func TestSagasOnTheDatabase(t *testing.T) {
	d := newSagaDatabase(t)
	// One saga per scenario, each placed a minute after the one before.
	for i, sc := range sagaScenarios {
		d.add(t, sc, fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1), tStart.Add(time.Duration(i)*time.Minute))
	}
	newestFirst := slices.Clone(d.ids)
	slices.Reverse(newestFirst)
	parked := d.ids[slices.IndexFunc(sagaScenarios, func(s sagaScenario) bool { return s.name == "compensation parks" })]
	now := tStart.Add(time.Hour)

	t.Run("show draws what the service would", func(t *testing.T) {
		for _, id := range d.ids {
			s := d.sagas[id]
			srv := newSagaServer(t, viewOf(t, s))
			fromDB := sagaCmd(t, nil, d.now[id], "sagas", "show", id, "--database-url", d.url)
			fromHTTP := sagaCmd(t, nil, d.now[id], "sagas", "show", id, "--url", srv.URL)
			if fromDB.code != 0 || fromHTTP.code != 0 {
				t.Fatalf("exit %d / %d: %s / %s", fromDB.code, fromHTTP.code, fromDB.errOut, fromHTTP.errOut)
			}
			if fromDB.out != fromHTTP.out {
				t.Errorf("saga %s from the database:\n%s\nfrom the service:\n%s", id, fromDB.out, fromHTTP.out)
			}
			if want := draw(t, viewOf(t, s), timelineOptions{now: d.now[id], history: true}); fromDB.out != want {
				t.Errorf("saga %s from the database:\n%s\nwant:\n%s", id, fromDB.out, want)
			}
			jsDB := sagaCmd(t, nil, d.now[id], "sagas", "show", id, "--json", "--database-url", d.url)
			jsHTTP := sagaCmd(t, nil, d.now[id], "sagas", "show", id, "--json", "--url", srv.URL)
			if jsDB.out != jsHTTP.out || jsDB.code != 0 {
				t.Errorf("--json from the database:\n%s\nfrom the service:\n%s", jsDB.out, jsHTTP.out)
			}
		}
	})

	t.Run("show from the environment", func(t *testing.T) {
		r := sagaCmd(t, map[string]string{"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none", "OWNER_DATABASE_URL": d.url},
			now, "sagas", "show", parked, "--db", "--no-history")
		if r.code != 0 || !strings.Contains(r.out, "  status   failed") || strings.Contains(r.out, "history") {
			t.Errorf("exit %d, stderr %q, stdout:\n%s", r.code, r.errOut, r.out)
		}
	})

	t.Run("show unknown", func(t *testing.T) {
		id := uuid.NewString()
		r := sagaCmd(t, nil, now, "sagas", "show", id, "--database-url", d.url)
		if r.code != 1 || !errors.Is(r.err, errSagaNotFound) || !strings.Contains(r.errOut, "no saga "+id+" in database") {
			t.Errorf("exit %d, err %v, stderr %q", r.code, r.err, r.errOut)
		}
	})

	// Before the coordinator has built its read model the list folds the
	// streams; after, it reads the read model. Both list the same.
	var folded map[string]string
	for _, readModel := range []bool{false, true} {
		if readModel {
			d.buildReadModel(t)
		}
		t.Run(fmt.Sprintf("list, read model %v", readModel), func(t *testing.T) {
			src, err := openSagaDatabase(context.Background(), d.url, "")
			if err != nil {
				t.Fatal(err)
			}
			if src.readModel != readModel {
				t.Errorf("read model found: %v, want %v", src.readModel, readModel)
			}
			src.Close()

			lists := map[string]string{}
			all := sagaCmd(t, nil, now, "sagas", "list", "--database-url", d.url)
			if all.code != 0 {
				t.Fatalf("exit %d: %s", all.code, all.errOut)
			}
			if got := listIDs(t, all.out); !slices.Equal(got, newestFirst) {
				t.Errorf("listed %q, want newest first %q", got, newestFirst)
			}
			lists["all"] = all.out

			failed := sagaCmd(t, nil, now, "sagas", "list", "--status", "failed", "--database-url", d.url)
			if got := listIDs(t, failed.out); !slices.Equal(got, []string{parked}) {
				t.Errorf("--status failed listed %q, want %q", got, parked)
			}
			if !regexp.MustCompile(`(?m)^` + parked + `  order_fulfillment v1  failed +reserve_inventory +\S+ +54m +-$`).MatchString(failed.out) {
				t.Errorf("row of the failed saga:\n%s", failed.out)
			}
			lists["failed"] = failed.out

			byOrder := sagaCmd(t, nil, now, "sagas", "list", "--order-id", d.sagas[d.ids[0]].State.OrderID(), "--database-url", d.url)
			if got := listIDs(t, byOrder.out); !slices.Equal(got, d.ids[:1]) {
				t.Errorf("--order-id listed %q", got)
			}

			// Page by page, 4 at a time, the cursor printed on stderr.
			var paged []string
			args := []string{"sagas", "list", "--limit", "4", "--database-url", d.url}
			for page := 0; ; page++ {
				r := sagaCmd(t, nil, now, args...)
				if r.code != 0 {
					t.Fatalf("page %d: exit %d: %s", page, r.code, r.errOut)
				}
				paged = append(paged, listIDs(t, r.out)...)
				if !strings.Contains(r.errOut, "more sagas") {
					break
				}
				args = []string{"sagas", "list", "--limit", "4", "--database-url", d.url, "--after", nextCursor(t, r.errOut)}
			}
			if !slices.Equal(paged, newestFirst) {
				t.Errorf("paged %q, want %q", paged, newestFirst)
			}

			js := sagaCmd(t, nil, now, "sagas", "list", "--json", "--status", "completed", "--database-url", d.url)
			var page sagaPage
			if err := json.Unmarshal([]byte(js.out), &page); err != nil || len(page.Items) != 2 || page.Next != "" {
				t.Errorf("--json: %v\n%s", err, js.out)
			}
			for _, it := range page.Items {
				if it.Status != sagas.StatusCompleted || len(it.Steps) < 3 {
					t.Errorf("--json item %+v", it)
				}
			}

			none := sagaCmd(t, nil, now, "sagas", "list", "--status", "compensating", "--database-url", d.url)
			if none.code != 0 || none.out != "" || !strings.Contains(none.errOut, "no sagas with status compensating") {
				t.Errorf("empty list: exit %d, stdout %q, stderr %q", none.code, none.out, none.errOut)
			}

			if folded == nil {
				folded = lists
			} else if !jsonEqual(folded, lists) {
				t.Errorf("the read model lists:\n%s\n%s\nthe folded streams:\n%s\n%s", lists["all"], lists["failed"], folded["all"], folded["failed"])
			}
		})
	}

	t.Run("not the sagas database", func(t *testing.T) {
		r := sagaCmd(t, nil, now, "sagas", "show", parked, "--database-url", testenv.Postgres(t))
		if r.code != 1 || !strings.Contains(r.errOut, "has no event store (no es_events table): is it the sagas service's database (orderflow_sagas)?") {
			t.Errorf("exit %d, stderr %q", r.code, r.errOut)
		}
	})

	t.Run("no such database", func(t *testing.T) {
		r := sagaCmd(t, nil, now, "sagas", "list", "--admin-url", testenv.PostgresAdminURL(t))
		if r.code != 1 || !strings.Contains(r.errOut, "database orderflow_sagas does not exist") {
			t.Errorf("exit %d, stderr %q", r.code, r.errOut)
		}
	})

	t.Run("read only", func(t *testing.T) {
		src, err := openSagaDatabase(context.Background(), d.url, "")
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		_, err = src.pool.Exec(context.Background(), "DELETE FROM es_events")
		if err == nil || !strings.Contains(err.Error(), "read-only transaction") {
			t.Errorf("a delete through the command's connections: %v", err)
		}
	})

	t.Run("the binary on a pipe", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary(t), "sagas", "show", parked, "--database-url", d.url)
		cmd.Env = envWithout(os.Environ(), "NO_COLOR", "DATABASE_URL", "OWNER_DATABASE_URL", "ORDERFLOW_SAGAS_URL")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %s", err, stderr.String())
		}
		// A parked saga's drawing does not depend on the clock.
		want := draw(t, viewOf(t, d.sagas[parked]), timelineOptions{now: now, history: true})
		if stdout.String() != want {
			t.Errorf("stdout:\n%q\nwant (plain: stdout is no terminal):\n%q", stdout.String(), want)
		}

		cmd = exec.CommandContext(ctx, binary(t), "sagas", "list")
		cmd.Env = append(envWithout(os.Environ(), "ORDERFLOW_SAGAS_URL"), "ORDERFLOW_SAGAS_URL="+closedURL(t))
		stderr.Reset()
		cmd.Stderr = &stderr
		var exit *exec.ExitError
		if err := cmd.Run(); !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr.String(), "is `make run` running?") {
			t.Errorf("list with nothing listening: %v, stderr %q", err, stderr.String())
		}
	})
}

// TestReadmeDrawing keeps the drawing README.md shows in step with the
// code that draws it.
func TestReadmeDrawing(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	cmd := "$ bin/orderflow sagas show " + tSagaID + " --no-history\n"
	i := bytes.Index(readme, []byte(cmd))
	if i < 0 {
		t.Fatalf("README.md shows no %q", cmd)
	}
	shown := string(readme[i+len(cmd):])
	shown = shown[:strings.Index(shown, "```")]
	s, now := drive(t, scenario(t, "destination not served"), tOrderID, tStart)
	if want := draw(t, viewOf(t, s), timelineOptions{now: now}); shown != want {
		t.Errorf("README.md shows:\n%s\nthe command draws:\n%s", shown, want)
	}
}

// TestSagasAgainstTheSagasService runs the command against the sagas
// service's own routes and coordinator on a real store: what it draws
// and lists over HTTP is what it draws and lists from the database, and a
// retry resumes a parked saga.
func TestSagasAgainstTheSagasService(t *testing.T) {
	d := newSagaDatabase(t)
	for i, name := range []string{"completed", "destination not served", "compensation parks", "shipped"} {
		d.add(t, scenario(t, name), fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1), tStart.Add(time.Duration(i)*time.Minute))
	}
	parked := d.ids[2]
	d.buildReadModel(t)
	coord, err := coordinator.New(d.store, d.pool, coordinator.Config{Timing: tTiming})
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	sagasvc.Routes(r, coord, d.pool)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	now := tStart.Add(time.Hour)

	for _, id := range d.ids {
		overHTTP := sagaCmd(t, nil, d.now[id], "sagas", "show", id, "--url", srv.URL)
		fromDB := sagaCmd(t, nil, d.now[id], "sagas", "show", id, "--database-url", d.url)
		if overHTTP.code != 0 || overHTTP.out != fromDB.out {
			t.Errorf("saga %s: exit %d %s\nover HTTP:\n%s\nfrom the database:\n%s", id, overHTTP.code, overHTTP.errOut, overHTTP.out, fromDB.out)
		}
	}
	for _, args := range [][]string{{}, {"--status", "failed"}, {"--limit", "3"}, {"--order-id", d.sagas[d.ids[1]].State.OrderID()}} {
		overHTTP := sagaCmd(t, nil, now, append([]string{"sagas", "list", "--url", srv.URL}, args...)...)
		fromDB := sagaCmd(t, nil, now, append([]string{"sagas", "list", "--database-url", d.url}, args...)...)
		if overHTTP.code != 0 || overHTTP.out != fromDB.out || overHTTP.errOut != fromDB.errOut || overHTTP.out == "" {
			t.Errorf("list %q: exit %d\nover HTTP:\n%s%s\nfrom the database:\n%s%s", args, overHTTP.code, overHTTP.out, overHTTP.errOut, fromDB.out, fromDB.errOut)
		}
	}

	unknown := uuid.NewString()
	if r := sagaCmd(t, nil, now, "sagas", "show", unknown, "--url", srv.URL); r.code != 1 || !errors.Is(r.err, errSagaNotFound) {
		t.Errorf("unknown saga: exit %d, %v", r.code, r.err)
	}

	retried := sagaCmd(t, nil, now, "sagas", "retry", parked, "--url", srv.URL)
	if retried.code != 0 || retried.out != "saga "+parked+" resumed (compensating); follow it with: orderflow sagas show "+parked+"\n" {
		t.Fatalf("retry: exit %d, stdout %q, stderr %q", retried.code, retried.out, retried.errOut)
	}
	shown := sagaCmd(t, nil, now, "sagas", "show", parked, "--database-url", d.url)
	matchLines(t, shown.out, []string{
		`^  status   compensating: destination_not_served \(after ShipmentRefused\), at reserve_inventory, for `,
		// In flight again; its last failure stays in sight.
		`^  ↺ undo reserve_inventory +compensating +░+ +\S+…  3 attempts \(1 retry\), 1 operator retry  … inventory  compensation_timeout: no answer after 2 attempts$`,
		`^ +\+\S+  SagaRetried +undo reserve_inventory from attempt #3 \(operator\)$`,
		`^ +\+\S+  CommandIssued +undo reserve_inventory → inventory\.release_stock #3$`,
	})
	again := sagaCmd(t, nil, now, "sagas", "retry", parked, "--url", srv.URL)
	if again.code != 1 || !strings.Contains(again.errOut, "answered 409: saga "+parked+" is compensating; only a failed saga can be retried") {
		t.Errorf("second retry: exit %d, stderr %q", again.code, again.errOut)
	}
}
