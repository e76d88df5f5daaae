package sagas_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/nats-io/nats.go/jetstream"

	engine "github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/gateway"
	"github.com/orderflow/orderflow/services/gateway/auth"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/natsbus"
	"github.com/orderflow/orderflow/services/internal/stacktest"
)

// consoleSecret signs the admin token the browser tests enter.
var consoleSecret = []byte("the console browser tests' secret, 32 bytes or more")

// findChromium returns the browser the tests drive: $CHROMIUM, else
// Debian's /usr/bin/chromium, else chromium on the PATH. Without one the
// test skips, saying how to get it (`make browser`, which `make test`
// runs first, installs it where it can).
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CHROMIUM=%s: %v", p, err)
		}
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("browser test skipped: no Chromium found (not at /usr/bin/chromium, CHROMIUM unset); `make browser` installs Debian's chromium when run as root with apt-get")
	return ""
}

// browser is a headless Chromium tab of its own profile, closed at the
// end of the test. What the page logs is kept and shown if the test fails;
// an uncaught exception or a Content-Security-Policy violation fails it.
type browser struct {
	ctx  context.Context
	mu   sync.Mutex
	logs []string
	bad  []string
}

func newBrowser(t *testing.T, path string) *browser {
	t.Helper()
	profile := t.TempDir() // removed after the browser has exited
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1366, 768),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{ctx: ctx}
	// The first action starts the browser; it must run on a context
	// without a deadline, which would end the browser with it.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1366, 768)); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			line := m.String()
			b.mu.Lock()
			b.logs = append(b.logs, line)
			if m.IsException() || strings.Contains(line, "Content Security Policy") {
				b.bad = append(b.bad, line)
			}
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, l := range b.bad {
			t.Errorf("page: %s", l)
		}
		if t.Failed() {
			for _, l := range b.logs {
				t.Logf("page console: %s", l)
			}
		}
	})
	return b
}

// do runs actions in the tab, each wait bounded by within.
func (b *browser) do(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, within)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitFor polls the JavaScript expression in the page until it is
// truthy; if it never is, the test fails with what the page shows.
func (b *browser) waitFor(t *testing.T, what, expr string) {
	t.Helper()
	// In rounds of a few seconds: a round that began in a page being
	// replaced (a navigation, a reload) fails or never answers, and the
	// next one runs in the new page.
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		_, err = chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(4*time.Second)))
		cancel()
		if err == nil {
			return
		}
		if b.ctx.Err() != nil {
			break
		}
	}
	dctx, dcancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer dcancel()
	page, derr := chromedp.Run(dctx, chromedp.Evaluate[string](`location.href + '\n' + document.body.innerText`))
	if derr != nil {
		page = derr.Error()
	}
	t.Fatalf("%s: %v; the page shows:\n%s", what, err, page)
}

