package relay

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/services/internal/pgdb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or updates the relay's tables (relay_checkpoints,
// relay_parked) in the service's database.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("relay migrations: %w", err)
	}
	return pgdb.Migrate(ctx, pool, "relay", sub)
}

// Checkpoints is the relays' durable state in the service's database: how
// far each relay has published, and the events it parked.
type Checkpoints struct {
	pool *pgxpool.Pool
}

// NewCheckpoints returns the checkpoints kept in pool's database, which
// must have been migrated with Migrate.
func NewCheckpoints(pool *pgxpool.Pool) *Checkpoints {
	return &Checkpoints{pool: pool}
}

// Get returns the position relay name has published up to (0 when it has
// not started yet).
func (c *Checkpoints) Get(ctx context.Context, name string) (uint64, error) {
	return loadCheckpoint(ctx, c.pool, name)
}

// Parked is an event a relay skipped because it can never be published.
type Parked struct {
	Relay    string
	Position uint64
	EventID  string
	Stream   string
	Type     string
	Error    string
	ParkedAt time.Time
}

// Parked lists the events relay name parked, in position order.
func (c *Checkpoints) Parked(ctx context.Context, name string) ([]Parked, error) {
	rows, err := c.pool.Query(ctx, `SELECT name, position, event_id, stream, type, error, parked_at
		FROM relay_parked WHERE name = $1 ORDER BY position`, name)
	if err != nil {
		return nil, fmt.Errorf("relay %s: parked events: %w", name, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Parked, error) {
		var (
			p   Parked
			pos int64
		)
		err := row.Scan(&p.Relay, &pos, &p.EventID, &p.Stream, &p.Type, &p.Error, &p.ParkedAt)
		p.Position = uint64(pos)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("relay %s: parked events: %w", name, err)
	}
	return out, nil
}

// querier is what pgxpool.Pool and pgx.Conn share for reads.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func loadCheckpoint(ctx context.Context, q querier, name string) (uint64, error) {
	var pos int64
	err := q.QueryRow(ctx, "SELECT position FROM relay_checkpoints WHERE name = $1", name).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("relay %s: load checkpoint: %w", name, err)
	}
	return uint64(pos), nil
}

// lease is the exclusive right to run relay name: a session advisory lock
// held by a connection of its own (outside the pool, so it costs the pool
// nothing), through which the holder also writes its checkpoints. Two
// relays of one name (two replicas of a service) would only publish
// duplicates, which JetStream drops, but one of them doing the work while
// the other stands by halves the load and keeps the order in JetStream.
type lease struct {
	conn *pgx.Conn
	name string
}

// lockKey maps a relay name to its advisory lock.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("orderflow relay " + name))
	return int64(h.Sum64())
}

// acquire blocks until it holds name's lease or ctx is done, trying every
// poll; standby is called once if the lease is held elsewhere.
func (c *Checkpoints) acquire(ctx context.Context, name string, poll time.Duration, standby func()) (*lease, error) {
	conn, err := pgx.ConnectConfig(ctx, c.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("relay %s: lease connection: %w", name, err)
	}
	l := &lease{conn: conn, name: name}
	t := time.NewTicker(poll)
	defer t.Stop()
	for waited := false; ; waited = true {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey(name)).Scan(&ok); err != nil {
			l.close()
			return nil, fmt.Errorf("relay %s: lease: %w", name, err)
		}
		if ok {
			return l, nil
		}
		if !waited && standby != nil {
			standby()
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			l.close()
			return nil, ctx.Err()
		}
	}
}

// close ends the lease's session, which releases the lock.
func (l *lease) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = l.conn.Close(ctx)
}

// load returns the checkpoint and the resume point saved with it; the
// resume point is the zero value when none was saved or it belongs to
// another position (the position was changed by hand).
func (l *lease) load(ctx context.Context) (uint64, resumePoint, error) {
	var (
		pos int64
		rp  *resumePoint
	)
	err := l.conn.QueryRow(ctx, "SELECT position, resume FROM relay_checkpoints WHERE name = $1", l.name).Scan(&pos, &rp)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, resumePoint{}, nil
	}
	if err != nil {
		return 0, resumePoint{}, fmt.Errorf("relay %s: load checkpoint: %w", l.name, err)
	}
	if rp == nil || rp.Position != uint64(pos) {
		return uint64(pos), resumePoint{}, nil
	}
	return uint64(pos), *rp, nil
}

// writeTimeout bounds a write through the lease's connection.
const writeTimeout = 5 * time.Second

// writeContext detaches a write from the cancellation of ctx: pgx closes a
// connection whose query is cancelled, and a periodic save cut off by the
// relay's stop would take the lease's connection, and with it the final
// save of the stop, along.
func writeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
}

// save records pos and the resume point that goes with it. A checkpoint
// never moves back, whoever writes it, and the resume point stays with
// the position it was computed for.
func (l *lease) save(ctx context.Context, pos uint64, rp resumePoint) error {
	ctx, cancel := writeContext(ctx)
	defer cancel()
	rp.Position = pos
	_, err := l.conn.Exec(ctx, `INSERT INTO relay_checkpoints (name, position, resume, updated_at) VALUES ($1, $2, $3, now())
		ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, resume = EXCLUDED.resume, updated_at = now()
		WHERE relay_checkpoints.position <= EXCLUDED.position`,
		l.name, int64(pos), rp)
	if err != nil {
		return fmt.Errorf("relay %s: save checkpoint %d: %w", l.name, pos, err)
	}
	return nil
}

func (l *lease) park(ctx context.Context, p Parked) error {
	ctx, cancel := writeContext(ctx)
	defer cancel()
	_, err := l.conn.Exec(ctx, `INSERT INTO relay_parked (name, position, event_id, stream, type, error)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, position) DO NOTHING`,
		l.name, int64(p.Position), p.EventID, p.Stream, p.Type, p.Error)
	if err != nil {
		return fmt.Errorf("relay %s: park event %s: %w", l.name, p.EventID, err)
	}
	return nil
}
