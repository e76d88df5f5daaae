package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
	"github.com/orderflow/orderflow/internal/eventstore/postgres"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/sagaview"
	"github.com/orderflow/orderflow/sagas"
	"github.com/orderflow/orderflow/services/internal/pgdb"
	"github.com/orderflow/orderflow/services/internal/serve"
)

// sagaSource is where the sagas command reads sagas: the sagas service
// over HTTP, or the service's database directly. Both hand back what
// GET /api/sagas/{id} and GET /api/sagas answer, decoded the same way, so
// that show and list print the same whichever source they read.
type sagaSource interface {
	// Saga returns the saga with the given id; errSagaNotFound when no
	// saga has it.
	Saga(ctx context.Context, id string) (sagas.View, error)
	// List returns a page of sagas, newest first.
	List(ctx context.Context, q sagaQuery) (sagaPage, error)
	Close()
}

// sagaQuery is what list asks for (GET /api/sagas's parameters).
type sagaQuery struct {
	status, orderID, after string
	limit                  int
}

// describe renders the filters for a message, e.g. " with status failed".
func (q sagaQuery) describe() string {
	var s string
	if q.status != "" {
		s += " with status " + q.status
	}
	if q.orderID != "" {
		s += " for order " + q.orderID
	}
	if q.after != "" {
		s += " after the cursor given"
	}
	return s
}

// sagaPage is one page of a list, as GET /api/sagas answers it.
type sagaPage struct {
	Items []sagas.Summary `json:"items"`
	Next  string          `json:"next"`
}

// decodeSagaJSON decodes a saga, a page or a summary the way every source
// does: numbers in a history entry's detail stay json.Number, so that
// whatever the service wrote is printed back unchanged.
func decodeSagaJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

// normalize passes v through its JSON form, as a view read over HTTP has
// been: the database source then draws exactly what the service's answer
// draws (details' raw JSON becomes maps with sorted keys, times are
// RFC 3339).
func normalize[T any](v T) (T, error) {
	var out T
	data, err := json.Marshal(v)
	if err != nil {
		return out, err
	}
	err = decodeSagaJSON(data, &out)
	return out, err
}

// Errors of the sources, for errors.Is; the messages the operator reads
// are their own (markedf).
var (
	// errSagaNotFound: no saga has the id asked for.
	errSagaNotFound = errors.New("saga not found")
	// errSagasUnreachable: the sagas service did not answer at all.
	errSagasUnreachable = errors.New("sagas service unreachable")
)

// markedError is a message for the operator that also matches a sentinel
// (errors.Is), without the sentinel's words tacked onto the message.
type markedError struct {
	msg      string
	sentinel error
}

func (e *markedError) Error() string        { return e.msg }
func (e *markedError) Is(target error) bool { return target == e.sentinel }

func markedf(sentinel error, format string, args ...any) error {
	return &markedError{msg: fmt.Sprintf(format, args...), sentinel: sentinel}
}

// httpSagaSource asks the sagas service (or the gateway in front of it).
type httpSagaSource struct {
	base   *url.URL
	token  string
	client *http.Client
}

// sagaHTTPTimeout bounds one request: a saga's view is small, and an
// operator at a terminal wants an answer or a reason quickly.
const sagaHTTPTimeout = 15 * time.Second

func newHTTPSagaSource(raw, token string) (*httpSagaSource, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("the sagas service URL %q is not an http:// or https:// URL such as %s", raw, defaultSagasURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	return &httpSagaSource{base: u, token: token, client: &http.Client{Timeout: sagaHTTPTimeout}}, nil
}

func (s *httpSagaSource) Close() { s.client.CloseIdleConnections() }

// where names the service for messages, without credentials.
func (s *httpSagaSource) where() string { return s.base.Redacted() }

// httpAnswer is a response read whole.
type httpAnswer struct {
	status int
	body   []byte
	url    string
}

func (s *httpSagaSource) do(ctx context.Context, method, path string, query url.Values, body []byte) (httpAnswer, error) {
	u := *s.base
	u.Path += path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return httpAnswer{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	res, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return httpAnswer{}, ctx.Err()
		}
		return httpAnswer{}, markedf(errSagasUnreachable, "cannot reach the sagas service at %s (%s): is `make run` running? Otherwise point --url (or env ORDERFLOW_SAGAS_URL) at the sagas service, or read its database with --database-url",
			s.where(), netReason(err))
	}
	defer res.Body.Close()
	// A saga's history is at most a few hundred entries; the cap only
	// guards against a wrong URL streaming something endless.
	data, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return httpAnswer{}, fmt.Errorf("%s %s at %s: reading the answer: %w", method, path, s.where(), err)
	}
	return httpAnswer{status: res.StatusCode, body: data, url: u.Redacted()}, nil
}

