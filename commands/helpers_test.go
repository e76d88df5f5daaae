package commands_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/commands/commandstest"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/domain/order"
)

var now = time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)

// meta returns the Meta of a new command.
func meta() commands.Meta {
	return commands.Meta{CommandID: uuid.NewString(), RequestID: "req-" + uuid.NewString(), Now: now}
}

func items() []order.Item {
	return []order.Item{{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 1299}, {SKU: "SKU-2", Quantity: 1, UnitPriceCents: 500}}
}

func address(country string) order.Address {
	return order.Address{Name: "Ada L.", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: country}
}

// stream returns the decoded payloads of a stream and its envelopes.
func stream(t testing.TB, s commands.EventStore, name string) ([]any, []domain.Envelope) {
	t.Helper()
	envs, err := s.ReadStream(context.Background(), name, 1, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	r := events.NewRegistry()
	payloads := make([]any, len(envs))
	for i, e := range envs {
		if payloads[i], err = r.Decode(e); err != nil {
			t.Fatal(err)
		}
	}
	return payloads, envs
}

// state rebuilds an aggregate from its stream.
func state[S any, P interface {
	*S
	Apply(any)
}](t testing.TB, s commands.EventStore, name string) *S {
	t.Helper()
	payloads, _ := stream(t, s, name)
	st := new(S)
	for _, p := range payloads {
		P(st).Apply(p)
	}
	return st
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %v", err, target)
	}
}

// wantFields checks that err is a *domain.ValidationError naming fields.
func wantFields(t testing.TB, err error, fields ...string) {
	t.Helper()
	var ve *domain.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want a *domain.ValidationError", err)
	}
	got := make([]string, len(ve.Fields))
	for i, f := range ve.Fields {
		got[i] = f.Field
	}
	if !slices.Equal(got, fields) {
		t.Fatalf("invalid fields = %q, want %q", got, fields)
	}
}

func noError(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// conflictingStore fails every append with a version conflict and counts
// the attempts; onAppend, when set, runs at each of them.
type conflictingStore struct {
	commands.EventStore
	onAppend func()
	mu       sync.Mutex
	attempts int
}

func (s *conflictingStore) Append(ctx context.Context, stream string, expected domain.ExpectedVersion, evs []domain.Envelope) (domain.AppendResult, error) {
	s.mu.Lock()
	s.attempts++
	s.mu.Unlock()
	if s.onAppend != nil {
		s.onAppend()
	}
	return domain.AppendResult{}, domain.ErrVersionConflict
}

// deafStore ignores the cancellation of the contexts it is given, so that a
// test sees whether the caller itself stops.
type deafStore struct {
	commands.EventStore
}

func (s deafStore) ReadStream(ctx context.Context, stream string, from int64, max int) ([]domain.Envelope, error) {
	return s.EventStore.ReadStream(context.WithoutCancel(ctx), stream, from, max)
}

// racingStore lets a rival writer act once, just before the first append
// reaches the store, records where every ReadStream started and counts the
// version conflicts.
type racingStore struct {
	commands.EventStore
	rival     func()
	mu        sync.Mutex
	reads     []int64
	conflicts int
}

func (s *racingStore) ReadStream(ctx context.Context, stream string, from int64, max int) ([]domain.Envelope, error) {
	s.mu.Lock()
	s.reads = append(s.reads, from)
	s.mu.Unlock()
	return s.EventStore.ReadStream(ctx, stream, from, max)
}

func (s *racingStore) Append(ctx context.Context, stream string, expected domain.ExpectedVersion, evs []domain.Envelope) (domain.AppendResult, error) {
	s.mu.Lock()
	rival := s.rival
	s.rival = nil
	s.mu.Unlock()
	if rival != nil {
		rival()
	}
	res, err := s.EventStore.Append(ctx, stream, expected, evs)
	if errors.Is(err, domain.ErrVersionConflict) {
		s.mu.Lock()
		s.conflicts++
		s.mu.Unlock()
	}
	return res, err
}

// failingStore fails appends with errDown once a stream's budget of
// appends is spent, as if the process died before writing them. Streams
// without a budget always work.
type failingStore struct {
	commands.EventStore
	mu     sync.Mutex
	budget map[string]int
}

var errDown = errors.New("store unavailable")

// limit sets how many more appends each listed stream accepts (pairs of
// stream and count); no arguments lift every limit.
func (s *failingStore) limit(pairs ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.budget = make(map[string]int)
	for i := 0; i+1 < len(pairs); i += 2 {
		s.budget[pairs[i].(string)] = pairs[i+1].(int)
	}
}

func (s *failingStore) Append(ctx context.Context, stream string, expected domain.ExpectedVersion, evs []domain.Envelope) (domain.AppendResult, error) {
	s.mu.Lock()
	n, limited := s.budget[stream]
	if limited {
		s.budget[stream] = n - 1
	}
	s.mu.Unlock()
	if limited && n <= 0 {
		return domain.AppendResult{}, errDown
	}
	return s.EventStore.Append(ctx, stream, expected, evs)
}

func newStore() *commandstest.Store { return commandstest.NewStore() }
