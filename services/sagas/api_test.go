package sagas_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain/order"
	engine "github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/sagas/sagatest"
	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

// placedAt is when the orders of the sagas under test were placed.
var placedAt = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// startSaga starts an order_fulfillment saga of a new order with the
// default timing, the one the service runs with.
func startSaga(t *testing.T, at time.Time) *sagatest.Saga {
	t.Helper()
	orderID := uuid.NewString()
	return sagatest.Start(t, engine.OrderFulfillmentV1(engine.DefaultTiming()), engine.SagaID(orderID), coordinatortest.Placed(orderID, "US", placedAt), at)
}

// park lets the saga's deadlines pass, answering only the order's
// rejection, until the release of its reservation parks it as failed.
func park(t *testing.T, sg *sagatest.Saga) {
	t.Helper()
	for range 30 {
		if sg.State.Status() == engine.StatusFailed {
			return
		}
		if c := sg.Pending(); c.Name == "reject_order" {
			sagatest.Reply(order.TypeOrderRejected, order.OrderRejected{OrderID: sg.State.OrderID(), Reason: "step_timeout"})(sg)
			continue
		}
		sagatest.Expire()(sg)
	}
	t.Fatalf("the saga is %s, not failed", sg.State.Status())
}

// TestSagasAPI checks the sagas endpoints against the contract on a
// sagas service that runs without NATS (no coordinator consumes events;
// the sagas are written to its store as the coordinator writes them).
func TestSagasAPI(t *testing.T) {
	env := servetest.Start(t, "sagas")
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	running := startSaga(t, t0)
	coordinatortest.Append(t, env.Store, running)
	failed := startSaga(t, t0.Add(time.Second))
	park(t, failed)
	coordinatortest.Append(t, env.Store, failed)
	third := startSaga(t, t0.Add(2*time.Second))
	coordinatortest.Append(t, env.Store, third)
	id := running.State.ID()

	t.Run("get", func(t *testing.T) {
		res := env.Get(t, "/api/sagas/"+id)
		if res.Status != http.StatusOK {
			t.Fatalf("%d %s", res.Status, res.Body)
		}
		var v sagaView
		res.JSON(t, &v)
		if v.SagaID != id || v.Status != engine.StatusRunning || v.CurrentStep != engine.StepReserveInventory ||
			v.OrderID != running.State.OrderID() || len(v.Steps) != 3 || len(v.History) != len(running.Events) || v.CorrelationID != id {
			t.Errorf("view %+v", v)
		}
		if etag := res.Header.Get("ETag"); etag != `"2"` {
			t.Errorf("ETag %q, want the stream's version, \"2\"", etag)
		}
		upper := env.Get(t, "/api/sagas/"+strings.ToUpper(id))
		if upper.Status != http.StatusOK {
			t.Errorf("upper-case id: %d", upper.Status)
		}
	})

	t.Run("conditional get", func(t *testing.T) {
		for _, tt := range []struct {
			ifNoneMatch string
			want        int
		}{
			{`"2"`, http.StatusNotModified},
			{`W/"2"`, http.StatusNotModified},
			{`"1", "2"`, http.StatusNotModified},
			{`*`, http.StatusNotModified},
			{`"1"`, http.StatusOK},
		} {
			res := env.Get(t, "/api/sagas/"+id, "If-None-Match", tt.ifNoneMatch)
			if res.Status != tt.want || (tt.want == http.StatusNotModified && len(res.Body) != 0) {
				t.Errorf("If-None-Match %s: %d %s, want %d", tt.ifNoneMatch, res.Status, res.Body, tt.want)
			}
		}
	})

	t.Run("not found", func(t *testing.T) {
		for _, path := range []string{"/api/sagas/" + uuid.NewString(), "/api/sagas/not-a-uuid", "/api/sagas/" + engine.ShipmentID(id)} {
			env.Get(t, path).WantProblem(t, http.StatusNotFound, httpx.SlugNotFound)
		}
	})

	t.Run("list", func(t *testing.T) {
		env.Eventually(t, 30*time.Second, "/api/sagas", func(r servetest.Response) bool {
			var p httpx.Page[listedSaga]
			r.JSON(t, &p)
			return len(p.Items) == 3
		})
		items, sizes := servetest.Pages[listedSaga](t, env, "/api/sagas?limit=2")
		if len(sizes) != 2 || sizes[0] != 2 || sizes[1] != 1 {
			t.Errorf("page sizes %v, want [2 1]", sizes)
		}
		// Newest first.
		if len(items) != 3 || items[0].SagaID != third.State.ID() || items[1].SagaID != failed.State.ID() || items[2].SagaID != id {
			t.Errorf("items %+v", items)
		}
		for _, tt := range []struct {
			query string
			want  []string
		}{
			{"status=failed", []string{failed.State.ID()}},
			{"status=running", []string{third.State.ID(), id}},
			{"status=completed", nil},
			{"order_id=" + running.State.OrderID(), []string{id}},
			{"order_id=" + strings.ToUpper(running.State.OrderID()), []string{id}},
			{"order_id=" + uuid.NewString(), nil},
			{"status=running&order_id=" + third.State.OrderID(), []string{third.State.ID()}},
		} {
			got, _ := servetest.Pages[listedSaga](t, env, "/api/sagas?"+tt.query)
			var ids []string
			for _, s := range got {
				ids = append(ids, s.SagaID)
			}
			if strings.Join(ids, ",") != strings.Join(tt.want, ",") {
				t.Errorf("%s: %v, want %v", tt.query, ids, tt.want)
			}
		}
		if res := env.Get(t, "/api/sagas"); res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control %q", res.Header.Get("Cache-Control"))
		}
		bad := append(servetest.BadLimits(),
			servetest.BadQuery{Name: "unknown status", Query: "status=done", Fields: []string{"status"}},
			servetest.BadQuery{Name: "order id not a uuid", Query: "order_id=42", Fields: []string{"order_id"}},
			servetest.BadQuery{Name: "bad cursor", Query: "after=xyz", Fields: []string{"after"}},
			servetest.BadQuery{Name: "several", Query: "status=done&order_id=42&limit=0", Fields: []string{"limit", "status", "order_id"}},
		)
		env.WantBadQueries(t, "/api/sagas", bad)
	})

	t.Run("retry", func(t *testing.T) {
		env.Post(t, "/api/sagas/"+id+"/retry", `{}`).WantProblem(t, http.StatusConflict, httpx.SlugIllegalState)
		env.Post(t, "/api/sagas/"+uuid.NewString()+"/retry", `{}`).WantProblem(t, http.StatusNotFound, httpx.SlugNotFound)
		env.Post(t, "/api/sagas/"+id+"/retry", `{"force": true}`).WantProblem(t, http.StatusBadRequest, httpx.SlugValidation)

		stream := engine.Stream(failed.State.ID())
		before := len(env.Events(t, stream))
		res := env.Post(t, "/api/sagas/"+failed.State.ID()+"/retry", `{}`)
		if res.Status != http.StatusAccepted || res.Header.Get("Location") != "/api/sagas/"+failed.State.ID() {
			t.Fatalf("%d %s (Location %q)", res.Status, res.Body, res.Header.Get("Location"))
		}
		var body struct {
			SagaID string `json:"saga_id"`
			Status string `json:"status"`
		}
		res.JSON(t, &body)
		if body.SagaID != failed.State.ID() || body.Status != string(engine.StatusCompensating) {
			t.Errorf("answer %+v", body)
		}
		// The parked release is sent again, caused by the request.
		evs := env.Events(t, stream)[before:]
		if len(evs) != 2 || evs[0].Type != engine.TypeSagaRetried || evs[1].Type != engine.TypeCommandIssued {
			t.Fatalf("appended %v", evs)
		}
		var c engine.CommandIssued
		if err := json.Unmarshal(evs[1].Data, &c); err != nil {
			t.Fatal(err)
		}
		if c.Context+"."+c.Name != "inventory.release_stock" || evs[1].Metadata.CorrelationID != failed.State.ID() || evs[1].Metadata.CausationID == "" {
			t.Errorf("command %s.%s, metadata %+v", c.Context, c.Name, evs[1].Metadata)
		}
		env.Post(t, "/api/sagas/"+failed.State.ID()+"/retry", `{}`).WantProblem(t, http.StatusConflict, httpx.SlugIllegalState)
	})
}