// netReason is the short cause of a failed request: "connection refused",
// "no answer within 15s", "no such host".
func netReason(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "no answer within " + sagaHTTPTimeout.String()
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		msg := op.Err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		return msg
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// problem is the part of an RFC 9457 answer the messages use.
type problem struct {
	Title  string `json:"title"`
	Detail string `json:"detail"`
}

// answerError describes an answer other than the one expected, with the
// problem's detail when the body is one.
func (a httpAnswer) answerError(what string) error {
	var p problem
	msg := http.StatusText(a.status)
	if json.Unmarshal(a.body, &p) == nil && (p.Detail != "" || p.Title != "") {
		msg = p.Title
		if p.Detail != "" {
			msg = p.Detail
		}
	}
	hint := ""
	switch a.status {
	case http.StatusUnauthorized, http.StatusForbidden:
		hint = " (the gateway wants a token: --token or env ORDERFLOW_TOKEN; a retry wants an admin's)"
	case http.StatusServiceUnavailable:
		hint = " (the service is up but a dependency is not; try again shortly)"
	}
	return fmt.Errorf("%s: %s answered %d: %s%s", what, a.url, a.status, msg, hint)
}

func (s *httpSagaSource) Saga(ctx context.Context, id string) (sagas.View, error) {
	a, err := s.do(ctx, http.MethodGet, "/api/sagas/"+url.PathEscape(id), nil, nil)
	if err != nil {
		return sagas.View{}, err
	}
	switch a.status {
	case http.StatusOK:
	case http.StatusNotFound:
		return sagas.View{}, markedf(errSagaNotFound, "no saga %s: the sagas service at %s knows no saga with that id (the saga_id POST /api/orders answered; sagas show --order-id ORDER_ID finds an order's)",
			id, s.where())
	default:
		return sagas.View{}, a.answerError("saga " + id)
	}
	var v sagas.View
	if err := decodeSagaJSON(a.body, &v); err != nil || v.SagaID == "" {
		return sagas.View{}, fmt.Errorf("saga %s: the answer of %s is not a saga (is it the sagas service?)", id, a.url)
	}
	return v, nil
}

func (s *httpSagaSource) List(ctx context.Context, q sagaQuery) (sagaPage, error) {
	params := url.Values{}
	for k, v := range map[string]string{"status": q.status, "order_id": q.orderID, "after": q.after} {
		if v != "" {
			params.Set(k, v)
		}
	}
	params.Set("limit", strconv.Itoa(q.limit))
	a, err := s.do(ctx, http.MethodGet, "/api/sagas", params, nil)
	if err != nil {
		return sagaPage{}, err
	}
	if a.status != http.StatusOK {
		return sagaPage{}, a.answerError("list sagas")
	}
	var p sagaPage
	if err := decodeSagaJSON(a.body, &p); err != nil || p.Items == nil {
		return sagaPage{}, fmt.Errorf("list sagas: the answer of %s is not a list of sagas (is it the sagas service?)", a.url)
	}
	return p, nil
}

// Retry asks the service to resume a failed saga and returns the status
// it answers.
func (s *httpSagaSource) Retry(ctx context.Context, id string) (string, error) {
	a, err := s.do(ctx, http.MethodPost, "/api/sagas/"+url.PathEscape(id)+"/retry", nil, []byte("{}"))
	if err != nil {
		return "", err
	}
	switch a.status {
	case http.StatusAccepted, http.StatusOK:
	case http.StatusNotFound:
		return "", markedf(errSagaNotFound, "no saga %s: the sagas service at %s knows no saga with that id", id, s.where())
	default:
		return "", a.answerError("retry saga " + id)
	}
	var r struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(a.body, &r) != nil || r.Status == "" {
		r.Status = "accepted"
	}
	return r.Status, nil
}

// dbSagaSource reads the sagas service's database: a saga from its
// stream saga-<id> in the event store, folded with the engine as the
// service folds it; a list from the service's saga read model (the
// sagaview projection), or, in a database that has none yet, from every
// saga stream folded.
type dbSagaSource struct {
	pool  *pgxpool.Pool
	store eventstore.Store
	name  string
	reg   *domain.Registry
	// readModel: the saga read model is installed.
	readModel bool
}

// openSagaDatabase opens the sagas database at rawURL, and its event
// store: the one in that database, or the one eventStore names (empty: in
// the database).
func openSagaDatabase(ctx context.Context, rawURL, eventStore string) (*dbSagaSource, error) {
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		// pgx's message can quote the URL; keep the password out of it.
		return nil, usagef("the database URL cannot be parsed")
	}
	cfg.MaxConns = 4
	// Looking at sagas must never change them, whatever role connects.
	cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	db := cfg.ConnConfig.Database
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, connectError(db, err)
	}
	d := &dbSagaSource{pool: pool, reg: sagas.NewRegistry()}
	var hasEvents bool
	err = pool.QueryRow(ctx, "SELECT current_database(), to_regclass('es_events') IS NOT NULL, to_regclass($1) IS NOT NULL",
		projections.View(sagaview.Name)).Scan(&d.name, &hasEvents, &d.readModel)
	if err != nil {
		pool.Close()
		return nil, connectError(db, err)
	}
	if eventStore != "" && eventStore != rawURL {
		d.store, err = serve.OpenEventStore(ctx, eventStore, rawURL, pool, slog.New(slog.DiscardHandler))
		if err != nil {
			pool.Close()
			return nil, err
		}
		return d, nil
	}
	if !hasEvents {
		pool.Close()
		return nil, fmt.Errorf("database %s has no event store (no es_events table): is it the sagas service's database (%s)?", d.name, pgdb.Name("sagas"))
	}
	d.store, err = postgres.New(ctx, pool, postgres.Config{Committers: 1})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return d, nil
}

