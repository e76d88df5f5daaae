package inventory_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

type stockItem struct {
	SKU       string    `json:"sku"`
	OnHand    int64     `json:"on_hand"`
	Reserved  int64     `json:"reserved"`
	Available int64     `json:"available"`
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
}

func restock(t *testing.T, env *servetest.Env, sku string, qty int) {
	t.Helper()
	res := env.Post(t, "/api/inventory/"+sku+"/restock", fmt.Sprintf(`{"quantity": %d}`, qty))
	if res.Status != http.StatusAccepted {
		t.Fatalf("restock %s: %d %s", sku, res.Status, res.Body)
	}
}

// TestRestockThenRead: a restock is visible on the query side within a
// second, with every field of the contract.
func TestRestockThenRead(t *testing.T) {
	env := servetest.Start(t, "inventory")
	start := time.Now()
	restock(t, env, "SKU-1", 50)
	res := env.Eventually(t, 10*time.Second, "/api/inventory/SKU-1", func(r servetest.Response) bool {
		return r.Status == http.StatusOK
	})
	var got stockItem
	res.JSON(t, &got)
	if got.SKU != "SKU-1" || got.OnHand != 50 || got.Reserved != 0 || got.Available != 50 || got.Version != 1 {
		t.Fatalf("stock %+v", got)
	}
	if !strings.Contains(string(res.Body), `Z"`) || got.UpdatedAt.Location() != time.UTC ||
		got.UpdatedAt.Before(start.Add(-time.Minute)) || got.UpdatedAt.After(time.Now().Add(time.Minute)) {
		t.Fatalf("updated_at %v is not a recent UTC time: %s", got.UpdatedAt, res.Body)
	}

	restock(t, env, "SKU-1", 25)
	env.Eventually(t, 10*time.Second, "/api/inventory/SKU-1", func(r servetest.Response) bool {
		var s stockItem
		r.JSON(t, &s)
		return s.OnHand == 75 && s.Available == 75 && s.Version == 2
	})
}

func TestReadUnknownStock(t *testing.T) {
	env := servetest.Start(t, "inventory")
	restock(t, env, "SKU-1", 5)
	for _, sku := range []string{"SKU-2", "sku-1", "bad!", strings.Repeat("s", 65)} {
		t.Run(sku, func(t *testing.T) {
			env.Get(t, "/api/inventory/"+url.PathEscape(sku)).WantProblem(t, http.StatusNotFound, httpx.SlugNotFound)
		})
	}
}

// TestListStock pages through every sku, in sku order, following the next
// cursors.
func TestListStock(t *testing.T) {
	env := servetest.Start(t, "inventory")
	var want []string
	for i := range 7 {
		sku := fmt.Sprintf("SKU-%02d", 7-i) // restocked out of order
		restock(t, env, sku, i+1)
		want = append(want, sku)
	}
	slices.Sort(want)

	all := env.Eventually(t, 10*time.Second, "/api/inventory", func(r servetest.Response) bool {
		var p httpx.Page[stockItem]
		r.JSON(t, &p)
		return len(p.Items) == 7
	})
	var first httpx.Page[stockItem]
	all.JSON(t, &first)
	if first.Next != "" {
		t.Fatalf("one page holds all 7 skus but next is %q", first.Next)
	}
	// An empty limit is the default, like an absent one.
	if res := env.Get(t, "/api/inventory?limit="); res.Status != http.StatusOK || string(res.Body) != string(all.Body) {
		t.Fatalf("limit=: %d %s", res.Status, res.Body)
	}

	items, sizes := servetest.Pages[stockItem](t, env, "/api/inventory?limit=3")
	var got []string
	for _, it := range items {
		got = append(got, it.SKU)
	}
	if !slices.Equal(got, want) || !slices.Equal(sizes, []int{3, 3, 1}) {
		t.Fatalf("pages of %v held %v, want %v", sizes, got, want)
	}
}

func TestListStockBadParameters(t *testing.T) {
	env := servetest.Start(t, "inventory")
	env.WantBadQueries(t, "/api/inventory", append(servetest.BadLimits(), []servetest.BadQuery{
		{Name: "after garbage", Query: "after=%25%25%25", Fields: []string{"after"}},
		{Name: "after not ours", Query: "after=eyJ4IjoxfQ", Fields: []string{"after"}},
	}...))
}
