package httpx

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/domain"
)

// shelf is a tiny read model: a name per id, and a failure to answer with.
type shelf struct {
	items map[string]string
	err   error
}

func getThing(_ context.Context, db shelf, id string) (string, error) {
	if db.err != nil {
		return "", db.err
	}
	v, ok := db.items[id]
	if !ok {
		return "", fmt.Errorf("get %s: %w", id, domain.ErrNotFound)
	}
	return v, nil
}

// listThings returns up to limit ids that start with prefix, continuing after
// the name in after ("x" is a cursor it does not know).
func listThings(_ context.Context, db shelf, prefix string, limit int, after string) ([]string, string, error) {
	if db.err != nil {
		return nil, "", db.err
	}
	if after == "x" {
		v := &domain.ValidationError{}
		v.Add("after", "is not a cursor")
		return nil, "", v.Err()
	}
	var out []string
	for _, id := range []string{"a1", "a2", "b1"} {
		if strings.HasPrefix(id, prefix) && id > after {
			out = append(out, id)
		}
	}
	next := ""
	if len(out) > limit {
		out, next = out[:limit], out[limit-1]
	}
	return out, next, nil
}

func prefixFilter(params url.Values) (string, error) {
	p := params.Get("prefix")
	if p == "!" {
		v := &domain.ValidationError{}
		v.Add("prefix", "is bad")
		return "", v.Err()
	}
	return p, nil
}

func TestGetAndListHandlers(t *testing.T) {
	ok := shelf{items: map[string]string{"a1": "apple"}}
	down := shelf{err: errors.New("database down")}
	routes := func(db shelf) http.Handler {
		r := chi.NewRouter()
		r.Get("/things", ListHandler(db, prefixFilter, listThings))
		r.Get("/plain", ListHandler(db, nil, func(ctx context.Context, db shelf, _ struct{}, limit int, after string) ([]string, string, error) {
			return listThings(ctx, db, "", limit, after)
		}))
		r.Get("/things/{id}", VersionedGetHandler(db, "id", "thing", getThing, func(string) int64 { return 1 }))
		return r
	}
	tests := []struct {
		name   string
		db     shelf
		path   string
		status int
		body   string   // exact JSON answer, for 200s
		fields []string // the problem's fields, for 400s
	}{
		{"get", ok, "/things/a1", 200, `"apple"`, nil},
		{"get unknown", ok, "/things/zz", 404, "", nil},
		{"get failing", down, "/things/a1", 500, "", nil},
		{"list", ok, "/things", 200, `{"items":["a1","a2","b1"],"next":""}`, nil},
		{"list filtered", ok, "/things?prefix=a", 200, `{"items":["a1","a2"],"next":""}`, nil},
		{"list first page", ok, "/things?limit=2", 200, `{"items":["a1","a2"],"next":"a2"}`, nil},
		{"list next page", ok, "/things?limit=2&after=a2", 200, `{"items":["b1"],"next":""}`, nil},
		{"list empty", ok, "/things?prefix=c", 200, `{"items":[],"next":""}`, nil},
		{"list without filter", ok, "/plain?prefix=!&limit=1", 200, `{"items":["a1"],"next":"a1"}`, nil},
		{"bad limit", ok, "/things?limit=0", 400, "", []string{"limit"}},
		{"bad limit and filter", ok, "/things?limit=x&prefix=!", 400, "", []string{"limit", "prefix"}},
		{"bad cursor", ok, "/things?after=x", 400, "", []string{"after"}},
		{"bad filter hides cursor", ok, "/things?after=x&prefix=!", 400, "", []string{"prefix"}},
		{"list failing", down, "/things", 500, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rr := httptest.NewRecorder()
			routes(tt.db).ServeHTTP(rr, httptest.NewRequest(http.MethodGet, tt.path, nil))
			res := rr.Result()
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.status, rr.Body)
			}
			if tt.status == http.StatusOK {
				if got := strings.TrimSpace(rr.Body.String()); got != tt.body {
					t.Fatalf("body %s, want %s", got, tt.body)
				}
				return
			}
			p := decodeProblem(t, res)
			got := make([]string, len(p.Errors))
			for i, f := range p.Errors {
				got[i] = f.Field
			}
			if strings.Join(got, ",") != strings.Join(tt.fields, ",") {
				t.Fatalf("problem fields %v, want %v: %+v", got, tt.fields, p)
			}
			if tt.status == http.StatusNotFound && !strings.Contains(p.Detail, `no thing with id "zz"`) {
				t.Fatalf("404 detail %q does not name the thing", p.Detail)
			}
		})
	}
}
