// Package sagaview is the saga read model of the coordinator: one row per
// saga with what GET /api/sagas lists (its summary: status, current step,
// steps with attempts, timestamps and errors) and the saga's next
// deadline, folded from the saga streams, and the queries behind the list
// and the coordinator's deadline poller.
//
// A saga's summary and deadline are functions of its whole state, which
// only the engine knows how to fold (sagas.State.Apply), so a row is not
// folded event by event the way the other read models fold theirs: the
// projection keeps the states of recently seen sagas in memory, applies
// each batch's events to them with the engine, and writes the rows the
// engine's Summarize and Deadline give. A saga whose state is not in
// memory (after a restart, or evicted) is replayed from its stream,
// read through the projection's own transaction by a Loader, up to the
// version its row reflects. The rows are therefore derived from the saga
// streams alone, and a rebuild from position zero yields the same rows
// (docs/adr/0106-saga-read-model.md).
package sagaview

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/internal/viewkit"
	"github.com/orderflow/orderflow/sagas"
)

// Name is the projection's name; its table is "sagas", read through the
// view rm_sagas.
const Name = "sagas"

const table = "sagas"

// StreamPrefixes are the streams the projection reads.
var StreamPrefixes = []string{sagas.StreamPrefix}

// DefaultCacheSize is how many saga states the projection keeps in memory
// when New is given 0: enough for every saga active in the last several
// seconds at a thousand new sagas a second.
const DefaultCacheSize = 20_000

// Loader reads the events of stream with version <= upTo, in version
// order, through q: the projection's transaction, so that it reads the
// store the projection is fed from. It is only called for sagas whose
// state is not in memory.
type Loader func(ctx context.Context, q projections.Querier, stream string, upTo int64) ([]domain.Envelope, error)

// Projection folds saga events into the sagas table.
type Projection struct {
	load Loader
	reg  *domain.Registry
	bulk projections.Columns

	mu    sync.Mutex
	cache *stateCache
}

var _ projections.Projection = (*Projection)(nil)

// New returns the saga projection; load replays a saga whose state is not
// in memory, and cacheSize bounds the states kept (0: DefaultCacheSize).
func New(load Loader, cacheSize int) *Projection {
	if cacheSize <= 0 {
		cacheSize = DefaultCacheSize
	}
	return &Projection{load: load, reg: sagas.NewRegistry(), bulk: columns.Bulk(), cache: newStateCache(cacheSize)}
}

// row is a saga as stored, and its tags are the sagas table: see
// viewkit.Columns. Summary is the list item (sagas.Summary) as JSON; it is
// only ever returned whole. Deadline is when the coordinator must wake the
// saga up if nothing arrives ('infinity' when it waits for nothing that
// has a deadline: ended, parked, or waiting for an outside event).
type row struct {
	ID                [16]byte           `db:"saga_id,uuid,key"`
	Type              string             `db:"type,text,fixed"`
	DefinitionVersion int64              `db:"definition_version,bigint,fixed"`
	OrderID           string             `db:"order_id,text,fixed"`
	Status            string             `db:"status,text"`
	Summary           json.RawMessage    `db:"summary,json"`
	Deadline          pgtype.Timestamptz `db:"deadline,timestamptz"`
	CreatedAt         time.Time          `db:"created_at,timestamptz,fixed"`
	UpdatedAt         time.Time          `db:"updated_at,timestamptz"`
	Version           int64              `db:"version,bigint"`
}

var columns = viewkit.NewColumns[row](table)

// Name implements projections.Projection.
func (p *Projection) Name() string { return Name }

// Tables implements projections.Projection.
func (p *Projection) Tables() []string { return []string{table} }

// Schema implements projections.Projection. The lists are ordered newest
// first by (created_at, saga_id), and each filter has an index in that
// order; the deadline poller reads the sagas due by deadline.
func (p *Projection) Schema(t projections.Tables) projections.Schema {
	name := t.Name(table)
	return projections.Schema{
		Tables: []string{columns.CreateTable(t)},
		Indexes: []string{
			`CREATE INDEX ` + t.Index(table, "by_created") + ` ON ` + name + ` (created_at DESC, saga_id DESC)`,
			`CREATE INDEX ` + t.Index(table, "by_status") + ` ON ` + name + ` (status, created_at DESC, saga_id DESC)`,
			`CREATE INDEX ` + t.Index(table, "by_order") + ` ON ` + name + ` (order_id, created_at DESC, saga_id DESC)`,
			`CREATE INDEX ` + t.Index(table, "by_deadline") + ` ON ` + name + ` (deadline) WHERE ` + pendingDeadline,
		},
	}
}

