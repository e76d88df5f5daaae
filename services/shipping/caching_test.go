package shipping_test

import (
	"net/http"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

// TestShipmentCaching: a shipment answers an ETag from its version and
// If-None-Match with 304 until its dispatch changes it. Lists are not to
// be stored.
func TestShipmentCaching(t *testing.T) {
	env := servetest.Start(t, "shipping")
	orderID := uuid.NewString()
	id := scheduleFor(t, env, orderID, "US")
	path := "/api/shipments/" + id
	readShipment(t, env, id, func(shipmentView) bool { return true })
	env.WantVersioned(t, path, 1)

	if res := env.Post(t, path+"/dispatch", `{}`); res.Status != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", res.Status, res.Body)
	}
	readShipment(t, env, id, func(v shipmentView) bool { return v.Version == 2 })
	res := env.WantVersioned(t, path, 2)
	var v shipmentView
	res.JSON(t, &v)
	if v.Status != "dispatched" {
		t.Fatalf("shipment %+v, want dispatched", v)
	}

	env.Get(t, "/api/shipments/"+uuid.NewString(), "If-None-Match", "*").WantProblem(t, http.StatusNotFound, httpx.SlugNotFound)
	for _, list := range []string{"/api/shipments", "/api/shipments?order_id=" + orderID} {
		env.WantNoStore(t, list)
	}
}
