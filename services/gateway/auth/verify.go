package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// MinSecretLength is the shortest HS256 secret accepted, in bytes: RFC
// 7518 (section 3.2) asks for a key at least as long as the hash, 256
// bits; a shorter one can be found by brute force from a single token.
const MinSecretLength = 32

// Leeway is the clock skew tolerated when checking exp, nbf and iat: the
// issuer's clock and the gateway's may disagree by a few seconds.
const Leeway = 30 * time.Second

// maxTokenLength bounds the work spent on one token; real tokens are a few
// hundred bytes.
const maxTokenLength = 8 << 10

// Defaults of JWKSOptions.
const (
	DefaultJWKSRefresh       = 5 * time.Minute
	DefaultUnknownKIDRefresh = 10 * time.Second
	DefaultJWKSFetchTimeout  = 5 * time.Second
)

// hmacMethods and keySetMethods are the algorithms each verifier accepts.
// Keeping them apart is what stops algorithm confusion: a JWKS verifier
// never takes an HS256 token (which could be signed with a public key
// used as an HMAC secret), nor the dev verifier an RS256 one, and neither
// takes "none".
var (
	hmacMethods   = []string{jwt.SigningMethodHS256.Alg()}
	keySetMethods = []string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg()}
)

// claims are the token claims the gateway reads.
type claims struct {
	Role Role `json:"role"`
	jwt.RegisteredClaims
}

// jwtVerifier verifies tokens with a parser and a source of keys.
type jwtVerifier struct {
	parser  *jwt.Parser
	methods []string
	keys    func(ctx context.Context) jwt.Keyfunc
}

func newParser(methods []string, extra ...jwt.ParserOption) *jwt.Parser {
	opts := append([]jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithLeeway(Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	}, extra...)
	return jwt.NewParser(opts...)
}

// Verify checks token's signature and claims and returns its holder.
func (v *jwtVerifier) Verify(ctx context.Context, token string) (Principal, error) {
	if token == "" {
		return Principal{}, &Error{Reason: ReasonMissing}
	}
	if len(token) > maxTokenLength {
		return Principal{}, &Error{Reason: ReasonMalformed, Err: fmt.Errorf("token of %d bytes", len(token))}
	}
	var c claims
	tok, err := v.parser.ParseWithClaims(token, &c, v.keys(ctx))
	if err != nil {
		return Principal{}, &Error{Reason: v.reason(tok, err), Err: err}
	}
	p := Principal{Subject: c.Subject, Role: c.Role}
	if err := p.Validate(); err != nil {
		return Principal{}, err
	}
	return p, nil
}

// reason tells which check a token failed, from the JWT library's error.
func (v *jwtVerifier) reason(tok *jwt.Token, err error) Reason {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ReasonMalformed
	case tok != nil && tok.Method == nil,
		tok != nil && !slices.Contains(v.methods, tok.Method.Alg()):
		// An algorithm the library does not know, or one not accepted
		// here (none, HS256 against a key set, RS256 against a secret).
		return ReasonUnsupportedAlgorithm
	case errors.Is(err, jwkset.ErrKeyNotFound):
		return ReasonUnknownKey
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// The key set could not give a key: one that does not match the
		// token's algorithm, or a key set that could not be read.
		return ReasonUnknownKey
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ReasonBadSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return ReasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return ReasonNotYetValid
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return ReasonMissingExpiry
	default:
		// Issuer, audience, an issue time in the future.
		return ReasonInvalidClaims
	}
}

// NewHS256 returns a Verifier of HS256 tokens signed with secret (at
// least MinSecretLength bytes): the dev stack's, see DevSecret and Sign.
func NewHS256(secret []byte) (Verifier, error) {
	if len(secret) < MinSecretLength {
		return nil, fmt.Errorf("auth: the HS256 secret has %d bytes, want at least %d", len(secret), MinSecretLength)
	}
	key := slices.Clone(secret)
	return &jwtVerifier{
		parser:  newParser(hmacMethods),
		methods: hmacMethods,
		keys: func(context.Context) jwt.Keyfunc {
			return func(*jwt.Token) (any, error) { return key, nil }
		},
	}, nil
}

