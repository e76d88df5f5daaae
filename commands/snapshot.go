package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
	"github.com/orderflow/orderflow/domain/shipping"
)

// This file is the optional snapshot port of the writer: the state of a
// long stream is stored every so many events, and a writer that does not
// hold a stream in memory loads its newest snapshot and reads only the
// events after it. Snapshots are an optimisation only; see
// docs/adr/0150-snapshots-of-long-streams.md.

// DefaultSnapshotEvery is how many events apart the snapshots of a stream
// are taken when Config.SnapshotEvery is 0. Loading reads at most that many
// events after the snapshot; a snapshot costs one encoding and one write
// per that many events.
const DefaultSnapshotEvery = 100

// snapshotTimeout bounds one snapshot write, which runs on its own.
const snapshotTimeout = 10 * time.Second

// snapshotWrites bounds the snapshot writes in flight at once per
// executor; a snapshot due while they are all busy is skipped (the next
// multiple takes one).
const snapshotWrites = 4

// SnapshotStore keeps snapshots of aggregate states. An EventStore that
// implements it (the PostgreSQL one) is used as it unless Config.Snapshots
// names another; a store without it loads every stream from its first
// event.
type SnapshotStore interface {
	// LoadSnapshot returns the snapshot of stream encoded with schema:
	// the version of the last event it reflects (0 when there is none)
	// and its data, as the state's codec wrote it. The data is the
	// caller's: a decoded state may keep parts of it (the Stock does).
	LoadSnapshot(ctx context.Context, stream string, schema int) (version int64, data []byte, err error)
	// SaveSnapshot stores data as the state of stream after version,
	// encoded with schema, unless a later one of that schema is stored.
	SaveSnapshot(ctx context.Context, stream string, version int64, schema int, data []byte) error
	// StoredEventIDs returns those of ids stored in stream at a version up
	// to upTo. Ids of commands are not kept in snapshots: the writer asks
	// for the ids of the events a command would have caused.
	StoredEventIDs(ctx context.Context, stream string, ids []string, upTo int64) ([]string, error)
}

// stateSnapshotter is implemented by states whose fields JSON does not
// reach (unexported ones); the others are encoded with encoding/json.
type stateSnapshotter interface {
	MarshalSnapshot() ([]byte, error)
	UnmarshalSnapshot(data []byte) error
}

// snapshotSchema is the codec version of each state that may be
// snapshotted, and the stream prefix of its streams. A change to a state's
// fields, or to what its Apply makes of events, must raise its version:
// snapshots of other versions are ignored (TestSnapshotSchemas keeps the
// fields of each version on record).
var snapshotSchemas = []struct {
	typ    reflect.Type
	prefix string
	schema int
}{
	{reflect.TypeFor[inventory.Stock](), inventory.StreamPrefix, 3},
	{reflect.TypeFor[inventory.Reservation](), inventory.ReservationStreamPrefix, 1},
	{reflect.TypeFor[order.Order](), order.StreamPrefix, 1},
	{reflect.TypeFor[shipping.Shipment](), shipping.StreamPrefix, 1},
}

// SnapshotSchema returns the schema the command handlers snapshot stream's
// state with, and false for a stream they keep no snapshots of.
func SnapshotSchema(stream string) (int, bool) {
	for _, s := range snapshotSchemas {
		if strings.HasPrefix(stream, s.prefix) {
			return s.schema, true
		}
	}
	return 0, false
}

// codec encodes and decodes the snapshots of one state type.
type codec struct {
	schema int
	// learns: the state's snapshot leaves facts out, which only a store
	// with the SettledOrderStore port can fill in (see learn.go).
	learns bool
	encode func(aggregate) ([]byte, error)
	decode func([]byte) (aggregate, error)
}

// codecs holds the codec of each state type in snapshotSchemas.
var codecs = map[reflect.Type]*codec{}

func init() {
	register[inventory.Stock]()
	register[inventory.Reservation]()
	register[order.Order]()
	register[shipping.Shipment]()
}

