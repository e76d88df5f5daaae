// Package console is the operator console: one page, with its script,
// style sheet and icon embedded in the binary, that the gateway serves at
// /console. The page is static and public; everything it shows it asks
// the gateway's /api and /admin endpoints for with the admin token the
// operator enters (kept in the tab's sessionStorage), so serving it needs
// no token and holds no data. There is no build step: the assets are
// the files under assets/, plain JavaScript, CSS and SVG.
//
// docs/adr/0156 and 0157 record why it is built this way.
package console

import (
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/orderflow/orderflow/services/internal/httpx"
)

// Prefix is the path the console is served under.
const Prefix = "/console"

//go:embed assets
var assets embed.FS

// files is assets/ as the root of the served tree.
var files = func() fs.FS {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	return sub
}()

// contentSecurityPolicy lets the page load and call only its own origin:
// no inline script or style, no third-party host, no framing.
const contentSecurityPolicy = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// Handler serves the console: GET /console and /console/ answer the page,
// /console/{file} its assets; anything else is 404. Requests carry full
// paths (it is mounted, not stripped).
func Handler() http.Handler {
	static := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			httpx.WriteProblem(w, httpx.NewProblem(http.StatusMethodNotAllowed, httpx.SlugMethodNotAllowed,
				"the console is read with GET"))
			return
		}
		name := strings.TrimPrefix(r.URL.Path, Prefix)
		name = strings.TrimPrefix(path.Clean("/"+name), "/")
		if name == "" {
			name = "index.html"
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// The assets change with the binary and are small: the browser
		// asks again each time rather than run an old script against a
		// new gateway.
		h.Set("Cache-Control", "no-cache")
		if name == "index.html" {
			// FileServer would redirect index.html to the directory.
			serveIndex(w, r)
			return
		}
		if _, err := fs.Stat(files, name); err != nil {
			h.Del("Cache-Control")
			httpx.NotFound(w, r)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + name
		static.ServeHTTP(w, r2)
	})
}

// serveIndex writes the page itself.
func serveIndex(w http.ResponseWriter, r *http.Request) {
	b, err := fs.ReadFile(files, "index.html")
	if err != nil {
		httpx.WriteError(w, r, fmt.Errorf("console page: %w", err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}
