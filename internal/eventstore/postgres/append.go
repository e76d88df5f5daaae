package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
)

// commitTimeout bounds one group-commit transaction.
const commitTimeout = 30 * time.Second

// copyThreshold is the batch size above which rows are written with COPY
// rather than one INSERT over arrays; below it the extra round trip COPY
// needs costs more than it saves.
const copyThreshold = 256

type appendReq struct {
	ctx      context.Context
	stream   string
	expected domain.ExpectedVersion
	events   []domain.Envelope
	meta     [][]byte
	done     chan appendResp
}

type appendResp struct {
	res domain.AppendResult
	err error
}

// Append implements eventstore.Store. The append joins the next group
// commit; it returns once that transaction has committed or failed.
func (s *Store) Append(ctx context.Context, stream string, expected domain.ExpectedVersion, events []domain.Envelope) (domain.AppendResult, error) {
	if err := eventstore.CheckAppend(stream, expected, events); err != nil {
		return domain.AppendResult{}, err
	}
	req := &appendReq{
		ctx:      ctx,
		stream:   stream,
		expected: expected,
		events:   make([]domain.Envelope, len(events)),
		meta:     make([][]byte, len(events)),
		done:     make(chan appendResp, 1),
	}
	// The events of one append nearly always share their metadata (one
	// command caused them), so each distinct value is encoded once.
	var meta []byte
	for i, e := range events {
		e.ID = strings.ToLower(e.ID)
		if e.Data == nil {
			e.Data = []byte{}
		}
		if meta == nil || e.Metadata != events[i-1].Metadata {
			m, err := json.Marshal(e.Metadata)
			if err != nil {
				return domain.AppendResult{}, fmt.Errorf("append %s: metadata: %w", stream, err)
			}
			meta = m
		}
		req.events[i], req.meta[i] = e, meta
	}
	select {
	case s.queue <- req:
	case <-s.stop:
		return domain.AppendResult{}, eventstore.ErrClosed
	case <-ctx.Done():
		return domain.AppendResult{}, ctx.Err()
	}
	select {
	case r := <-req.done:
		return r.res, r.err
	case <-ctx.Done():
		// The append may still commit; a retry with the same event ids is
		// then recognised as already done.
		return domain.AppendResult{}, ctx.Err()
	}
}

// commitLoop gathers whatever appends are queued and commits them together.
//
// Committers take turns: one holds the turn while it gathers a batch and
// until its transaction holds the append lock, then hands the turn on. The
// next committer gathers and sends its first round trip while the previous
// transaction writes and commits, so that round trip waits at the lock on
// the server instead of adding a network round trip between commits.
func (s *Store) commitLoop() {
	defer s.wg.Done()
	for {
		s.turn.Lock()
		var first *appendReq
		select {
		case first = <-s.queue:
		case <-s.stop:
			s.turn.Unlock()
			return
		}
		batch := s.gather(first, s.lastSize)
		s.lastSize = len(batch)
		s.commitBatch(batch, sync.OnceFunc(s.turn.Unlock))
	}
}

// gather adds to first whatever else is queued. When the previous batch
// showed concurrent writers, it lingers briefly while more appends keep
// arriving: writers answered by the last commit are still on their way back,
// and taking them now halves the number of commits they would otherwise pay.
func (s *Store) gather(first *appendReq, lastSize int) []*appendReq {
	batch := []*appendReq{first}
	n := len(first.events)
	linger := lastSize > 1
	deadline := time.Now().Add(maxLinger)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for n < s.cfg.MaxBatchEvents {
		select {
		case r := <-s.queue:
			batch = append(batch, r)
			n += len(r.events)
			continue
		default:
		}
		if !linger || len(batch) >= lastSize || time.Now().After(deadline) {
			return batch
		}
		if timer == nil {
			timer = time.NewTimer(lingerStep)
		} else {
			timer.Reset(lingerStep)
		}
		select {
		case r := <-s.queue:
			batch = append(batch, r)
			n += len(r.events)
		case <-timer.C:
			return batch
		case <-s.stop:
			return batch
		}
	}
	return batch
}