// register builds the codec of state S.
func register[S any, P state[S]]() {
	t := reflect.TypeFor[S]()
	i := slices.IndexFunc(snapshotSchemas, func(s struct {
		typ    reflect.Type
		prefix string
		schema int
	}) bool {
		return s.typ == t
	})
	if i < 0 {
		panic(fmt.Sprintf("commands: no snapshot schema for %s", t))
	}
	codecs[t] = &codec{
		schema: snapshotSchemas[i].schema,
		learns: isLearner[S, P](),
		encode: func(a aggregate) ([]byte, error) {
			if s, ok := a.(stateSnapshotter); ok {
				return s.MarshalSnapshot()
			}
			return json.Marshal(a)
		},
		decode: func(data []byte) (aggregate, error) {
			st := P(new(S))
			var err error
			if s, ok := any(st).(stateSnapshotter); ok {
				err = s.UnmarshalSnapshot(data)
			} else {
				err = json.Unmarshal(data, st)
			}
			return st, err
		},
	}
}

// codecOf returns the codec of state S, nil when S is not snapshotted.
func codecOf[S any]() *codec { return codecs[reflect.TypeFor[S]()] }

// snapshots is the executor's use of a SnapshotStore.
type snapshots struct {
	store SnapshotStore
	// settled fills in what a Stock's snapshot leaves out; nil when the
	// store cannot, and then no Stock is restored from a snapshot.
	settled SettledOrderStore
	every   int64
	log     *slog.Logger
	stats   *Stats
	slots   chan struct{}
}

// newSnapshots returns the snapshots cfg asks for on store, nil when
// there are none.
func newSnapshots(store EventStore, cfg Config) *snapshots {
	if cfg.SnapshotEvery < 0 {
		return nil
	}
	s := cfg.Snapshots
	if s == nil {
		s, _ = store.(SnapshotStore)
	}
	if s == nil {
		return nil
	}
	// Only the EventStore holds the events that answer; a snapshot store
	// beside it may be another database.
	settled, _ := store.(SettledOrderStore)
	return &snapshots{
		store:   s,
		settled: settled,
		every:   int64(cfg.SnapshotEvery),
		log:     cfg.Logger,
		stats:   cfg.Stats,
		slots:   make(chan struct{}, snapshotWrites),
	}
}

// snapshotCoverer is a SnapshotStore that also answers, with the snapshot
// and in the same round trip, which event ids the snapshot covers (the
// PostgreSQL store): a command on a stream loaded from its snapshot needs
// both, and asking apart made the load a round trip longer.
type snapshotCoverer interface {
	// LoadSnapshotCovering is LoadSnapshot, and also returns those of ids
	// stored in stream at a version up to the snapshot's.
	LoadSnapshotCovering(ctx context.Context, stream string, schema int, ids []string) (version int64, data []byte, found []string, err error)
}

// restore sets e, a fresh entry, to the snapshot of its stream when there
// is one of the current schema. Any failure leaves e fresh, to be read
// from the first event: a snapshot is never needed. It returns the ids,
// among calls' command and watched ids, whose look-back it answered
// already (lookBack skips them), nil when it answered none.
func (s *snapshots) restore(ctx context.Context, e *entry, cd *codec, calls []*call) map[uuid.UUID]struct{} {
	if s == nil || cd == nil || (cd.learns && s.settled == nil) {
		// Without the store's answers, a state restored from a snapshot
		// that leaves facts out could not decide exactly.
		return nil
	}
	var (
		version int64
		data    []byte
		found   []string
		ask     map[string]uuid.UUID
		err     error
	)
	if c, ok := s.store.(snapshotCoverer); ok {
		ask = lookBackIDs(e, calls)
		version, data, found, err = c.LoadSnapshotCovering(ctx, e.stream, cd.schema, slices.Collect(maps.Keys(ask)))
	} else {
		version, data, err = s.store.LoadSnapshot(ctx, e.stream, cd.schema)
	}
	if err != nil {
		s.stats.snapshotFailures.Add(1)
		s.log.WarnContext(ctx, "cannot load a snapshot; reading the stream from its start", "stream", e.stream, "error", err)
		return nil
	}
	if version <= 0 {
		return nil
	}
	st, err := cd.decode(data)
	if err != nil {
		s.stats.snapshotFailures.Add(1)
		s.log.WarnContext(ctx, "cannot decode a snapshot; reading the stream from its start", "stream", e.stream, "version", version, "error", err)
		return nil
	}
	if l, ok := st.(learner); ok {
		l.RestoredAt(version)
	}
	e.state, e.version, e.base = st, version, version
	s.stats.snapshotsLoaded.Add(1)
	if ask == nil {
		return nil
	}
	markFound(e, ask, found)
	asked := make(map[uuid.UUID]struct{}, len(ask))
	for _, id := range ask {
		asked[id] = struct{}{}
	}
	return asked
}

