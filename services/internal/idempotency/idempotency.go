// Package idempotency makes a service's POST commands safe to repeat. A
// client sends an Idempotency-Key header; the first request with that key
// is executed and, if its answer is final (see Final), that answer is
// stored in the service's database; a repeat with the same body gets the
// stored answer replayed without executing anything, a repeat with a
// different body is refused. A transient answer (contention, rate limit,
// server error, anything carrying Retry-After) is passed to the client but
// not stored: the key is released so that the retry the answer asks for
// gets a fresh attempt.
//
// While a request runs, its key is held by a claim with a short lease that
// the request's process keeps extending (database clock, so replicas
// agree). A request that ends without a final answer (an error, a panic, a
// cancelled or timed-out context) releases the claim at once; a process
// that dies stops extending it, and the key becomes claimable when the
// lease runs out, within seconds.
//
// Storing the answer happens after the command's events are appended, so a
// crash in between would lose the answer but not the effect, and a
// transient answer may hide an effect that did commit. That is why the
// command id is derived from the key (see DeriveCommandID): the retry
// executes the same command again, and the command handlers recognise a
// command id they have already applied and change nothing.
//
// A key is scoped by the request's method and path and, behind the
// gateway, by the caller's subject, which the gateway passes in
// SubjectHeader: two callers who happen to choose the same key get two
// commands, not each other's answers.
package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/services/internal/httpx"
	"github.com/orderflow/orderflow/services/internal/pgdb"
)

// Header is the request header carrying the key.
const Header = "Idempotency-Key"

// ReplayedHeader is set to "true" on replayed answers.
const ReplayedHeader = "Idempotent-Replayed"

// SubjectHeader carries the authenticated caller's subject (the token's
// sub) on requests the gateway forwards. The gateway removes any value a
// client sent and sets its own, so behind it the header can be trusted; a
// service reached directly has no authentication at all, so a value sent
// there only narrows the sender's own key scope.
const SubjectHeader = "X-Orderflow-Subject"

// MaxSubjectLength is the longest subject accepted in SubjectHeader.
const MaxSubjectLength = 255

// MaxKeyLength is the longest key accepted.
const MaxKeyLength = 200

// DefaultLease is the claim lease when Config.Lease is zero: about the
// longest a key stays blocked after the process running its request died.
const DefaultLease = 5 * time.Second

// MinLease is the shortest claim lease Config accepts. The owner extends
// its claim every third of the lease; shorter leases would risk a busy
// but live owner losing its claim between two extensions.
const MinLease = time.Second

// ErrClaimLost reports that a request's claim on its key was no longer
// held when its answer was to be stored: its lease ran out (the owner could
// not extend it in time) and another request took the key over. The
// effect is not lost; the answer just is not remembered.
var ErrClaimLost = errors.New("idempotency: claim lost to another request")

// storedHeaders are the response headers kept with an answer.
var storedHeaders = []string{"Content-Type", "Location"}

// namespace is the UUID v5 namespace of derived command ids. Changing it
// would let a retry across a deploy execute a command twice.
var namespace = uuid.MustParse("9d3c1f7e-5b8a-4c1e-9f61-2a7d0b4e8c53")

// subjectNamespace is the UUID v5 namespace of derived command ids of
// requests with a subject; the same warning applies.
var subjectNamespace = uuid.MustParse("4f0b6c2a-8e1d-4a7b-b3c5-6d9e2f1a7c40")

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or updates the idempotency table in pool's database.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("idempotency migrations: %w", err)
	}
	return pgdb.Migrate(ctx, pool, "idempotency", sub)
}

