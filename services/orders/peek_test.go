package orders_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

func TestPeek(t *testing.T) {
	env := servetest.Start(t, "orders")
	p := place(t, env)
	for _, r := range []servetest.Response{
		env.Post(t, "/api/orders/"+uuid.NewString()+"/cancel", `{}`),
		env.Post(t, "/api/orders/"+p.OrderID+"/cancel", `{}`),
		env.Post(t, "/api/orders/"+p.OrderID+"/cancel", `{}`),
		env.Post(t, "/api/orders", `{"items":[{"sku":"a","quantity":"x"}]}`),
		env.Post(t, "/api/orders", `{}`),
		env.Post(t, "/api/orders", `{"a":`),
	} {
		t.Logf("%d %v %s", r.Status, r.Header, r.Body)
	}
}
