package projections

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/domain"
)

// Projection folds events into the tables of one read model.
type Projection interface {
	// Name identifies the projection in projection_versions, in its locks
	// and in the operations API, e.g. "orders".
	Name() string
	// Tables lists the logical names of the projection's tables. Version n
	// stores logical table t as t_v<n>; queries read the view rm_<t>.
	Tables() []string
	// Schema returns the DDL of the tables of one version.
	Schema(t Tables) Schema
	// Apply folds events, in global order, into the tables of t within tx.
	// Events already reflected in the rows must change nothing (the runtime
	// never applies an event twice, but the projection's own version checks
	// are the second line of defence). An event that cannot be decoded makes
	// Apply fail with an error wrapping ErrUndecodable.
	Apply(ctx context.Context, tx pgx.Tx, t Tables, events []domain.Envelope) error
}

// Decoder is implemented by projections whose Apply splits into a CPU-bound
// part that needs no database (parsing payloads) and the rest. A rebuild
// decodes the next batch while the current one is being written; Apply must
// still work on its own and equal ApplyDecoded(Decode(events)).
type Decoder interface {
	// Decode parses events; an undecodable event makes it fail like Apply.
	Decode(events []domain.Envelope) (any, error)
	// ApplyDecoded applies what Decode returned for a batch.
	ApplyDecoded(ctx context.Context, tx pgx.Tx, t Tables, decoded any) error
}

// Schema is the DDL of one version of a read model, written for the physical
// table names given by a Tables.
type Schema struct {
	// Tables creates the tables with their primary keys; it runs before
	// any row is written.
	Tables []string
	// Indexes creates the secondary indexes. A rebuild runs them after its
	// bulk replay, which is cheaper than maintaining them row by row.
	Indexes []string
}

// Tables names the physical tables of one version of a read model.
type Tables struct {
	Version int
}

// Name returns the quoted physical name of logical table t in this version.
func (v Tables) Name(t string) string { return pgx.Identifier{v.physical(t)}.Sanitize() }

// Index returns a quoted index name for logical table t and a suffix, unique
// to this version.
func (v Tables) Index(t, suffix string) string {
	return pgx.Identifier{v.physical(t) + "_" + suffix}.Sanitize()
}

func (v Tables) physical(t string) string { return fmt.Sprintf("%s_v%d", t, v.Version) }

// View returns the name of the view through which queries read logical
// table t, e.g. "rm_orders".
func View(t string) string { return "rm_" + t }

// ErrUndecodable marks an event a projection cannot read: an unknown type or
// schema version, or a payload that does not parse. Such an event is parked
// at once, without retries.
var ErrUndecodable = errors.New("undecodable event")

// Undecodable wraps err, the decoding failure of event e, with
// ErrUndecodable.
func Undecodable(e domain.Envelope, err error) error {
	return fmt.Errorf("event %s (%s at %d): %w: %w", e.ID, e.Type, e.Position, ErrUndecodable, err)
}

// ErrOutOfOrder may be wrapped by a projection fed by JetStream that sees an
// event of a stream before an earlier one it needs (a version gap). The
// runtime treats it like a database error: the batch is redelivered later,
// by when the missing event has usually arrived. Events from the event
// store always come in order.
var ErrOutOfOrder = errors.New("event arrived before an earlier event of its stream")

// ErrRebuildRunning is returned by Rebuild while another rebuild of the same
// projection runs, in this process or another one.
var ErrRebuildRunning = fmt.Errorf("rebuild already running: %w", domain.ErrIllegalState)

// Querier runs read queries: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Source is the global order of an event store, restricted to the streams a
// projection reads.
type Source interface {
	// ReadAll returns up to max events with Position > after, in order.
	ReadAll(ctx context.Context, after uint64, max int) ([]domain.Envelope, error)
	// Head returns the position of the newest event of the store, whether
	// or not it passes the source's filter.
	Head(ctx context.Context) (uint64, error)
	// Wait returns when events beyond after may exist, or after a short
	// poll interval, or with ctx's error.
	Wait(ctx context.Context, after uint64) error
}
