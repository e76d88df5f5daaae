package httpx

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/domain"
)

// Cache-Control values of the query side (RFC 9111). A single resource
// may be stored but must be revalidated on every use (its ETag makes that
// a cheap 304); a list changes with every resource in it and has no
// version to revalidate against, so no cache may keep it.
const (
	CacheRevalidate = "no-cache"
	CacheNoStore    = "no-store"
)

// ETag is the strong entity tag of a resource at version: the version in
// quotes, e.g. "7". The version is the one of the resource's stream, which
// every change moves, and the representation at a version never differs,
// so a strong tag is honest.
func ETag(version int64) string {
	return `"` + strconv.FormatInt(version, 10) + `"`
}

// NoneMatch reports whether r's If-None-Match names etag, so that a GET
// is answered 304 Not Modified. As RFC 9110 (13.1.2) says for
// If-None-Match: "*" matches any current representation, the field is a
// comma-separated list of entity tags (possibly over several header
// lines), and tags compare weakly (W/"7" matches "7"). A malformed list
// is read up to where it breaks, as net/http's file server does.
func NoneMatch(r *http.Request, etag string) bool {
	want, ok := opaqueTag(etag)
	if !ok {
		return false
	}
	for _, field := range r.Header.Values("If-None-Match") {
		for rest := field; ; {
			rest = strings.TrimLeft(rest, " \t,")
			if rest == "" {
				break
			}
			if rest[0] == '*' {
				return true
			}
			tag, tail, ok := scanETag(rest)
			if !ok {
				break
			}
			if tag == want {
				return true
			}
			rest = tail
		}
	}
	return false
}

// scanETag reads one entity tag at the start of s: [W/]"opaque". It
// returns the opaque tag with its quotes and the rest of s.
func scanETag(s string) (tag, rest string, ok bool) {
	s = strings.TrimPrefix(s, "W/")
	if len(s) < 2 || s[0] != '"' {
		return "", "", false
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return s[:i+1], s[i+1:], true
		// etagc = %x21 / %x23-7E / obs-text
		case c == 0x21, c >= 0x23 && c != 0x7f:
		default:
			return "", "", false
		}
	}
	return "", "", false
}

// opaqueTag is etag without a weak prefix, when etag is one entity tag.
func opaqueTag(etag string) (string, bool) {
	tag, rest, ok := scanETag(etag)
	return tag, ok && rest == ""
}

// WriteVersioned answers a GET for one resource at version: it sets ETag
// and Cache-Control (revalidate) and writes v as JSON with 200, or, when
// If-None-Match names the current ETag, 304 without a body. The 304
// carries the same ETag and Cache-Control as the 200 would (RFC 9110
// 15.4.5). Only a resource that exists reaches this: a 404 ignores
// If-None-Match, as preconditions are evaluated only for a 2xx.
func WriteVersioned(w http.ResponseWriter, r *http.Request, version int64, v any) {
	etag := ETag(version)
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", CacheRevalidate)
	if NoneMatch(r, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	WriteJSON(w, r, http.StatusOK, v)
}

// VersionedGetHandler serves one item of a read model with an ETag from
// its version and If-None-Match answered 304 (see WriteVersioned). get
// reads the item from db by the URL parameter param; a domain.ErrNotFound
// becomes a 404 problem that names kind and the id, and any other error is
// written as usual. version tells an item's version.
func VersionedGetHandler[DB, T any](db DB, param, kind string,
	get func(context.Context, DB, string) (T, error), version func(T) int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, param)
		v, err := get(r.Context(), db, id)
		if errors.Is(err, domain.ErrNotFound) {
			err = NotFoundProblem(kind, id)
		}
		if err != nil {
			WriteError(w, r, err)
			return
		}
		WriteVersioned(w, r, version(v), v)
	}
}

// NoStore marks every answer of a list as not to be stored by any cache
// (Cache-Control: no-store).
func NoStore(list http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", CacheNoStore)
		list(w, r)
	}
}
