package inventory_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

// TestStockCaching: a stock item answers an ETag from its version and
// If-None-Match with 304 until a restock changes it. Lists are not to be
// stored.
func TestStockCaching(t *testing.T) {
	env := servetest.Start(t, "inventory")
	const path = "/api/inventory/SKU-C"
	restock(t, env, "SKU-C", 5)
	env.Eventually(t, 10*time.Second, path, func(r servetest.Response) bool { return r.Status == http.StatusOK })
	env.WantVersioned(t, path, 1)

	restock(t, env, "SKU-C", 7)
	env.Eventually(t, 10*time.Second, path, func(r servetest.Response) bool {
		var s stockItem
		r.JSON(t, &s)
		return s.Version == 2
	})
	res := env.WantVersioned(t, path, 2)
	var s stockItem
	res.JSON(t, &s)
	if s.OnHand != 12 {
		t.Fatalf("stock %+v, want 12 on hand", s)
	}

	env.Get(t, "/api/inventory/SKU-NONE", "If-None-Match", "*").WantProblem(t, http.StatusNotFound, httpx.SlugNotFound)
	for _, list := range []string{"/api/inventory", "/api/inventory?limit=1"} {
		env.WantNoStore(t, list)
	}
}
