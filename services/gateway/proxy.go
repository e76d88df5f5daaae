package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/orderflow/orderflow/services/gateway/auth"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/idempotency"
	"github.com/orderflow/orderflow/services/internal/telemetry"
)

// proxy forwards every request it gets to service.
func (g *Gateway) proxy(service string) http.Handler {
	up := g.upstreams[service]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.forward(w, r, up) })
}

// forward sends r to up and writes up's answer, headers and body as they
// came (ETag, Cache-Control, Location, Retry-After, a problem), or a 503
// problem when up could not answer.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, up *upstream) {
	res, err := up.do(r.Context(), g.outbound(r))
	if err != nil {
		g.upstreamFailed(w, r, up, err)
		return
	}
	defer res.Body.Close()
	h := w.Header()
	for k, vs := range res.Header {
		h[k] = vs
	}
	removeHopByHop(h)
	w.WriteHeader(res.StatusCode)
	if _, err := io.Copy(w, res.Body); err != nil {
		// The status line is out: the client can only learn that the
		// answer is cut short from the connection closing.
		httpx.Logger(r.Context()).Warn("upstream answer cut short", "upstream", up.name, "error", err)
		panic(http.ErrAbortHandler)
	}
}

// upstreamFailed answers a request up could not answer: 503 with
// Retry-After, unless the client has gone.
func (g *Gateway) upstreamFailed(w http.ResponseWriter, r *http.Request, up *upstream, err error) {
	if r.Context().Err() != nil {
		return // nobody is waiting for the answer
	}
	p := up.problem(r.Method, err)
	httpx.Logger(r.Context()).LogAttrs(r.Context(), slog.LevelWarn, "upstream request failed",
		slog.String("upstream", up.name), slog.String("method", r.Method),
		slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	httpx.WriteProblem(w, p)
}

// outbound is the request to send upstream for r: the same method, path,
// query, headers and body, except that
//   - hop-by-hop headers stay here;
//   - the bearer token stays here: the services trust the gateway, and a
//     token in their logs or in a request they send on would outlive its
//     purpose;
//   - idempotency.SubjectHeader is the authenticated subject, whatever
//     the client sent, so that the services scope idempotency keys by
//     caller;
//   - X-Request-Id is the gateway's request id (the client's, when valid);
//   - X-Forwarded-For/-Proto/-Host say where the request came from.
func (g *Gateway) outbound(r *http.Request) call {
	h := r.Header.Clone()
	removeHopByHop(h)
	h.Del("Authorization")
	h.Del("Expect") // the body is in hand; nothing to wait for
	h.Del(idempotency.SubjectHeader)
	if p, ok := auth.FromContext(r.Context()); ok {
		h.Set(idempotency.SubjectHeader, p.Subject)
	}
	if id := httpx.RequestIDFrom(r.Context()); id != "" {
		h.Set(httpx.RequestIDHeader, id)
	}
	client := clientAddress(r)
	if prior := h.Values("X-Forwarded-For"); len(prior) > 0 {
		client = strings.Join(prior, ", ") + ", " + client
	}
	h.Set("X-Forwarded-For", client)
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	h.Set("X-Forwarded-Proto", proto)
	h.Set("X-Forwarded-Host", r.Host)
	// The service's span is the child of the gateway's, in every attempt.
	telemetry.InjectHTTP(r.Context(), h)
	return call{method: r.Method, target: r.URL.EscapedPath() + query(r), header: h, body: bodyFrom(r.Context())}
}

func query(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return "?" + r.URL.RawQuery
}

// hopByHop are the headers that concern one connection only (RFC 9110
// section 7.6.1), which a proxy does not pass on.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes the hop-by-hop headers from h, and those the
// Connection header names.
func removeHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// clientAddress is the IP address the request came from. Forwarding
// headers are not believed: a client can write anything there, and the
// per-address limit would be void.
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type bodyKey struct{}

// withBody stores the request body limitBody read, for every attempt of
// the forwarding to send again.
func withBody(ctx context.Context, body []byte) context.Context {
	return context.WithValue(ctx, bodyKey{}, body)
}

// bodyFrom returns the body stored by withBody, nil for none.
func bodyFrom(ctx context.Context) []byte {
	b, _ := ctx.Value(bodyKey{}).([]byte)
	return b
}
