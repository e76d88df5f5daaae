package auth

import (
	"errors"
	"net/http"
	"strings"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// realm names the protection space in WWW-Authenticate (RFC 6750).
const realm = "orderflow"

// Middleware authenticates every request with v: the bearer token of its
// Authorization header becomes a Principal in the request's context (see
// FromContext). A request without a valid token is answered 401
// problem+json with a WWW-Authenticate: Bearer challenge, whose detail
// says what was wrong (missing, malformed, expired, bad signature,
// unknown role, ...); the next handler does not run.
func Middleware(v Verifier) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, err := bearerToken(r)
			if err == nil {
				var p Principal
				if p, err = v.Verify(r.Context(), token); err == nil {
					next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
					return
				}
			}
			WriteError(w, r, err)
		})
	}
}

// bearerToken returns the token of r's Authorization header.
func bearerToken(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", &Error{Reason: ReasonMissing}
	case 1:
	default:
		return "", &Error{Reason: ReasonMalformed, Err: errors.New("more than one Authorization header")}
	}
	// The scheme is case-insensitive (RFC 9110, section 11.1); the token
	// is one run of token68 characters.
	scheme, token, ok := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", &Error{Reason: ReasonMissing, Err: errors.New("the Authorization header is not a Bearer credential")}
	}
	token = strings.TrimSpace(token)
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", &Error{Reason: ReasonMalformed, Err: errors.New("the Authorization header's token is empty or has spaces")}
	}
	return token, nil
}

// Enforce authorizes every request with Authorize, for the Principal that
// Middleware (placed before it) put in the context, and passes the
// request Authorize returns to next. A refused request is answered by
// WriteError (403, 404, or 400/413 for a body that cannot be read); a
// request without a Principal is 401.
func Enforce(owners Owners) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok := FromContext(r.Context())
			if !ok {
				WriteError(w, r, &Error{Reason: ReasonMissing})
				return
			}
			fwd, err := Authorize(r.Context(), p, r, owners)
			if err != nil {
				WriteError(w, r, err)
				return
			}
			next.ServeHTTP(w, fwd)
		})
	}
}

// WriteError answers a request refused by this package: 401 for
// ErrUnauthenticated (with the WWW-Authenticate challenge, RFC 6750; the
// detail is the *Error's Reason), 403 for ErrForbidden (the detail is the
// refusal's), and anything else as httpx.WriteError does (404 for
// domain.ErrNotFound, a *httpx.Problem as is, 503 for an owner lookup that
// could not reach its service).
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrUnauthenticated):
		reason := ReasonMalformed
		var ae *Error
		if errors.As(err, &ae) {
			reason = ae.Reason
		}
		challenge := `Bearer realm="` + realm + `"`
		if reason != ReasonMissing {
			// RFC 6750, section 3.1: a token was sent but is not good.
			challenge += `, error="invalid_token", error_description="` + string(reason) + `"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		httpx.WriteProblem(w, httpx.NewProblem(http.StatusUnauthorized, httpx.SlugUnauthorized, string(reason)))
	case errors.Is(err, ErrForbidden):
		detail := "this request is not allowed for your role"
		var rf *domain.Refusal
		if errors.As(err, &rf) && rf.Detail != "" {
			detail = rf.Detail
		}
		httpx.WriteProblem(w, httpx.NewProblem(http.StatusForbidden, httpx.SlugForbidden, detail))
	default:
		httpx.WriteError(w, r, err)
	}
}
