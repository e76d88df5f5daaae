// Package auth is the gateway's authentication and authorization.
//
// Authentication: a client sends "Authorization: Bearer <JWT>". A Verifier
// checks the token: HS256 with a shared secret for the dev stack
// (NewHS256, with DevSecret and Sign for `orderflow token`), or RS256 and
// ES256 against a JWKS URL for production (NewJWKS), whose keys are
// refreshed in the background and when a token names a key id not yet
// known. A valid token yields a Principal: its subject (claim sub) and
// role (claim role, admin or customer). Middleware puts the Principal in
// the request's context, or answers 401.
//
// Authorization: Authorize decides, from API.md's rules, whether a
// Principal may make a request, and returns the request to forward: an
// admin may do everything; a customer, whose subject is its customer_id,
// only what customerRules lists, on its own orders and shipments, with
// its lists narrowed to them. Everything else is 403.
package auth

import (
	"context"
	"errors"
	"fmt"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

// Role is what a token's role claim says its holder may do.
type Role string

// The roles of API.md.
const (
	// RoleAdmin may do everything, /admin and saga retry included.
	RoleAdmin Role = "admin"
	// RoleCustomer may place, read and cancel its own orders, read
	// inventory and read its own shipments; its subject is its
	// customer_id.
	RoleCustomer Role = "customer"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleCustomer }

// MaxSubjectLength is the longest subject a token may carry. The gateway
// passes the subject on to the services in a header (the idempotency
// scope, see idempotency.SubjectHeader), whose rule this matches: 1 to
// 255 printable ASCII characters.
const MaxSubjectLength = 255

// Principal is the authenticated caller.
type Principal struct {
	// Subject is the token's sub; for a customer, its customer_id.
	Subject string
	// Role is the token's role.
	Role Role
}

// Validate reports why p could not be a token's holder: an unknown role,
// a subject that is empty, too long or not printable ASCII, or a customer
// whose subject is not a valid customer_id (which no order could carry).
// The error wraps ErrUnauthenticated.
func (p Principal) Validate() error {
	switch {
	case !p.Role.Valid():
		return &Error{Reason: ReasonUnknownRole}
	case p.Subject == "":
		return &Error{Reason: ReasonMissingSubject}
	case !httpx.PrintableASCII(p.Subject, MaxSubjectLength):
		return &Error{Reason: ReasonInvalidSubject}
	case p.Role == RoleCustomer && !domain.ValidExternalID(p.Subject):
		return &Error{Reason: ReasonInvalidSubject}
	}
	return nil
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the Principal that Middleware (or WithPrincipal)
// put in ctx.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

var (
	// ErrUnauthenticated: the request carries no valid token (401). Every
	// error of a Verifier wraps it, as an *Error that says why.
	ErrUnauthenticated = errors.New("auth: unauthenticated")
	// ErrForbidden: the caller is authenticated but may not make this
	// request (403). Authorize's refusals wrap it in a *domain.Refusal
	// whose Detail tells the client why.
	ErrForbidden = errors.New("auth: forbidden")
)

// Reason says why a request was not authenticated. Its text is the
// problem detail the client gets, so it speaks the API's words.
type Reason string

// The reasons a token is refused.
const (
	ReasonMissing              Reason = "the request has no bearer token; send Authorization: Bearer <token>"
	ReasonMalformed            Reason = "the bearer token is malformed"
	ReasonExpired              Reason = "the bearer token has expired"
	ReasonMissingExpiry        Reason = "the bearer token has no expiry (exp)"
	ReasonNotYetValid          Reason = "the bearer token is not valid yet"
	ReasonBadSignature         Reason = "the bearer token's signature is not valid"
	ReasonUnsupportedAlgorithm Reason = "the bearer token is signed with an algorithm this gateway does not accept"
	ReasonUnknownKey           Reason = "the bearer token is signed with a key this gateway does not know"
	ReasonInvalidClaims        Reason = "the bearer token's claims are not valid here (issuer, audience or issue time)"
	ReasonMissingSubject       Reason = "the bearer token has no subject (sub)"
	ReasonInvalidSubject       Reason = "the bearer token's subject is not valid for its role"
	ReasonUnknownRole          Reason = "the bearer token has no known role (want admin or customer)"
)

// Error is an authentication failure: the Reason for the client, and the
// underlying error (from the JWT library, the key set) for the logs. It
// matches ErrUnauthenticated with errors.Is.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("%v: %s", ErrUnauthenticated, e.Reason)
	}
	return fmt.Sprintf("%v: %s: %v", ErrUnauthenticated, e.Reason, e.Err)
}

// Unwrap returns ErrUnauthenticated and the underlying error.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrUnauthenticated}
	}
	return []error{ErrUnauthenticated, e.Err}
}

// Verifier checks a bearer token and returns its holder. Its errors wrap
// ErrUnauthenticated, as an *Error.
type Verifier interface {
	Verify(ctx context.Context, token string) (Principal, error)
}
