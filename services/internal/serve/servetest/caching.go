package servetest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
)

// WantVersioned checks the HTTP caching of the single resource at path,
// whose version is version now (API.md: single-resource GETs answer an
// ETag from the resource's version and honour If-None-Match with 304):
//
//   - a GET answers 200 with ETag "<version>" and Cache-Control:
//     no-cache, and its body's version, where it shows one, is version;
//   - If-None-Match naming that tag (as is, weak, in a list, or "*") is
//     answered 304 without a body, with the same ETag and Cache-Control;
//   - a tag of an earlier version, or of none, gets the full 200.
//
// It returns the 200 answer.
func (e *Env) WantVersioned(t testing.TB, path string, version int64) Response {
	t.Helper()
	etag := `"` + strconv.FormatInt(version, 10) + `"`
	res := e.Get(t, path)
	if res.Status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, res.Status, res.Body)
	}
	wantCaching(t, "GET "+path, res, etag)
	// A resource that shows its version (all but a saga) shows the one
	// of its ETag.
	var body struct {
		Version *int64 `json:"version"`
	}
	if err := json.Unmarshal(res.Body, &body); err != nil || (body.Version != nil && *body.Version != version) {
		t.Fatalf("GET %s: body version does not match ETag %s (%v): %s", path, etag, err, res.Body)
	}

	matching := []string{etag, "W/" + etag, `"0", ` + etag, `*`}
	for _, tag := range matching {
		got := e.Get(t, path, "If-None-Match", tag)
		if got.Status != http.StatusNotModified || len(got.Body) != 0 {
			t.Fatalf("GET %s, If-None-Match %s: %d %q, want 304 without a body", path, tag, got.Status, got.Body)
		}
		wantCaching(t, "GET "+path+" If-None-Match "+tag, got, etag)
	}
	stale := []string{`"` + strconv.FormatInt(version-1, 10) + `"`, `"` + strconv.FormatInt(version+1, 10) + `"`, `W/"x"`}
	for _, tag := range stale {
		got := e.Get(t, path, "If-None-Match", tag)
		if got.Status != http.StatusOK || string(got.Body) != string(res.Body) {
			t.Fatalf("GET %s, If-None-Match %s: %d %s, want 200 %s", path, tag, got.Status, got.Body, res.Body)
		}
		wantCaching(t, "GET "+path+" If-None-Match "+tag, got, etag)
	}
	return res
}

func wantCaching(t testing.TB, what string, res Response, etag string) {
	t.Helper()
	if got := res.Header.Get("ETag"); got != etag {
		t.Errorf("%s: ETag %q, want %s", what, got, etag)
	}
	if got := res.Header.Get("Cache-Control"); got != "no-cache" {
		t.Errorf("%s: Cache-Control %q, want no-cache", what, got)
	}
}

// WantNoStore checks that the list at path (which may carry a query)
// answers 200 with Cache-Control: no-store and no ETag, an If-None-Match
// included: a list has no version to revalidate against.
func (e *Env) WantNoStore(t testing.TB, path string) {
	t.Helper()
	for _, header := range [][]string{nil, {"If-None-Match", "*"}} {
		res := e.Get(t, path, header...)
		if res.Status != http.StatusOK {
			t.Fatalf("GET %s %v: %d %s", path, header, res.Status, res.Body)
		}
		if got := res.Header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("GET %s %v: Cache-Control %q, want no-store", path, header, got)
		}
		if got := res.Header.Get("ETag"); got != "" {
			t.Errorf("GET %s %v: a list answered ETag %q", path, header, got)
		}
	}
}
