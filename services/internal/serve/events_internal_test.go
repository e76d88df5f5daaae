package serve

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
)

// TestAdminEventsWithoutFinder: a store that cannot find events by
// correlation id (KurrentDB) is a 501 problem, not a 500 or an empty
// list that would look like a journey without events.
func TestAdminEventsWithoutFinder(t *testing.T) {
	r := chi.NewRouter()
	eventRoutes(r, "orders", struct{}{})
	tests := []struct {
		query string
		want  int
	}{
		{"correlation_id=abc", http.StatusNotImplemented},
		{"", http.StatusBadRequest},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/admin/events?"+tt.query, nil))
		if rec.Code != tt.want || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/problem+json") {
			t.Errorf("?%s: %d %s %s, want %d problem", tt.query, rec.Code, rec.Header().Get("Content-Type"), rec.Body, tt.want)
		}
	}
}