func (d *dbSagaSource) Close() {
	d.store.Close()
	d.pool.Close()
}

// sagaReadBatch is how many events one read of the store returns.
const sagaReadBatch = 1000

func (d *dbSagaSource) Saga(ctx context.Context, id string) (sagas.View, error) {
	stream := sagas.Stream(id)
	st := &sagas.State{}
	for from := int64(1); ; {
		events, err := d.store.ReadStream(ctx, stream, from, sagaReadBatch)
		if err != nil {
			return sagas.View{}, fmt.Errorf("read saga %s from database %s: %w", id, d.name, err)
		}
		for _, e := range events {
			if err := d.apply(st, e); err != nil {
				return sagas.View{}, err
			}
			from = e.Version + 1
		}
		if len(events) < sagaReadBatch {
			break
		}
	}
	if !st.Started() {
		return sagas.View{}, markedf(errSagaNotFound, "no saga %s in database %s (no stream %s; is it the sagas service's database, %s?)",
			id, d.name, stream, pgdb.Name("sagas"))
	}
	return normalize(st.View())
}

// apply decodes one stored saga event and applies it to st.
func (d *dbSagaSource) apply(st *sagas.State, e domain.Envelope) error {
	ev, err := d.reg.Decode(e)
	if err != nil {
		return fmt.Errorf("saga stream %s, event %d (%s v%d): %w; is this orderflow older than the coordinator that wrote it?",
			e.Stream, e.Version, e.Type, e.SchemaVersion, err)
	}
	st.Apply(ev)
	return nil
}

// List reads the read model the way GET /api/sagas does, with the same
// order and cursors.
func (d *dbSagaSource) List(ctx context.Context, q sagaQuery) (sagaPage, error) {
	if !d.readModel {
		return d.foldList(ctx, q)
	}
	items, next, err := sagaview.List(ctx, d.pool, sagaview.Filter{Status: q.status, OrderID: q.orderID}, q.limit, q.after)
	var ve *domain.ValidationError
	switch {
	case errors.As(err, &ve):
		return sagaPage{}, usagef("sagas list: %v", err)
	case err != nil:
		return sagaPage{}, fmt.Errorf("read the saga read model of database %s: %w", d.name, err)
	}
	if items == nil {
		items = []sagas.Summary{}
	}
	return normalize(sagaPage{Items: items, Next: next})
}

// foldList folds every saga stream of the store into its summary, then
// filters, sorts (newest first, as the read model does) and pages. It
// reads the whole saga part of the store, which suits a look at a
// database whose read model is not installed (a coordinator that never
// ran its projection); the cursor is the id of the last saga listed.
func (d *dbSagaSource) foldList(ctx context.Context, q sagaQuery) (sagaPage, error) {
	states := make(map[string]*sagas.State)
	filter := eventstore.Filter{StreamPrefixes: []string{sagas.StreamPrefix}}
	for after := uint64(0); ; {
		events, err := d.store.ReadAll(ctx, after, sagaReadBatch, filter)
		if err != nil {
			return sagaPage{}, fmt.Errorf("read the sagas of database %s: %w", d.name, err)
		}
		for _, e := range events {
			after = e.Position
			st := states[e.Stream]
			if st == nil {
				st = &sagas.State{}
				states[e.Stream] = st
			}
			if err := d.apply(st, e); err != nil {
				return sagaPage{}, err
			}
		}
		if len(events) < sagaReadBatch {
			break
		}
	}
	var items []sagas.Summary
	for _, st := range states {
		if !st.Started() {
			continue
		}
		sum := st.Summarize()
		if (q.status != "" && string(sum.Status) != q.status) || (q.orderID != "" && sum.OrderID != q.orderID) {
			continue
		}
		items = append(items, sum)
	}
	slices.SortFunc(items, func(a, b sagas.Summary) int {
		// RFC 3339 with trimmed fractions does not sort as text.
		if c := parseSagaTime(b.StartedAt).Compare(parseSagaTime(a.StartedAt)); c != 0 {
			return c
		}
		return strings.Compare(b.SagaID, a.SagaID)
	})
	if q.after != "" {
		i := slices.IndexFunc(items, func(s sagas.Summary) bool { return listCursor(s) == q.after })
		if i < 0 {
			return sagaPage{}, usagef("sagas list: --after %q is no cursor of this list", q.after)
		}
		items = items[i+1:]
	}
	page := sagaPage{Items: items}
	if len(items) > q.limit {
		page.Items, page.Next = items[:q.limit], listCursor(items[q.limit-1])
	}
	if page.Items == nil {
		page.Items = []sagas.Summary{}
	}
	return normalize(page)
}

// listCursor names a saga's place in a folded list: its id, since the
// list is ordered by start time and then id.
func listCursor(s sagas.Summary) string { return s.SagaID }