// Config tunes a Store. Service is required; the rest defaults.
type Config struct {
	// Service names the service; it is part of every derived command id.
	Service string
	// TTL is how long an answer is remembered. Default 24h.
	TTL time.Duration
	// Lease is how long an in-flight claim blocks repeats unless its owner
	// extends it; the owner does so every Lease/3 while its request runs.
	// A claim not extended in time is taken to belong to a dead process,
	// and a repeat takes it over (safe, see the package comment). It is
	// therefore about the longest time a key stays blocked after its
	// process was killed. At least MinLease; default DefaultLease.
	Lease time.Duration
	// PurgeInterval is how often RunPurger deletes expired keys.
	// Default 10m.
	PurgeInterval time.Duration
	// Logger reports failures to store answers. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports missing or out-of-range settings.
func (c Config) Validate() error {
	switch {
	case c.Service == "":
		return errors.New("idempotency: Service is required")
	case c.TTL < 0, c.Lease < 0, c.PurgeInterval < 0:
		return errors.New("idempotency: durations must not be negative")
	case c.TTL != 0 && c.TTL < time.Minute:
		return fmt.Errorf("idempotency: TTL %s is shorter than a minute", c.TTL)
	case c.Lease != 0 && c.Lease < MinLease:
		return fmt.Errorf("idempotency: Lease %s is shorter than %s", c.Lease, MinLease)
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.TTL == 0 {
		c.TTL = 24 * time.Hour
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.PurgeInterval == 0 {
		c.PurgeInterval = 10 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Store keeps idempotency keys and answers in a service's database.
type Store struct {
	pool *pgxpool.Pool
	cfg  Config
}

// New returns a Store on pool, whose database must have been migrated with
// Migrate.
func New(pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &Store{pool: pool, cfg: cfg}, nil
}

// DeriveCommandID is the command id of a request with key to scope
// ("<METHOD> <path>") on service: a UUID v5, the same on every retry. The
// scope is included so one key used on two resources names two commands.
// It is the id of a request without a subject; see DeriveSubjectCommandID.
func DeriveCommandID(service, scope, key string) string {
	return uuid.NewSHA1(namespace, []byte(service+"\n"+scope+"\n"+key)).String()
}

// DeriveSubjectCommandID is DeriveCommandID for a request made by subject
// (see SubjectHeader), so that two callers using the same key on the same
// resource name two commands. Without a subject it is DeriveCommandID,
// which keeps the ids of direct requests what they were before subjects
// existed. Ids with a subject come from a namespace of their own, so no
// scope, key and subject can spell the name of a subject-less id.
func DeriveSubjectCommandID(service, scope, subject, key string) string {
	if subject == "" {
		return DeriveCommandID(service, scope, key)
	}
	// key and subject are printable ASCII, without a newline: the last two
	// newlines separate them unambiguously from the scope.
	return uuid.NewSHA1(subjectNamespace, []byte(service+"\n"+scope+"\n"+key+"\n"+subject)).String()
}

// ValidKey reports whether key is acceptable: 1-200 printable ASCII
// characters.
func ValidKey(key string) bool { return httpx.PrintableASCII(key, MaxKeyLength) }

// ValidSubject reports whether subject is acceptable in SubjectHeader:
// 1-255 printable ASCII characters.
func ValidSubject(subject string) bool { return httpx.PrintableASCII(subject, MaxSubjectLength) }

// Middleware applies idempotency to POST requests that carry the header;
// other requests pass through untouched. The handler finds the derived
// command id with httpx.CommandID (httpx.CommandMeta uses it). Place it
// inside httpx.RequestID and httpx.Recover, and inside any request timeout,
// so that a timed-out request stops extending its claim.
func (s *Store) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		values, sent := r.Header[http.CanonicalHeaderKey(Header)]
		if r.Method != http.MethodPost || !sent {
			next.ServeHTTP(w, r)
			return
		}
		if len(values) != 1 || !ValidKey(values[0]) {
			httpx.WriteProblem(w, httpx.ValidationProblem("invalid Idempotency-Key header",
				httpx.FieldError{Field: Header, Message: "must be sent once, with 1 to 200 printable ASCII characters"}))
			return
		}
		key := values[0]
		subject, ok := requestSubject(r)
		if !ok {
			httpx.WriteProblem(w, httpx.ValidationProblem("invalid "+SubjectHeader+" header",
				httpx.FieldError{Field: SubjectHeader, Message: "must be sent at most once, with 1 to 255 printable ASCII characters"}))
			return
		}
		body, err := httpx.ReadBody(r)
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		k := keyRef{scope: r.Method + " " + r.URL.Path, subject: subject, key: key}
		sum := sha256.Sum256(body)
		fingerprint := sum[:]

		c, err := s.claim(r.Context(), k, fingerprint)
		if err != nil {
			httpx.WriteError(w, r, fmt.Errorf("idempotency claim: %w", err))
			return
		}
		switch c.outcome {
		case outcomeReplay:
			replay(w, c.answer)
			return
		case outcomeReused:
			httpx.WriteProblem(w, httpx.NewProblem(http.StatusConflict, httpx.SlugIdempotencyKeyReused,
				"this Idempotency-Key was already used with a different request body"))
			return
		case outcomeInFlight:
			p := httpx.NewProblem(http.StatusConflict, httpx.SlugIdempotencyInFlight,
				"a request with this Idempotency-Key is still being processed; retry later")
			p.RetryAfter = 1
			httpx.WriteProblem(w, p)
			return
		}

		// Claimed: execute, capturing the answer so it can be stored before
		// the client sees it, and keep the claim alive meanwhile.
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		ctx := httpx.WithCommandID(r.Context(), DeriveSubjectCommandID(s.cfg.Service, k.scope, k.subject, k.key))
		rec := &capture{header: make(http.Header)}
		stopHolding := s.hold(r.Context(), k, c.token)
		returned := false
		defer func() {
			if !returned { // the handler panicked: give the key back now
				stopHolding()
				s.release(r.Context(), k, c.token)
			}
		}()
		next.ServeHTTP(rec, r.WithContext(ctx))
		returned = true
		stopHolding()

		a := rec.answer()
		if !Final(a.Status, rec.header, a.Body) {
			// A retry may well get another answer; let it run.
			s.release(r.Context(), k, c.token)
		} else if err := s.complete(r.Context(), k, c.token, a); err != nil {
			// The effect happened; a retry re-executes the same command id,
			// which changes nothing, and stores the answer then.
			httpx.Logger(r.Context()).LogAttrs(r.Context(), slog.LevelError, "storing idempotent answer failed",
				slog.String("scope", k.scope), slog.String("error", err.Error()))
		}
		for name, v := range rec.header {
			w.Header()[name] = v
		}
		w.WriteHeader(a.Status)
		_, _ = w.Write(a.Body)
	})
}

// requestSubject returns the caller's subject from SubjectHeader, "" when
// the header is absent; ok is false when it is sent more than once or is
// not a valid subject.
func requestSubject(r *http.Request) (subject string, ok bool) {
	values, sent := r.Header[http.CanonicalHeaderKey(SubjectHeader)]
	if !sent {
		return "", true
	}
	if len(values) != 1 || !ValidSubject(values[0]) {
		return "", false
	}
	return values[0], true
}

// keyRef names one row of idempotency_keys: a key in its scope.
type keyRef struct {
	scope   string // "<METHOD> <path>"
	subject string // the caller's subject, "" for a direct request
	key     string
}

// Final reports whether an answer is final, that is one that a retry of
// the same request would get again, and so may be remembered under its
// key: a 2xx, or a 4xx other than those that only describe the moment.
// Not final are 408, 425 and 429; a 409 whose problem type is
// version-conflict (contention, which a later attempt may win); any answer
// carrying Retry-After, since it asks for a retry; and everything else,
// every 5xx included.
func Final(status int, header http.Header, body []byte) bool {
	if header.Get("Retry-After") != "" {
		return false
	}
	switch {
	case status >= 200 && status < 300:
		return true
	case status < 400 || status >= 500:
		return false
	}
	switch status {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return false
	case http.StatusConflict:
		return problemSlug(body) != httpx.SlugVersionConflict
	}
	return true
}

// problemSlug returns the last path segment of the problem type in body,
// or "" when body is not a problem.
func problemSlug(body []byte) string {
	var p struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(body, &p) != nil {
		return ""
	}
	i := strings.LastIndexByte(p.Type, '/')
	if i < 0 {
		return ""
	}
	return p.Type[i+1:]
}

type answer struct {
	Status  int
	Headers map[string]string
	Body    []byte
}

func replay(w http.ResponseWriter, a answer) {
	for k, v := range a.Headers {
		w.Header().Set(k, v)
	}
	w.Header().Set(ReplayedHeader, "true")
	w.WriteHeader(a.Status)
	_, _ = w.Write(a.Body)
}

type outcome int

const (
	outcomeClaimed outcome = iota
	outcomeReplay
	outcomeReused
	outcomeInFlight
)

type claimResult struct {
	outcome outcome
	token   uuid.UUID
	answer  answer
}

func millis(d time.Duration) int64 { return d.Milliseconds() }

// claim decides what to do with a request: claim the key (insert, or take
// over an expired claim), or replay, or refuse. Times come from the
// database clock so that replicas agree.
func (s *Store) claim(ctx context.Context, k keyRef, fingerprint []byte) (claimResult, error) {
	token := uuid.New()
	// A few rounds cover the races: a row inserted by a concurrent request
	// (not in our snapshot), or deleted or expired meanwhile.
	for range 5 {
		// One round trip: claim the key, or else read the row that holds
		// it.
		var (
			claimed        bool
			storedFP       []byte
			state          string
			status         *int32
			headers        map[string]string
			body           []byte
			expired, stale bool
		)
		err := s.pool.QueryRow(ctx, `
			WITH ins AS (
				INSERT INTO idempotency_keys (scope, key, subject, fingerprint, state, claim_token, locked_until, expires_at)
				VALUES ($1, $2, $7, $3, 'in_flight', $4,
				        now() + $5 * interval '1 millisecond', now() + $6 * interval '1 millisecond')
				ON CONFLICT (scope, key, subject) DO NOTHING
				RETURNING 1
			)
			SELECT true, NULL::bytea, '', NULL::integer, NULL::jsonb, NULL::bytea, false, false FROM ins
			UNION ALL
			SELECT false, fingerprint, state, status, headers, body,
			       expires_at <= now(), coalesce(locked_until <= now(), false)
			FROM idempotency_keys
			WHERE scope = $1 AND key = $2 AND subject = $7 AND NOT EXISTS (SELECT 1 FROM ins)`,
			k.scope, k.key, fingerprint, token, millis(s.cfg.Lease), millis(s.cfg.TTL), k.subject).
			Scan(&claimed, &storedFP, &state, &status, &headers, &body, &expired, &stale)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // held by a request not yet visible, or released or purged meanwhile
		}
		if err != nil {
			return claimResult{}, err
		}
		if claimed {
			return claimResult{outcome: outcomeClaimed, token: token}, nil
		}
		if expired {
			if _, err := s.pool.Exec(ctx,
				"DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND subject = $3 AND expires_at <= now()",
				k.scope, k.key, k.subject); err != nil {
				return claimResult{}, err
			}
			continue
		}
		if !bytes.Equal(storedFP, fingerprint) {
			return claimResult{outcome: outcomeReused}, nil
		}
		if state == "done" && status != nil {
			return claimResult{outcome: outcomeReplay, answer: answer{Status: int(*status), Headers: headers, Body: body}}, nil
		}
		if !stale {
			return claimResult{outcome: outcomeInFlight}, nil
		}
		tag, err := s.pool.Exec(ctx, `
			UPDATE idempotency_keys
			SET claim_token = $3, locked_until = now() + $4 * interval '1 millisecond'
			WHERE scope = $1 AND key = $2 AND subject = $5 AND state = 'in_flight' AND locked_until <= now()`,
			k.scope, k.key, token, millis(s.cfg.Lease), k.subject)
		if err != nil {
			return claimResult{}, err
		}
		if tag.RowsAffected() == 1 {
			return claimResult{outcome: outcomeClaimed, token: token}, nil
		}
		// Someone else took it over or finished it: look again.
	}
	return claimResult{outcome: outcomeInFlight}, nil
}

// hold keeps the claim identified by token alive while its request runs:
// every Lease/3 it moves the lease's end to now + Lease by the database
// clock. It stops when the returned function is called (which waits for a
// renewal under way), when ctx is done, or when the claim turns out to be
// lost. Stopping at ctx's end means that a handler still stuck after its
// request was cancelled or timed out blocks the key for at most one more
// lease.
func (s *Store) hold(ctx context.Context, k keyRef, token uuid.UUID) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		every := s.cfg.Lease / 3
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			held, err := s.renew(ctx, k, token, every)
			switch {
			case err != nil && ctx.Err() == nil:
				// Try again at the next tick; the lease has two more
				// thirds to go.
				s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "extending idempotency claim failed",
					slog.String("scope", k.scope), slog.String("error", err.Error()))
			case err == nil && !held:
				s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "idempotency claim lost while its request ran",
					slog.String("scope", k.scope))
				return
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// renew extends the claim's lease and reports whether the claim is still
// ours. A renewal slower than timeout is abandoned so the next tick can
// try again well before the lease runs out.
func (s *Store) renew(ctx context.Context, k keyRef, token uuid.UUID, timeout time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `
		UPDATE idempotency_keys SET locked_until = now() + $4 * interval '1 millisecond'
		WHERE scope = $1 AND key = $2 AND subject = $5 AND claim_token = $3 AND state = 'in_flight'`,
		k.scope, k.key, token, millis(s.cfg.Lease), k.subject)
	if err != nil {
		return false, fmt.Errorf("extend claim: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// complete stores the answer under a claim we still hold.
func (s *Store) complete(ctx context.Context, k keyRef, token uuid.UUID, a answer) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	headers, err := json.Marshal(a.Headers)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `
		UPDATE idempotency_keys
		SET state = 'done', status = $4, headers = $5, body = $6, claim_token = NULL, locked_until = NULL,
		    expires_at = now() + $7 * interval '1 millisecond'
		WHERE scope = $1 AND key = $2 AND subject = $8 AND claim_token = $3`,
		k.scope, k.key, token, a.Status, headers, a.Body, millis(s.cfg.TTL), k.subject)
	if err != nil {
		return fmt.Errorf("store answer: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return ErrClaimLost
	}
	return nil
}

// release gives up a claim so that a retry executes afresh.
func (s *Store) release(ctx context.Context, k keyRef, token uuid.UUID) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := s.pool.Exec(ctx,
		"DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND subject = $4 AND claim_token = $3 AND state = 'in_flight'",
		k.scope, k.key, token, k.subject); err != nil {
		// The lease runs out on its own; until then repeats get 409
		// in-flight.
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "releasing idempotency claim failed",
			slog.String("scope", k.scope), slog.String("error", err.Error()))
	}
}