// TestEveryCommandDecodes checks the contract between the saga
// definitions and the services: every command a definition the
// coordinator runs can send (its steps, compensations and closing action)
// decodes with the commands catalog of its receiver, under the same
// context, name and schema version.
func TestEveryCommandDecodes(t *testing.T) {
	orderID := uuid.NewString()
	input, err := json.Marshal(coordinatortest.Placed(orderID, "US", placedAt))
	if err != nil {
		t.Fatal(err)
	}
	def := engine.OrderFulfillmentV1(engine.DefaultTiming())
	data := engine.Data{SagaID: engine.SagaID(orderID), Input: input, Reason: "cancelled_by_customer"}
	var cmds []engine.Command
	for _, s := range def.Steps {
		cmds = append(cmds, s.Command)
		if s.Compensation != nil {
			cmds = append(cmds, s.Compensation.Command)
		}
	}
	if def.Closing != nil {
		cmds = append(cmds, def.Closing.Command)
	}
	seen := map[commands.Kind]bool{}
	for _, c := range cmds {
		t.Run(c.Context+"."+c.Name, func(t *testing.T) {
			v, err := c.Payload(data)
			if err != nil {
				t.Fatal(err)
			}
			payload, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			w := commands.Wire{Context: c.Context, Name: c.Name, Version: c.Version, CommandID: uuid.NewString(), Payload: payload}
			got, err := commands.Decode(w)
			if err != nil {
				t.Fatalf("%s: %v", payload, err)
			}
			// What decodes encodes back to the same payload: no field the
			// saga sends is lost on the way.
			back, err := commands.Encode(got)
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			if json.Unmarshal(payload, &a) != nil || json.Unmarshal(back.Payload, &b) != nil || !jsonEqual(a, b) {
				t.Errorf("sent %s, the receiver reads %s", payload, back.Payload)
			}
			seen[w.Kind()] = true
		})
	}
	// Every command the catalog knows is one the saga sends, except the
	// customer's cancel, which the orders service takes over HTTP.
	for _, k := range commands.Commands().Kinds() {
		if !seen[k] && k != commands.KindCancelOrder {
			t.Errorf("the catalog's %s is sent by no step", k)
		}
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