// due reports whether an append that took a stream from version from to
// version to crossed a multiple of the snapshot interval.
func (s *snapshots) due(from, to int64) bool {
	return s != nil && from/s.every < to/s.every
}

// take encodes st, the state of stream at version, and saves it on its
// own: the command that crossed the interval does not wait for it, and a
// failure is logged and skipped.
func (s *snapshots) take(stream string, version int64, st aggregate, cd *codec) {
	if cd == nil {
		return
	}
	// Encoded now: the writer goes on changing st.
	data, err := cd.encode(st)
	if err != nil {
		s.stats.snapshotFailures.Add(1)
		s.log.Warn("cannot encode a snapshot; skipped", "stream", stream, "version", version, "error", err)
		return
	}
	select {
	case s.slots <- struct{}{}:
	default:
		// As many writes as allowed are in flight: the store is slow.
		s.stats.snapshotFailures.Add(1)
		return
	}
	go func() {
		defer func() { <-s.slots }()
		ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
		defer cancel()
		if err := s.store.SaveSnapshot(ctx, stream, version, cd.schema, data); err != nil {
			s.stats.snapshotFailures.Add(1)
			s.log.Warn("cannot save a snapshot; skipped", "stream", stream, "version", version, "error", err)
			return
		}
		s.stats.snapshotsSaved.Add(1)
	}()
}

// lookBack adds to e.seen the ids, among the calls' command ids and
// watched ids, of the commands that caused events the snapshot e was
// loaded from covers; ids in asked were looked up with the snapshot.
func (s *snapshots) lookBack(ctx context.Context, e *entry, calls []*call, asked map[uuid.UUID]struct{}) error {
	ask := lookBackIDs(e, calls)
	maps.DeleteFunc(ask, func(_ string, id uuid.UUID) bool {
		_, ok := asked[id]
		return ok
	})
	if len(ask) == 0 {
		return nil
	}
	found, err := s.store.StoredEventIDs(ctx, e.stream, slices.Collect(maps.Keys(ask)), e.base)
	if err != nil {
		return fmt.Errorf("look up earlier commands in %s: %w", e.stream, err)
	}
	markFound(e, ask, found)
	return nil
}

// lookBackIDs returns the event ids to look up to learn which of the
// calls' command ids and watched ids, not in e.seen, caused events on
// e.stream, each with the id it stands for. A command's first event on a
// stream has an id derived from the command id as its client spelled it
// (envelopes): the spellings looked up are the call's own and the
// canonical ones.
func lookBackIDs(e *entry, calls []*call) map[string]uuid.UUID {
	ask := make(map[string]uuid.UUID)
	add := func(id uuid.UUID, spellings ...string) {
		if _, ok := e.seen[id]; ok {
			return
		}
		c := id.String()
		for _, sp := range append(spellings, c, strings.ToUpper(c)) {
			ask[deriveID(sp, e.stream, "0")] = id
		}
	}
	for _, c := range calls {
		add(c.id, c.m.CommandID)
		for _, w := range c.watch {
			if id, err := uuid.Parse(w); err == nil {
				add(id, w)
			}
		}
	}
	return ask
}

// markFound adds to e.seen the ids that the found event ids, looked up
// as ask maps them, stand for.
func markFound(e *entry, ask map[string]uuid.UUID, found []string) {
	for _, f := range found {
		if id, ok := ask[strings.ToLower(f)]; ok {
			e.seen[id] = struct{}{}
		}
	}
}