// Lingering bounds: wait at most lingerStep for each further append and
// maxLinger in all, small beside a commit's fsync.
const (
	lingerStep = 100 * time.Microsecond
	maxLinger  = time.Millisecond
)

// commitBatch writes one group commit and answers every append in it.
// locked is called once the batch's transaction holds the append lock, or
// when the batch ends without it.
func (s *Store) commitBatch(batch []*appendReq, locked func()) {
	defer locked()
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- appendResp{err: err}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	resps, head, err := s.writeBatch(ctx, live, false, locked)
	if errors.Is(err, errKnownIDs) {
		// Some event id is already stored: a retry of an append that
		// landed. Decide again, this time looking the ids up first.
		resps, head, err = s.writeBatch(ctx, live, true, locked)
	}
	for i, r := range live {
		if err != nil && resps[i].err == nil {
			resps[i] = appendResp{err: fmt.Errorf("append %s: %w", r.stream, err)}
		}
		r.done <- resps[i]
	}
	if err == nil && head > 0 {
		s.broadcast(head)
	}
}

// writeBatch runs the group-commit transaction in two round trips: one to
// open it, take the append lock and read what the decisions need, one to
// write the rows, notify subscribers and commit. It returns one response per
// request and the position of the last row written (0 when it wrote none);
// when err is non-nil the transaction failed and every response without its
// own error must report err.
//
// Event ids are looked up before deciding only when lookIDs is set. The
// first attempt skips the lookup and lets the unique index on event_id
// report a stored id as errKnownIDs, so the common case pays no index probes
// for it.
func (s *Store) writeBatch(ctx context.Context, reqs []*appendReq, lookIDs bool, locked func()) ([]appendResp, uint64, error) {
	resps := make([]appendResp, len(reqs))
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return resps, 0, err
	}
	// A connection released inside a transaction (after an error) is
	// closed by the pool rather than reused, so no explicit rollback is
	// needed on the error paths.
	defer conn.Release()

	streamSet := make(map[string]struct{})
	var streams, ids []string
	for _, r := range reqs {
		if _, ok := streamSet[r.stream]; !ok {
			streamSet[r.stream] = struct{}{}
			streams = append(streams, r.stream)
		}
		for _, e := range r.events {
			ids = append(ids, e.ID)
		}
	}

	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SELECT pg_advisory_xact_lock($1)", appendLockKey)
	b.Queue("SELECT coalesce(max(position), 0), now() FROM es_events")
	b.Queue(`SELECT s, coalesce((SELECT version FROM es_events WHERE stream = s ORDER BY version DESC LIMIT 1), 0)
		FROM unnest($1::text[]) AS s`, streams)
	if lookIDs {
		b.Queue(knownIDsQuery, ids)
	}
	var (
		head       int64
		recordedAt time.Time
		versions   = make(map[string]int64, len(streams))
		known      = make(map[string]eventstore.Recorded)
	)
	err = readDecisionInputs(conn.SendBatch(ctx, b), lookIDs, &head, &recordedAt, versions, known)
	locked()
	if err != nil {
		return resps, 0, err
	}

	var (
		cols       = columns{recordedAt: recordedAt}
		conflicted []int
	)
	for i, r := range reqs {
		if res, dup, err := replayed(r, known); dup || err != nil {
			resps[i] = appendResp{res: res, err: err}
			continue
		}
		cur := versions[r.stream]
		if r.expected != domain.AnyVersion && int64(r.expected) != cur {
			resps[i] = appendResp{err: fmt.Errorf("append %s: expected version %d, stream is at %d: %w", r.stream, r.expected, cur, eventstore.ErrVersionConflict)}
			if !lookIDs {
				conflicted = append(conflicted, i)
			}
			continue
		}
		for j, e := range r.events {
			head++
			cur++
			known[e.ID] = eventstore.Recorded{Stream: r.stream, Version: cur, Position: uint64(head)}
			cols.add(head, e, r.stream, cur, r.meta[j])
		}
		versions[r.stream] = cur
		resps[i] = appendResp{res: domain.AppendResult{NextVersion: cur, Position: uint64(head)}}
	}

	// A conflicting append may be the retry of one that landed; only a
	// lookup of its ids can tell.
	if len(conflicted) > 0 {
		if err := s.recheckConflicts(ctx, conn.Conn(), reqs, conflicted, resps); err != nil {
			return resps, 0, err
		}
	}

	b = &pgx.Batch{}
	if n := cols.len(); n > 0 {
		if n >= copyThreshold {
			if err := cols.copy(ctx, conn.Conn()); err != nil {
				return resps, 0, knownIDs(err)
			}
		} else {
			cols.queueInsert(b)
		}
		b.Queue("SELECT pg_notify($1, $2)", notifyChannel, fmt.Sprint(head))
	}
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return resps, 0, knownIDs(err)
	}
	if cols.len() == 0 {
		return resps, 0, nil
	}
	return resps, uint64(head), nil
}