// Purge deletes expired keys and reports how many.
func (s *Store) Purge(ctx context.Context) (int64, error) {
	var total int64
	for {
		// Bounded batches keep each delete's locks short.
		tag, err := s.pool.Exec(ctx, `
			DELETE FROM idempotency_keys WHERE ctid IN (
				SELECT ctid FROM idempotency_keys WHERE expires_at <= now() LIMIT 5000)`)
		if err != nil {
			return total, fmt.Errorf("purge idempotency keys: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 5000 {
			return total, nil
		}
	}
}

// RunPurger purges expired keys every PurgeInterval until ctx is done.
func (s *Store) RunPurger(ctx context.Context) {
	t := time.NewTicker(s.cfg.PurgeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.Purge(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "purging idempotency keys failed", slog.String("error", err.Error()))
			case n > 0:
				s.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "purged idempotency keys", slog.Int64("count", n))
			}
		}
	}
}

// capture buffers a handler's answer.
type capture struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *capture) Header() http.Header { return c.header }

func (c *capture) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

func (c *capture) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return c.body.Write(b)
}

func (c *capture) answer() answer {
	status := c.status
	if status == 0 {
		status = http.StatusOK
	}
	h := make(map[string]string)
	for _, name := range storedHeaders {
		if v := c.header.Get(name); v != "" {
			h[name] = v
		}
	}
	return answer{Status: status, Headers: h, Body: c.body.Bytes()}
}