// pendingDeadline is the condition of the rows whose saga has a deadline;
// the deadline index covers exactly those, and the queries repeat it so
// that the planner may use the index.
const pendingDeadline = "deadline <> 'infinity'"

// change is one decoded event of a batch.
type change struct {
	e       domain.Envelope
	payload any
}

// Apply implements projections.Projection: it loads the versions of the
// rows the batch touches, brings each saga's state (from memory, or
// replayed) to the batch's last event of it, and writes the new rows and
// the changed ones with one statement each.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, t projections.Tables, events []domain.Envelope) error {
	var keys [][16]byte
	byKey := make(map[[16]byte][]change)
	for _, e := range events {
		id, ok := strings.CutPrefix(e.Stream, sagas.StreamPrefix)
		if !ok {
			continue
		}
		k, err := uuid.Parse(id)
		if err != nil {
			return projections.Undecodable(e, fmt.Errorf("stream %s: %w", e.Stream, err))
		}
		payload, err := p.reg.Decode(e)
		if err != nil {
			return projections.Undecodable(e, err)
		}
		if _, seen := byKey[k]; !seen {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], change{e: e, payload: payload})
	}
	if len(keys) == 0 {
		return nil
	}
	stored, err := storedVersions(ctx, tx, t, keys)
	if err != nil {
		return err
	}
	var inserts, updates [][]any
	for _, k := range keys {
		sv := stored[k]
		changes := byKey[k]
		for len(changes) > 0 && changes[0].e.Version <= sv {
			changes = changes[1:] // already reflected
		}
		if len(changes) == 0 {
			continue
		}
		st, err := p.state(ctx, tx, t, k, sv)
		if err != nil {
			return err
		}
		for _, c := range changes {
			st.Apply(c.payload)
		}
		last := changes[len(changes)-1].e
		p.remember(t, k, st, last.Version)
		if !st.Started() {
			// Its SagaStarted was parked: there is no saga to show.
			continue
		}
		r, err := rowOf(k, st, last)
		if err != nil {
			return err
		}
		if sv == 0 {
			inserts = append(inserts, columns.Values(r))
		} else {
			updates = append(updates, columns.Values(r))
		}
	}
	if err := p.bulk.Insert(ctx, tx, t, inserts); err != nil {
		return err
	}
	return p.bulk.Update(ctx, tx, t, updates)
}

// storedVersions returns the version of the row of each key that has one.
func storedVersions(ctx context.Context, tx pgx.Tx, t projections.Tables, keys [][16]byte) (map[[16]byte]int64, error) {
	rows, err := tx.Query(ctx, "SELECT saga_id, version FROM "+t.Name(table)+" WHERE saga_id = ANY($1)", keys)
	if err != nil {
		return nil, fmt.Errorf("load %s versions: %w", table, err)
	}
	out := make(map[[16]byte]int64, len(keys))
	for rows.Next() {
		var (
			k [16]byte
			v int64
		)
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load %s versions: %w", table, err)
		}
		out[k] = v
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load %s versions: %w", table, err)
	}
	return out, nil
}

// state returns the state of saga k as its row at version sv reflects it:
// the one kept in memory if it is at that version, a fresh one for a saga
// without a row, else the saga's events up to sv replayed. The state is
// taken out of memory: the caller puts it back (remember) once it has
// applied the batch, so that a batch that fails leaves nothing behind
// that a retry could apply twice.
func (p *Projection) state(ctx context.Context, q projections.Querier, t projections.Tables, k [16]byte, sv int64) (*sagas.State, error) {
	key := cacheKey{version: t.Version, id: k}
	p.mu.Lock()
	st, v, ok := p.cache.take(key)
	p.mu.Unlock()
	if ok && v == sv {
		return st, nil
	}
	st = &sagas.State{}
	if sv == 0 {
		return st, nil
	}
	if p.load == nil {
		return nil, fmt.Errorf("saga %s: its state is not in memory: %w", uuid.UUID(k), ErrNoLoader)
	}
	stream := sagas.Stream(uuid.UUID(k).String())
	events, err := p.load(ctx, q, stream, sv)
	if err != nil {
		return nil, fmt.Errorf("replay %s up to %d: %w", stream, sv, err)
	}
	for _, e := range events {
		payload, err := p.reg.Decode(e)
		if err != nil {
			// Parked when it was first met, so skipped then too.
			continue
		}
		st.Apply(payload)
	}
	return st, nil
}