// JWKSOptions tunes NewJWKSWithOptions; zero values take the defaults.
type JWKSOptions struct {
	// RefreshInterval is how often the key set is fetched again in the
	// background. Default DefaultJWKSRefresh.
	RefreshInterval time.Duration
	// UnknownKIDInterval is the least time between two fetches caused by
	// tokens naming a key id not in the key set: a rotated-in key is
	// picked up at once, while tokens with made-up key ids cannot turn the
	// gateway into a flood of requests to the identity provider. Default
	// DefaultUnknownKIDRefresh.
	UnknownKIDInterval time.Duration
	// FetchTimeout bounds each fetch of the key set, and so how long a
	// request waits for a refresh its unknown key id caused; a request
	// that would have to wait longer for the rate limit is refused at
	// once. Default DefaultJWKSFetchTimeout.
	FetchTimeout time.Duration
	// Client fetches the key set. Default http.DefaultClient.
	Client *http.Client
	// Issuer, when set, is required in the iss claim.
	Issuer string
	// Audience, when set, is required among the aud claim's values. A
	// production identity provider issues tokens for many applications;
	// set it so that only those meant for this one are accepted.
	Audience string
	// Logger reports failed background refreshes. Default slog.Default().
	Logger *slog.Logger
}

// NewJWKS returns a Verifier of RS256 and ES256 tokens whose keys are
// the JWK Set at url, with the default JWKSOptions: the set is fetched
// now (an error if that fails, so a wrong URL shows at startup), again
// every 5 minutes in the background, and when a token names a key id the
// set does not hold (at most once every 10 seconds), so a key rotated in
// by the identity provider is accepted without a restart and a key it
// removed is refused after the next fetch. The background refresh stops
// when ctx is done.
func NewJWKS(ctx context.Context, url string) (Verifier, error) {
	return NewJWKSWithOptions(ctx, url, JWKSOptions{})
}

// NewJWKSWithOptions is NewJWKS with options.
func NewJWKSWithOptions(ctx context.Context, jwksURL string, o JWKSOptions) (Verifier, error) {
	u, err := url.Parse(jwksURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("auth: the JWKS URL %q is not an absolute http(s) URL", jwksURL)
	}
	if o.RefreshInterval < 0 || o.UnknownKIDInterval < 0 || o.FetchTimeout < 0 {
		return nil, errors.New("auth: JWKS intervals must not be negative")
	}
	if o.RefreshInterval == 0 {
		o.RefreshInterval = DefaultJWKSRefresh
	}
	if o.UnknownKIDInterval == 0 {
		o.UnknownKIDInterval = DefaultUnknownKIDRefresh
	}
	if o.FetchTimeout == 0 {
		o.FetchTimeout = DefaultJWKSFetchTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}

	// The refresh goroutine starts before the first fetch; if that fetch
	// fails, stop it rather than leave it running until ctx ends.
	ctx, stop := context.WithCancel(ctx)
	remote, err := jwkset.NewStorageFromHTTP(jwksURL, jwkset.HTTPClientStorageOptions{
		Client:          o.Client,
		Ctx:             ctx,
		HTTPTimeout:     o.FetchTimeout,
		RefreshInterval: o.RefreshInterval,
		RefreshErrorHandler: func(ctx context.Context, err error) {
			// The keys fetched last stay in use until a fetch succeeds.
			o.Logger.LogAttrs(ctx, slog.LevelWarn, "refreshing the JWKS failed",
				slog.String("url", jwksURL), slog.String("error", err.Error()))
		},
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("auth: JWKS %s: %w", jwksURL, err)
	}
	storage, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{jwksURL: remote},
		RateLimitWaitMax:  o.FetchTimeout,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(o.UnknownKIDInterval), 1),
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("auth: JWKS %s: %w", jwksURL, err)
	}
	kf, err := keyfunc.New(keyfunc.Options{
		Ctx:     ctx,
		Storage: storage,
		// Keys marked for encryption never verify a signature; keys
		// without a "use" are taken, as most key sets leave it out.
		UseWhitelist: []jwkset.USE{jwkset.UseSig, ""},
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("auth: JWKS %s: %w", jwksURL, err)
	}
	var extra []jwt.ParserOption
	if o.Issuer != "" {
		extra = append(extra, jwt.WithIssuer(o.Issuer))
	}
	if o.Audience != "" {
		extra = append(extra, jwt.WithAudience(o.Audience))
	}
	return &jwksVerifier{
		jwtVerifier: jwtVerifier{
			parser:  newParser(keySetMethods, extra...),
			methods: keySetMethods,
			keys:    kf.KeyfuncCtx,
		},
		stop: stop,
	}, nil
}

// jwksVerifier is a jwtVerifier over a refreshed key set.
type jwksVerifier struct {
	jwtVerifier
	// stop ends the background refresh, as the end of NewJWKS's ctx does.
	stop context.CancelFunc
}
