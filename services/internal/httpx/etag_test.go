package httpx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/domain"
)

func TestETag(t *testing.T) {
	for _, tt := range []struct {
		version int64
		want    string
	}{
		{1, `"1"`},
		{7, `"7"`},
		{1234567890123, `"1234567890123"`},
	} {
		if got := ETag(tt.version); got != tt.want {
			t.Errorf("ETag(%d) = %s, want %s", tt.version, got, tt.want)
		}
	}
}

func TestNoneMatch(t *testing.T) {
	tests := []struct {
		name   string
		header []string // If-None-Match lines; none when nil
		etag   string
		want   bool
	}{
		{"no header", nil, `"7"`, false},
		{"empty", []string{""}, `"7"`, false},
		{"same tag", []string{`"7"`}, `"7"`, true},
		{"other tag", []string{`"6"`}, `"7"`, false},
		{"prefix is not the tag", []string{`"17"`}, `"7"`, false},
		{"unquoted", []string{`7`}, `"7"`, false},
		{"weak matches strong", []string{`W/"7"`}, `"7"`, true},
		{"lower-case w is no weak prefix", []string{`w/"7"`}, `"7"`, false},
		{"any", []string{`*`}, `"7"`, true},
		{"list", []string{`"5", "6", "7"`}, `"7"`, true},
		{"list without spaces", []string{`"5","7"`}, `"7"`, true},
		{"list with tabs and empty elements", []string{"\t,\"5\" ,, W/\"7\""}, `"7"`, true},
		{"list without the tag", []string{`"5", W/"6"`}, `"7"`, false},
		{"several lines", []string{`"5"`, `"7"`}, `"7"`, true},
		{"comma inside a tag", []string{`"a,7", "b"`}, `"7"`, false},
		{"tag with a comma", []string{`"x", "a,7"`}, `"a,7"`, true},
		{"read up to a malformed element", []string{`"7", junk`}, `"7"`, true},
		{"nothing after a malformed element", []string{`junk, "7"`}, `"7"`, false},
		{"unterminated", []string{`"7`}, `"7"`, false},
		{"control character", []string{"\"7\x01\""}, "\"7\x01\"", false},
		{"weak server tag compares weakly", []string{`"7"`}, `W/"7"`, true},
		{"malformed server tag matches nothing", []string{`*`}, `7`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, h := range tt.header {
				r.Header.Add("If-None-Match", h)
			}
			if got := NoneMatch(r, tt.etag); got != tt.want {
				t.Fatalf("NoneMatch(%q, %s) = %v, want %v", tt.header, tt.etag, got, tt.want)
			}
		})
	}
}

// versioned is a tiny versioned read model: items by id, each at a
// version, and a failure to answer with.
type versioned struct {
	items map[string]versionedItem
	err   error
}

type versionedItem struct {
	Name    string `json:"name"`
	Version int64  `json:"version"`
}

func getVersioned(_ context.Context, db *versioned, id string) (versionedItem, error) {
	if db.err != nil {
		return versionedItem{}, db.err
	}
	v, ok := db.items[id]
	if !ok {
		return versionedItem{}, fmt.Errorf("get %s: %w", id, domain.ErrNotFound)
	}
	return v, nil
}

// TestVersionedGetHandler runs the handler behind a real HTTP server, so
// that what reaches the client (a 304 without a body, its headers) is what
// net/http sends.
func TestVersionedGetHandler(t *testing.T) {
	db := &versioned{items: map[string]versionedItem{"a": {Name: "apple", Version: 3}}}
	r := chi.NewRouter()
	r.Get("/things/{id}", VersionedGetHandler(db, "id", "thing", getVersioned, func(v versionedItem) int64 { return v.Version }))
	r.Get("/things", NoStore(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, r, http.StatusOK, NewPage([]string{"a"}, ""))
	}))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	get := func(t *testing.T, path string, header ...string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Add(header[i], header[i+1])
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, string(b)
	}

	tests := []struct {
		name        string
		path        string
		ifNoneMatch string // sent when not empty
		change      func() // applied to the read model first
		status      int
		etag        string
		cache       string
		body        string
	}{
		{name: "plain get", path: "/things/a", status: 200, etag: `"3"`, cache: "no-cache", body: `{"name":"apple","version":3}` + "\n"},
		{name: "current tag", path: "/things/a", ifNoneMatch: `"3"`, status: 304, etag: `"3"`, cache: "no-cache"},
		{name: "weak current tag", path: "/things/a", ifNoneMatch: `W/"3"`, status: 304, etag: `"3"`, cache: "no-cache"},
		{name: "any", path: "/things/a", ifNoneMatch: `*`, status: 304, etag: `"3"`, cache: "no-cache"},
		{name: "older tag", path: "/things/a", ifNoneMatch: `"2"`, status: 200, etag: `"3"`, cache: "no-cache", body: `{"name":"apple","version":3}` + "\n"},
		{name: "after a change", path: "/things/a", ifNoneMatch: `"3"`,
			change: func() { db.items["a"] = versionedItem{Name: "apricot", Version: 4} },
			status: 200, etag: `"4"`, cache: "no-cache", body: `{"name":"apricot","version":4}` + "\n"},
		{name: "the new tag", path: "/things/a", ifNoneMatch: `"3", "4"`, status: 304, etag: `"4"`, cache: "no-cache"},
		{name: "unknown ignores any", path: "/things/zz", ifNoneMatch: `*`, status: 404, cache: "no-store"},
		{name: "failure ignores the tag", path: "/things/a", ifNoneMatch: `"4"`,
			change: func() { db.err = errors.New("database down") }, status: 500, cache: "no-store"},
		{name: "list", path: "/things", ifNoneMatch: `*`, status: 200, cache: "no-store", body: `{"items":["a"],"next":""}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.change != nil {
				tt.change()
			}
			var header []string
			if tt.ifNoneMatch != "" {
				header = []string{"If-None-Match", tt.ifNoneMatch}
			}
			res, body := get(t, tt.path, header...)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.status, body)
			}
			if got := res.Header.Get("ETag"); got != tt.etag {
				t.Errorf("ETag %q, want %q", got, tt.etag)
			}
			if got := res.Header.Get("Cache-Control"); got != tt.cache {
				t.Errorf("Cache-Control %q, want %q", got, tt.cache)
			}
			if tt.status == http.StatusOK || tt.status == http.StatusNotModified {
				if body != tt.body {
					t.Errorf("body %q, want %q", body, tt.body)
				}
			}
			if tt.status == http.StatusNotModified && res.Header.Get("Content-Type") != "" {
				t.Errorf("304 with Content-Type %q", res.Header.Get("Content-Type"))
			}
		})
	}
}
