package serve_test

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/services/internal/serve"
	"github.com/orderflow/orderflow/services/internal/serve/servetest"
)

// TestEveryModuleIsWired starts every service of the registry and checks
// that what runs is what its module declares: the shared endpoints, its
// own routes (each documented in openapi.yaml, none served by two
// services, and every documented operation on the API resources it serves
// present), and its read models, installed and listed by the operations
// API under the names the module gives them.
func TestEveryModuleIsWired(t *testing.T) {
	contract, err := servetest.LoadContract()
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, op := range contract.Operations() {
		documented[operation(op)] = true
	}
	shared := []string{"GET /healthz", "GET /readyz", "GET /metrics", "GET /admin/projections", "POST /admin/projections/{}/replay", "GET /admin/events"}

	modules := serve.Modules()
	var names []string
	for _, m := range modules {
		names = append(names, m.Name)
	}
	// The services the API contract has served from the start; others
	// join them with their module.
	for _, want := range []string{"orders", "inventory", "shipping"} {
		if !slices.Contains(names, want) {
			t.Errorf("the registry lacks %s: %v", want, names)
		}
	}
	if sorted := slices.Sorted(slices.Values(names)); !slices.Equal(serve.Names(), sorted) {
		t.Errorf("Names() = %v, want %v", serve.Names(), sorted)
	}

	servedBy := map[string]string{} // operation -> service
	for _, m := range modules {
		t.Run(m.Name, func(t *testing.T) {
			if got, ok := serve.Lookup(m.Name); !ok || got.Name != m.Name || got.Port != m.Port {
				t.Errorf("Lookup(%q) = %+v, %v", m.Name, got, ok)
			}
			env := servetest.Start(t, m.Name)
			routes := walk(t, env.Handler)
			for _, op := range shared {
				if !routes[op] {
					t.Errorf("shared endpoint %s not served", op)
				}
			}
			own := map[string]bool{}
			resources := map[string]bool{}
			for op := range routes {
				if slices.Contains(shared, op) {
					continue
				}
				own[op] = true
				if !documented[op] {
					t.Errorf("%s is served but not in openapi.yaml", op)
				}
				if other, ok := servedBy[op]; ok {
					t.Errorf("%s is served by %s too", op, other)
				}
				servedBy[op] = m.Name
				if r := resource(op); r != "" {
					resources[r] = true
				}
			}
			if len(own) == 0 {
				t.Fatal("the module serves no routes of its own")
			}
			for op := range documented {
				if resources[resource(op)] && !own[op] {
					t.Errorf("%s is documented but not served", op)
				}
			}

			var want []string
			for _, rm := range m.ReadModels {
				if got := rm.New().Name(); got != rm.Name {
					t.Errorf("read model %s builds a projection named %s", rm.Name, got)
				}
				want = append(want, rm.Name)
			}
			var list struct {
				Items []projectionItem `json:"items"`
			}
			env.Get(t, "/admin/projections").JSON(t, &list)
			var got []string
			for _, it := range list.Items {
				got = append(got, it.Name)
				if it.ActiveVersion != 1 {
					t.Errorf("read model %s: active version %d, want 1 (installed at start)", it.Name, it.ActiveVersion)
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Errorf("operations API lists read models %v, the module declares %v", got, want)
			}
		})
	}
}

var pathParam = regexp.MustCompile(`\{[^}]*\}`)

// operation writes "METHOD /path/{param}" with its parameters unnamed, so
// that the router's and the document's spellings compare.
func operation(op string) string { return pathParam.ReplaceAllString(op, "{}") }

// resource returns the API resource of an operation, "orders" for
// "GET /api/orders/{}", or "" outside /api.
func resource(op string) string {
	_, path, _ := strings.Cut(op, " ")
	rest, ok := strings.CutPrefix(path, "/api/")
	if !ok {
		return ""
	}
	r, _, _ := strings.Cut(rest, "/")
	return r
}

// walk lists the operations h, a chi router, serves.
func walk(t *testing.T, h http.Handler) map[string]bool {
	t.Helper()
	r, ok := h.(chi.Routes)
	if !ok {
		t.Fatalf("the handler is a %T, not a chi router", h)
	}
	ops := map[string]bool{}
	err := chi.Walk(r, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		ops[operation(method+" "+route)] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ops
}