// remember keeps st as the state of saga k at version v.
func (p *Projection) remember(t projections.Tables, k [16]byte, st *sagas.State, v int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cache.put(cacheKey{version: t.Version, id: k}, st, v)
}

// rowOf is the row of saga k in state st, last being the newest event
// applied.
func rowOf(k [16]byte, st *sagas.State, last domain.Envelope) (*row, error) {
	sum := st.Summarize()
	js, err := json.Marshal(sum)
	if err != nil {
		return nil, projections.Undecodable(last, err)
	}
	name, version := st.Definition()
	started, err := time.Parse(time.RFC3339Nano, sum.StartedAt)
	if err != nil {
		return nil, projections.Undecodable(last, fmt.Errorf("started_at: %w", err))
	}
	deadline := pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
	if at, ok := st.Deadline(); ok {
		deadline = pgtype.Timestamptz{Time: at.UTC().Truncate(time.Microsecond), Valid: true}
	}
	return &row{
		ID:                k,
		Type:              name,
		DefinitionVersion: int64(version),
		OrderID:           st.OrderID(),
		Status:            string(st.Status()),
		Summary:           js,
		Deadline:          deadline,
		// PostgreSQL keeps microseconds; truncating here keeps a row the
		// same whether it was just written or read back.
		CreatedAt: started.UTC().Truncate(time.Microsecond),
		UpdatedAt: last.RecordedAt.UTC(),
		Version:   last.Version,
	}, nil
}

// Filter narrows List; empty fields match everything.
type Filter struct {
	Status  string
	OrderID string
	// Type is the saga type (order_fulfillment, ...).
	Type string
	// StartedAfter and StartedBefore bound when the saga started: at or
	// after the one, before the other.
	StartedAfter, StartedBefore time.Time
}

// Validate reports filter values no saga can match as field errors.
func (f Filter) Validate() error {
	var v domain.ValidationError
	if f.Status != "" && !sagas.Status(f.Status).Valid() {
		v.Add("status", "must be one of running, completed, compensating, compensated, failed")
	}
	if f.OrderID != "" && !domain.ValidUUID(f.OrderID) {
		v.Add("order_id", "must be a UUID")
	}
	if len(f.Type) > 100 {
		v.Add("type", "must be at most 100 characters")
	}
	if !f.StartedAfter.IsZero() && !f.StartedBefore.IsZero() && !f.StartedAfter.Before(f.StartedBefore) {
		v.Add("started_before", "must be after started_after")
	}
	return v.Err()
}

// item is a listed saga with the key its cursor is made of.
type item struct {
	summary sagas.Summary
	created time.Time
	id      string
}

func (r *row) item() (item, error) {
	it := item{created: r.CreatedAt.UTC(), id: uuid.UUID(r.ID).String()}
	if err := json.Unmarshal(r.Summary, &it.summary); err != nil {
		return item{}, fmt.Errorf("saga %s summary: %w", it.id, err)
	}
	return it, nil
}

var (
	selectView = columns.SelectView()
	scanItem   = viewkit.Scanner(columns, (*row).item)
)

// newestFirst is the order of every list.
const newestFirst = viewkit.NewestFirst("saga_id")

// List returns up to limit sagas matching f, newest first, after the
// cursor after (empty: from the start), and the cursor of the next page
// (empty on the last page). limit 0 means projections.DefaultLimit; a bad
// limit, filter or cursor is a *domain.ValidationError.
func List(ctx context.Context, q projections.Querier, f Filter, limit int, after string) ([]sagas.Summary, string, error) {
	p, err := viewkit.NewPage(limit, f)
	if err != nil {
		return nil, "", err
	}
	if f.Status != "" {
		p.Where("status = " + p.Arg(f.Status))
	}
	if f.OrderID != "" {
		p.Where("order_id = " + p.Arg(strings.ToLower(f.OrderID)))
	}
	if f.Type != "" {
		p.Where("type = " + p.Arg(f.Type))
	}
	if !f.StartedAfter.IsZero() {
		p.Where("created_at >= " + p.Arg(f.StartedAfter.UTC()))
	}
	if !f.StartedBefore.IsZero() {
		p.Where("created_at < " + p.Arg(f.StartedBefore.UTC()))
	}
	if err := newestFirst.After(p, after); err != nil {
		return nil, "", err
	}
	items, next, err := viewkit.List(ctx, q, scanItem, p, selectView, newestFirst.OrderBy(),
		func(it item) any { return newestFirst.Cursor(it.created, it.id) })
	if err != nil {
		return nil, "", fmt.Errorf("list sagas: %w", err)
	}
	out := make([]sagas.Summary, len(items))
	for i, it := range items {
		out[i] = it.summary
	}
	return out, next, nil
}

