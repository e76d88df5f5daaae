package commandstest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/orderflow/orderflow/commands/commandstest"
	"github.com/orderflow/orderflow/domain"
)

func event(t testing.TB) domain.Envelope {
	t.Helper()
	return domain.Envelope{ID: uuid.NewString(), Type: "Happened", SchemaVersion: 1, Data: json.RawMessage(`{"n":1}`)}
}

func events(t testing.TB, n int) []domain.Envelope {
	out := make([]domain.Envelope, n)
	for i := range out {
		out[i] = event(t)
	}
	return out
}

func mustAppend(t testing.TB, s *commandstest.Store, stream string, expected domain.ExpectedVersion, evs []domain.Envelope) domain.AppendResult {
	t.Helper()
	res, err := s.Append(context.Background(), stream, expected, evs)
	if err != nil {
		t.Fatalf("append %s: %v", stream, err)
	}
	return res
}

func TestAppendAndRead(t *testing.T) {
	ctx := context.Background()
	s := commandstest.NewStore()
	first := events(t, 2)
	if res := mustAppend(t, s, "a-1", domain.NoStream, first); res.NextVersion != 2 || res.Position != 2 {
		t.Fatalf("first append = %+v, want version 2 position 2", res)
	}
	mustAppend(t, s, "b-1", domain.NoStream, events(t, 1))
	if res := mustAppend(t, s, "a-1", domain.ExactVersion(2), events(t, 1)); res.NextVersion != 3 || res.Position != 4 {
		t.Fatalf("third append = %+v, want version 3 position 4", res)
	}
	mustAppend(t, s, "a-1", domain.AnyVersion, events(t, 1))

	got, err := s.ReadStream(ctx, "a-1", 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("read %d events, want 4", len(got))
	}
	for i, e := range got {
		if e.Stream != "a-1" || e.Version != int64(i+1) || e.RecordedAt.IsZero() {
			t.Errorf("event %d = stream %q version %d recorded %v", i, e.Stream, e.Version, e.RecordedAt)
		}
	}
	if got[0].ID != first[0].ID || string(got[0].Data) != `{"n":1}` || got[0].Position != 1 || got[2].Position != 4 {
		t.Errorf("stored event differs: %+v", got[0])
	}

	page, err := s.ReadStream(ctx, "a-1", 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || page[0].Version != 2 || page[1].Version != 3 {
		t.Errorf("page from 2 max 2 = %d events", len(page))
	}
	if none, err := s.ReadStream(ctx, "a-1", 5, 10); err != nil || len(none) != 0 {
		t.Errorf("read past the end = %d events, %v", len(none), err)
	}
	if none, err := s.ReadStream(ctx, "missing", 1, 10); err != nil || len(none) != 0 {
		t.Errorf("read missing stream = %d events, %v", len(none), err)
	}
	if _, err := s.ReadStream(ctx, "a-1", 1, 0); err == nil {
		t.Error("read with max 0 succeeded")
	}
	if all := s.All(); len(all) != 5 || all[2].Stream != "b-1" {
		t.Errorf("All = %d events, third in %q", len(all), all[2].Stream)
	}

	got[0].Data[1] = 'X'
	again, _ := s.ReadStream(ctx, "a-1", 1, 1)
	if string(again[0].Data) != `{"n":1}` {
		t.Error("a reader changed the stored data")
	}
}

func TestAppendConflicts(t *testing.T) {
	s := commandstest.NewStore()
	mustAppend(t, s, "a-1", domain.NoStream, events(t, 2))
	tests := []struct {
		name     string
		stream   string
		expected domain.ExpectedVersion
	}{
		{"stream exists", "a-1", domain.NoStream},
		{"stale version", "a-1", domain.ExactVersion(1)},
		{"future version", "a-1", domain.ExactVersion(3)},
		{"missing stream", "b-1", domain.ExactVersion(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Append(context.Background(), tt.stream, tt.expected, events(t, 1))
			if !errors.Is(err, domain.ErrVersionConflict) {
				t.Fatalf("err = %v, want ErrVersionConflict", err)
			}
		})
	}
	if n := len(s.All()); n != 2 {
		t.Errorf("%d events stored after failed appends, want 2", n)
	}
}

func TestAppendIdempotent(t *testing.T) {
	s := commandstest.NewStore()
	evs := events(t, 2)
	mustAppend(t, s, "a-1", domain.NoStream, evs)
	mustAppend(t, s, "a-1", domain.ExactVersion(2), events(t, 1))

	if res := mustAppend(t, s, "a-1", domain.NoStream, evs); res.NextVersion != 2 || res.Position != 2 {
		t.Errorf("re-append = %+v, want the stored version 2 position 2", res)
	}
	if res := mustAppend(t, s, "a-1", domain.AnyVersion, evs[1:]); res.NextVersion != 2 {
		t.Errorf("re-append any version = %+v, want version 2", res)
	}
	if n := len(s.All()); n != 3 {
		t.Fatalf("%d events stored, want 3", n)
	}

	tests := []struct {
		name     string
		stream   string
		expected domain.ExpectedVersion
		evs      []domain.Envelope
	}{
		{"other stream", "b-1", domain.NoStream, evs},
		{"other place", "a-1", domain.ExactVersion(1), evs},
		{"other order", "a-1", domain.NoStream, []domain.Envelope{evs[1], evs[0]}},
		{"with a new event", "a-1", domain.NoStream, append(evs[:2:2], event(t))},
		{"twice in one append", "c-1", domain.NoStream, []domain.Envelope{evs[0], evs[0]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Append(context.Background(), tt.stream, tt.expected, tt.evs)
			if !errors.Is(err, domain.ErrDuplicateEventID) {
				t.Fatalf("err = %v, want ErrDuplicateEventID", err)
			}
		})
	}
	if n := len(s.All()); n != 3 {
		t.Errorf("%d events stored after rejected appends, want 3", n)
	}
}

func TestAppendRejectsBadInput(t *testing.T) {
	s := commandstest.NewStore()
	noType := event(t)
	noType.Type = ""
	badID := event(t)
	badID.ID = "e-1"
	tests := []struct {
		name     string
		stream   string
		expected domain.ExpectedVersion
		evs      []domain.Envelope
	}{
		{"empty stream", "", domain.NoStream, events(t, 1)},
		{"no events", "a-1", domain.NoStream, nil},
		{"no type", "a-1", domain.NoStream, []domain.Envelope{noType}},
		{"id not a UUID", "a-1", domain.NoStream, []domain.Envelope{badID}},
		{"expected version below any", "a-1", -2, events(t, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Append(context.Background(), tt.stream, tt.expected, tt.evs); err == nil {
				t.Fatal("append succeeded")
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(ctx, "a-1", domain.NoStream, events(t, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("append with a cancelled context: %v", err)
	}
	if len(s.All()) != 0 {
		t.Error("a rejected append stored events")
	}
}

// TestConcurrentWritersOneWinnerPerVersion: writers that all expect the
// same version race; exactly one wins each round and positions stay dense.
func TestConcurrentWritersOneWinnerPerVersion(t *testing.T) {
	s := commandstest.NewStore()
	const writers, rounds = 8, 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := make(map[int64]int)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				for {
					evs, err := s.ReadStream(context.Background(), "a-1", 1, 1<<20)
					if err != nil {
						t.Error(err)
						return
					}
					v := int64(len(evs))
					e := event(t)
					e.Data = json.RawMessage(fmt.Sprintf(`{"w":%d,"r":%d}`, w, r))
					_, err = s.Append(context.Background(), "a-1", domain.ExactVersion(v), []domain.Envelope{e})
					if errors.Is(err, domain.ErrVersionConflict) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					wins[v+1]++
					mu.Unlock()
					break
				}
			}
		}()
	}
	wg.Wait()
	all := s.All()
	if len(all) != writers*rounds {
		t.Fatalf("%d events, want %d", len(all), writers*rounds)
	}
	for i, e := range all {
		if e.Version != int64(i+1) || e.Position != uint64(i+1) || wins[e.Version] != 1 {
			t.Fatalf("event %d: version %d position %d won %d times", i, e.Version, e.Position, wins[e.Version])
		}
	}
}
