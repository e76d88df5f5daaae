package orders_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

// TestOrderCaching: an order answers an ETag from its version and
// If-None-Match with 304 until it changes; then the old tag gets the new
// order. Lists are not to be stored.
func TestOrderCaching(t *testing.T) {
	env := servetest.Start(t, "orders")
	p := place(t, env)
	path := "/api/orders/" + p.OrderID
	env.Eventually(t, 10*time.Second, path, func(r servetest.Response) bool { return r.Status == http.StatusOK })
	env.WantVersioned(t, path, 1)

	if res := env.Post(t, path+"/cancel", `{}`); res.Status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", res.Status, res.Body)
	}
	env.Eventually(t, 10*time.Second, path, func(r servetest.Response) bool {
		var v orderView
		r.JSON(t, &v)
		return v.Version == 2
	})
	// The tag of the pending order no longer matches: the cancelled order
	// comes back in full, under its new tag.
	res := env.WantVersioned(t, path, 2)
	var v orderView
	res.JSON(t, &v)
	if v.Status != "cancelled" {
		t.Fatalf("order %+v, want cancelled", v)
	}

	// A precondition is only for a resource that exists.
	env.Get(t, "/api/orders/"+uuid.NewString(), "If-None-Match", "*").WantProblem(t, http.StatusNotFound, httpx.SlugNotFound)

	for _, list := range []string{"/api/orders", "/api/orders?customer_id=c-42&status=cancelled&limit=1"} {
		env.WantNoStore(t, list)
	}
}