// Get returns the summary of saga id and the version of its stream the
// row reflects, or domain.ErrNotFound.
func Get(ctx context.Context, q projections.Querier, id string) (sagas.Summary, int64, error) {
	type got struct {
		item
		version int64
	}
	scan := viewkit.Scanner(columns, func(r *row) (got, error) {
		it, err := r.item()
		return got{item: it, version: r.Version}, err
	})
	g, err := viewkit.Get(ctx, q, scan, "saga", id, domain.ValidUUID(id), selectView+" WHERE saga_id = $1")
	if err != nil {
		return sagas.Summary{}, 0, err
	}
	return g.summary, g.version, nil
}

// Due is a saga whose deadline has passed, as its row says.
type Due struct {
	SagaID   string
	Deadline time.Time
	// Version is the version of the saga's stream the row reflects.
	Version int64
}

// DueBy returns up to limit sagas whose deadline is at or before now,
// the earliest first.
func DueBy(ctx context.Context, q projections.Querier, now time.Time, limit int) ([]Due, error) {
	rows, err := q.Query(ctx, "SELECT saga_id::text, deadline, version FROM "+projections.View(table)+
		" WHERE "+pendingDeadline+" AND deadline <= $1 ORDER BY deadline LIMIT $2", now, limit)
	if err != nil {
		return nil, fmt.Errorf("sagas due: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Due, error) {
		var d Due
		err := r.Scan(&d.SagaID, &d.Deadline, &d.Version)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("sagas due: %w", err)
	}
	return out, nil
}

// NextDeadline returns the earliest deadline of any saga, and false when
// no saga has one.
func NextDeadline(ctx context.Context, q projections.Querier) (time.Time, bool, error) {
	var at pgtype.Timestamptz
	err := q.QueryRow(ctx, "SELECT min(deadline) FROM "+projections.View(table)+" WHERE "+pendingDeadline).Scan(&at)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next saga deadline: %w", err)
	}
	if !at.Valid || at.InfinityModifier != pgtype.Finite {
		return time.Time{}, false, nil
	}
	return at.Time, true, nil
}

// CountByStatus returns how many sagas have each status (statuses with
// none are absent).
func CountByStatus(ctx context.Context, q projections.Querier) (map[sagas.Status]int64, error) {
	rows, err := q.Query(ctx, "SELECT status, count(*) FROM "+projections.View(table)+" GROUP BY status")
	if err != nil {
		return nil, fmt.Errorf("count sagas: %w", err)
	}
	out := make(map[sagas.Status]int64)
	for rows.Next() {
		var (
			s string
			n int64
		)
		if err := rows.Scan(&s, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("count sagas: %w", err)
		}
		out[sagas.Status(s)] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count sagas: %w", err)
	}
	return out, nil
}

// ErrNoLoader is returned by Apply for a saga it must replay when the
// projection was built without a Loader.
var ErrNoLoader = errors.New("sagaview: no loader")

// stateCache keeps the most recently used saga states with the version of
// the stream each reflects. It is not safe for concurrent use.
type stateCache struct {
	max   int
	order *list.List // of *cached, most recent first
	byKey map[cacheKey]*list.Element
}

// cacheKey keys a state by the table version it was computed for: a
// rebuild writes another version beside the live one, from other rows.
type cacheKey struct {
	version int
	id      [16]byte
}

type cached struct {
	key     cacheKey
	st      *sagas.State
	version int64
}

func newStateCache(max int) *stateCache {
	return &stateCache{max: max, order: list.New(), byKey: make(map[cacheKey]*list.Element)}
}

// take removes and returns the state kept for k.
func (c *stateCache) take(k cacheKey) (*sagas.State, int64, bool) {
	el, ok := c.byKey[k]
	if !ok {
		return nil, 0, false
	}
	c.order.Remove(el)
	delete(c.byKey, k)
	e := el.Value.(*cached)
	return e.st, e.version, true
}

// put keeps st for k, evicting the least recently used state when full.
func (c *stateCache) put(k cacheKey, st *sagas.State, v int64) {
	if el, ok := c.byKey[k]; ok {
		e := el.Value.(*cached)
		e.st, e.version = st, v
		c.order.MoveToFront(el)
	} else {
		c.byKey[k] = c.order.PushFront(&cached{key: k, st: st, version: v})
	}
	for c.order.Len() > c.max {
		old := c.order.Remove(c.order.Back()).(*cached)
		delete(c.byKey, old.key)
	}
}