// recheckConflicts looks up the event ids of the requests that failed their
// version check and turns those already stored in place into successes.
func (s *Store) recheckConflicts(ctx context.Context, conn *pgx.Conn, reqs []*appendReq, conflicted []int, resps []appendResp) error {
	var ids []string
	for _, i := range conflicted {
		for _, e := range reqs[i].events {
			ids = append(ids, e.ID)
		}
	}
	rows, err := conn.Query(ctx, knownIDsQuery, ids)
	if err != nil {
		return err
	}
	known := make(map[string]eventstore.Recorded)
	if err := scanKnown(rows, known); err != nil {
		return err
	}
	for _, i := range conflicted {
		if res, dup, err := replayed(reqs[i], known); dup || err != nil {
			resps[i] = appendResp{res: res, err: err}
		}
	}
	return nil
}

// errKnownIDs reports that an inserted event id is already stored.
var errKnownIDs = errors.New("event id already stored")

// knownIDs turns a unique violation of the event id index into errKnownIDs.
func knownIDs(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "es_events_event_id" {
		return errKnownIDs
	}
	return err
}

// readDecisionInputs reads the results of the first round trip.
func readDecisionInputs(br pgx.BatchResults, lookIDs bool, head *int64, recordedAt *time.Time, versions map[string]int64, known map[string]eventstore.Recorded) error {
	defer br.Close()
	for range 2 { // BEGIN, advisory lock
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	if err := br.QueryRow().Scan(head, recordedAt); err != nil {
		return err
	}
	rows, err := br.Query()
	if err != nil {
		return err
	}
	for rows.Next() {
		var st string
		var v int64
		if err := rows.Scan(&st, &v); err != nil {
			rows.Close()
			return err
		}
		versions[st] = v
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if !lookIDs {
		return br.Close()
	}
	if rows, err = br.Query(); err != nil {
		return err
	}
	if err := scanKnown(rows, known); err != nil {
		return err
	}
	return br.Close()
}

// knownIDsQuery finds where event ids are already stored.
const knownIDsQuery = "SELECT event_id::text, stream, version, position FROM es_events WHERE event_id = ANY($1::uuid[])"

// scanKnown reads the rows of knownIDsQuery into known.
func scanKnown(rows pgx.Rows, known map[string]eventstore.Recorded) error {
	defer rows.Close()
	for rows.Next() {
		var (
			id  string
			k   eventstore.Recorded
			pos int64
		)
		if err := rows.Scan(&id, &k.Stream, &k.Version, &pos); err != nil {
			return err
		}
		k.Position = uint64(pos)
		known[id] = k
	}
	return rows.Err()
}

// replayed applies the idempotency rule to r against the ids in known
// (stored, or planned earlier in this batch).
func replayed(r *appendReq, known map[string]eventstore.Recorded) (domain.AppendResult, bool, error) {
	res, done, err := eventstore.Replayed(r.stream, r.expected, r.events, func(id string) (eventstore.Recorded, bool) {
		k, ok := known[id]
		return k, ok
	})
	if err != nil {
		return res, false, fmt.Errorf("append %s: %w", r.stream, err)
	}
	return res, done, nil
}

// columns holds a batch's rows column by column, the shape both the array
// INSERT and COPY want.
type columns struct {
	positions, versions []int64
	ids, streams, types []string
	schemas             []int32
	data, meta          [][]byte
	recordedAt          time.Time // one commit, one timestamp for all rows
}

func (c *columns) add(pos int64, e domain.Envelope, stream string, version int64, meta []byte) {
	c.positions = append(c.positions, pos)
	c.ids = append(c.ids, e.ID)
	c.streams = append(c.streams, stream)
	c.versions = append(c.versions, version)
	c.types = append(c.types, e.Type)
	c.schemas = append(c.schemas, int32(e.SchemaVersion))
	c.data = append(c.data, e.Data)
	c.meta = append(c.meta, meta)
}

func (c *columns) len() int { return len(c.positions) }

func (c *columns) queueInsert(b *pgx.Batch) {
	b.Queue(`INSERT INTO es_events (position, event_id, stream, version, type, schema_version, data, metadata, recorded_at)
		SELECT p, i, s, v, t, sv, d, m, $9
		FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::int[], $7::bytea[], $8::bytea[]) AS u(p, i, s, v, t, sv, d, m)`,
		c.positions, c.ids, c.streams, c.versions, c.types, c.schemas, c.data, c.meta, c.recordedAt)
}

func (c *columns) copy(ctx context.Context, conn *pgx.Conn) error {
	buf, err := c.copyData()
	if err != nil {
		return err
	}
	_, err = conn.PgConn().CopyFrom(ctx, bytes.NewReader(buf),
		"COPY es_events (position, event_id, stream, version, type, schema_version, data, metadata, recorded_at) FROM STDIN (FORMAT binary)")
	return err
}

// pgEpoch is where PostgreSQL's binary timestamps count from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// copyData encodes the rows in COPY's binary format. The columns' types are
// fixed, so encoding them directly avoids a per-value type lookup, which
// otherwise costs more CPU than the server spends storing the row.
func (c *columns) copyData() ([]byte, error) {
	size := 19 + 2
	for i := range c.positions {
		size += 2 + 9*4 + 8 + 16 + len(c.streams[i]) + 8 + len(c.types[i]) + 4 + len(c.data[i]) + len(c.meta[i]) + 8
	}
	b := make([]byte, 0, size)
	b = append(b, "PGCOPY\n\xff\r\n\x00"...)
	b = binary.BigEndian.AppendUint32(b, 0) // flags
	b = binary.BigEndian.AppendUint32(b, 0) // header extension length
	at := uint64(c.recordedAt.Sub(pgEpoch).Microseconds())
	field := func(b []byte, v []byte) []byte {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		return append(b, v...)
	}
	for i := range c.positions {
		id, err := uuid.Parse(c.ids[i])
		if err != nil {
			return nil, fmt.Errorf("event id %q: %w", c.ids[i], err)
		}
		b = binary.BigEndian.AppendUint16(b, 9)
		b = binary.BigEndian.AppendUint32(b, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(c.positions[i]))
		b = field(b, id[:])
		b = field(b, []byte(c.streams[i]))
		b = binary.BigEndian.AppendUint32(b, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(c.versions[i]))
		b = field(b, []byte(c.types[i]))
		b = binary.BigEndian.AppendUint32(b, 4)
		b = binary.BigEndian.AppendUint32(b, uint32(c.schemas[i]))
		b = field(b, c.data[i])
		b = field(b, c.meta[i])
		b = binary.BigEndian.AppendUint32(b, 8)
		b = binary.BigEndian.AppendUint64(b, at)
	}
	return binary.BigEndian.AppendUint16(b, 0xffff), nil
}