// eval returns the value of a JavaScript expression in the page.
func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, within)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// screenshot writes the viewport to docs/console-name.png when
// UPDATE_SCREENSHOTS=1, for the README and docs.
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	if os.Getenv("UPDATE_SCREENSHOTS") != "1" {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, within)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join("..", "..", "docs", "console-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

// resolverFunc finds the stack's services for a gateway: at the address
// each runs on now.
type resolverFunc func(service string) []string

func (f resolverFunc) Instances(service string) []string { return f(service) }

// startConsoleGateway runs a gateway in front of s and returns its URL
// and an admin token it accepts.
func startConsoleGateway(t *testing.T, s *stack) (string, string) {
	t.Helper()
	g, err := gateway.New(context.Background(), gateway.Config{
		Resolver: resolverFunc(func(svc string) []string {
			if u, ok := s.base(svc); ok {
				return []string{u}
			}
			return nil
		}),
		JWTSecret: consoleSecret,
		Logger:    testLogger(t, "gateway"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	hs := httptest.NewServer(g.Handler())
	t.Cleanup(hs.Close)
	tok, err := auth.Sign(consoleSecret, auth.Principal{Subject: "operator", Role: auth.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return hs.URL, tok
}

// TestConsoleInBrowser drives the console in headless Chromium as an
// operator would: a wrong token is refused, the admin token signs in; the
// list, filtered to failed sagas, shows the saga parked on the
// cancellation of a shipment that shipping never answered; Retry resumes
// it and its row turns compensated without a reload. The saga's page
// draws its steps and its order's journey; a projection's replay runs to
// 100%. With UPDATE_SCREENSHOTS=1 it writes docs/console-*.png.
func TestConsoleInBrowser(t *testing.T) {
	chromium := findChromium(t) // first: skips at once without a browser
	s := newStack(t, patient, "orders", "inventory", "sagas")
	base, tok := startConsoleGateway(t, s)
	// After the gateway: the browser closes first, ending the updates
	// stream the gateway's server would otherwise wait for.
	b := newBrowser(t, chromium)

	// A saga parked as failed, as in TestCancelWhilePendingParksAndRetry:
	// shipping is down while the order is cancelled, and the commands
	// sent to it meanwhile are dropped, so only a retry can end it.
	s.Restock(t, "CONSOLE-1", 20)
	parked := s.placeOrder(t, "US", 2, "CONSOLE-1")
	coordinatortest.Eventually(t, within, "the shipment being scheduled", func() (bool, string) {
		var v stacktest.Saga
		s.GetJSON(t, "sagas", "/api/sagas/"+parked.SagaID, &v)
		return v.Status == "running" && v.CurrentStep == engine.StepScheduleShipment, v.Status + " " + v.CurrentStep
	})
	s.WaitOrder(t, parked.OrderID, "pending", "")
	s.Post(t, "orders", "/api/orders/"+parked.OrderID+"/cancel", `{}`, http.StatusAccepted, nil)
	s.WaitSagaAt(t, "sagas", parked.SagaID, "failed", engine.StepScheduleShipment)
	ctx := context.Background()
	commands, err := s.js.Stream(ctx, natsbus.CommandsStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := commands.Purge(ctx, jetstream.WithPurgeSubject("commands.shipping.>")); err != nil {
		t.Fatal(err)
	}
	s.start("shipping")
	// Neighbours in the list: one saga completes, one is compensated.
	done := s.placeOrder(t, "US", 1, "CONSOLE-1")
	refused := s.placeOrder(t, "BR", 1, "CONSOLE-1")
	s.WaitSaga(t, "sagas", done.SagaID, "completed")
	s.WaitSaga(t, "sagas", refused.SagaID, "compensated")
	if v := s.WaitSaga(t, "sagas", parked.SagaID, "failed"); v.Status != "failed" {
		t.Fatalf("saga %s %s before the retry, want failed", parked.SagaID, v.Status)
	}

	// Sign in: a token the gateway refuses is asked for again.
	b.do(t, "open the console", chromedp.Navigate(base+"/console"), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.do(t, "enter a wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "not-a-token"), chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)))
	b.waitFor(t, "the wrong token refused", `document.querySelector('#login-error').textContent.includes('refused')`)
	// The keyboard's way: Enter in the field.
	b.do(t, "enter the admin token", chromedp.SendKeys(chromedp.CSS("#token"), tok+kb.Enter))
	row := fmt.Sprintf(`tr[data-saga-id=%q]`, parked.SagaID)
	b.waitFor(t, "the saga list", fmt.Sprintf(`document.querySelectorAll('#saga-rows tr[data-saga-id]').length === 3 && !!document.querySelector('%s')`, row))
	if got := eval[string](t, b, `sessionStorage.getItem('orderflow.console.token')`); got != tok {
		t.Errorf("token kept for the tab: %q", got)
	}
	b.waitFor(t, "the failed count", `document.querySelector('.count.failed b').textContent === '1'`)
	b.screenshot(t, "sagas")

	// The type and age filters go to the list's query and the address.
	b.do(t, "filter by type and age", chromedp.Evaluate[chromedp.Void](`for (const [id, v] of [['#f-type', 'order_fulfillment'], ['#f-age', '15m']]) {
		const s = document.querySelector(id); s.value = v; s.dispatchEvent(new Event('change'));
	}`))
	b.waitFor(t, "the filtered list", `location.hash === '#/sagas?type=order_fulfillment&age=15m' && document.querySelectorAll('#saga-rows tr[data-saga-id]').length === 3`)

	// Only the failed ones, then retry ours.
	b.do(t, "filter the failed sagas", chromedp.Click(chromedp.CSS(".count.failed")))
	b.waitFor(t, "only the failed saga listed", fmt.Sprintf(
		`location.hash === '#/sagas?status=failed&type=order_fulfillment&age=15m' && document.querySelectorAll('#saga-rows tr[data-saga-id]').length === 1 && document.querySelector('%s').dataset.status === 'failed'`, row))
	b.do(t, "press Retry", chromedp.Click(chromedp.CSS(row+" button.retry")))
	b.waitFor(t, "the row turning compensated", fmt.Sprintf(`(document.querySelector('%s') || {dataset: {}}).dataset.status === 'compensated'`, row))
	// Nothing reloaded the counts since the view opened: the updates
	// stream brought the new ones.
	b.waitFor(t, "the live stream", `document.querySelector('#live').textContent === 'live'`)
	b.waitFor(t, "the failed count updated live", `document.querySelector('.count.failed b').textContent === '0' && document.querySelector('.count.compensated b').textContent === '2'`)
	v := s.WaitSaga(t, "sagas", parked.SagaID, "compensated")
	if !v.Has(engine.TypeSagaRetried, "step", engine.StepScheduleShipment) {
		t.Errorf("history lacks the console's retry: %v", v.Events())
	}

	// The saga's page: a bar per step, who answered, the compensation.
	b.do(t, "open the saga", chromedp.Click(chromedp.CSS(row+" a")))
	b.waitFor(t, "the timeline", `document.querySelectorAll('.tl-row').length === 3`)
	for _, tt := range []struct{ step, status, info string }{
		{engine.StepReserveInventory, "compensated", "answered by inventory"},
		{engine.StepScheduleShipment, "compensated", "answered by shipping"},
		{engine.StepConfirmOrder, "skipped", "not started"},
	} {
		got := eval[[]string](t, b, fmt.Sprintf(`(() => { const r = document.querySelector('.tl-row[data-step=%q]'); return r ? [r.dataset.status, r.querySelector('.tl-info').textContent] : ['', '']; })()`, tt.step))
		if got[0] != tt.status || !strings.Contains(got[1], tt.info) {
			t.Errorf("timeline row %s: %q, want status %s and %q", tt.step, got, tt.status, tt.info)
		}
	}
	if n := eval[int](t, b, `document.querySelectorAll('.tl-row[data-step="schedule_shipment"] .tl-comp').length`); n != 1 {
		t.Errorf("schedule_shipment shows %d compensation bars, want 1", n)
	}
	b.waitFor(t, "the journey", `document.querySelectorAll('#journey details').length >= 4`)
	types := eval[[]string](t, b, `[...document.querySelectorAll('#journey details')].map(d => d.dataset.type)`)
	if types[0] != "OrderPlaced" {
		t.Errorf("journey starts with %s, want OrderPlaced: %v", types[0], types)
	}
	b.do(t, "expand the first event", chromedp.Click(chromedp.CSS("#journey details summary")))
	if meta := eval[string](t, b, `document.querySelector('#journey details[open] pre[aria-label="metadata"]').textContent`); !strings.Contains(meta, "correlation_id") {
		t.Errorf("the expanded event's metadata %s lacks the correlation id", meta)
	}
	b.screenshot(t, "saga")

	b.do(t, "open the definitions", chromedp.Navigate(base+"/console#/definitions"))
	b.waitFor(t, "the definition's graph", `document.querySelectorAll('svg[data-type="order_fulfillment"] rect').length >= 3`)
	b.screenshot(t, "definitions")

	// A replay, followed to 100%.
	b.do(t, "open the projections", chromedp.Navigate(base+"/console#/projections"))
	b.waitFor(t, "the projections", `document.querySelectorAll('#projection-rows tr').length > 0`)
	name := eval[string](t, b, `(() => { const rows = [...document.querySelectorAll('#projection-rows tr')]; const r = rows.find(r => r.dataset.projection.includes('order')) || rows[0]; return r.dataset.projection; })()`)
	before := projectionVersion(t, base, tok, name)
	sel := fmt.Sprintf(`tr[data-projection=%q]`, name)
	b.do(t, "press Replay", chromedp.Click(chromedp.CSS(sel+" button")))
	b.waitFor(t, "the replay at 100%", fmt.Sprintf(`(document.querySelector('%s .pct') || {dataset: {}}).dataset.percent === '100'`, sel))
	if after := projectionVersion(t, base, tok, name); after <= before {
		t.Errorf("projection %s version %d after the replay, %d before: nothing swapped in", name, after, before)
	}
	b.screenshot(t, "projections")

	// A token the gateway stops accepting sends the operator back to the
	// sign-in, which says why.
	// (Set on a page of the same origin without the console's script, so
	// that no request of the console's in flight meets it first.)
	b.do(t, "spoil the kept token and come back", chromedp.Navigate(base+"/console/icon.svg"),
		chromedp.Evaluate[chromedp.Void](`sessionStorage.setItem('orderflow.console.token', 'expired')`),
		chromedp.Navigate(base+"/console/#/sagas"))
	b.waitFor(t, "the sign-in again", `!document.querySelector('#login').hidden && document.querySelector('#login-error').textContent.includes('refused') && sessionStorage.getItem('orderflow.console.token') === null`)
}

// projectionVersion reads the active version of a projection through the
// gateway.
func projectionVersion(t *testing.T, base, tok, name string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/admin/projections", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var list struct {
		Items []struct {
			Name          string `json:"name"`
			ActiveVersion int    `json:"active_version"`
		} `json:"items"`
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /admin/projections: %s", res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	for _, it := range list.Items {
		if it.Name == name {
			return it.ActiveVersion
		}
	}
	t.Fatalf("no projection %s in %+v", name, list.Items)
	return 0
}
