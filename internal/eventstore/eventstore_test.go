package eventstore_test

import (
	"errors"
	"testing"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
)

func TestReplayed(t *testing.T) {
	const a, b, c, x = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b",
		"00000000-0000-4000-8000-00000000000c", "00000000-0000-4000-8000-0000000000ff"
	// Stream s holds a, b, c at versions 1..3; other holds x.
	stored := map[string]eventstore.Recorded{
		a: {Stream: "s", Version: 1, Position: 10},
		b: {Stream: "s", Version: 2, Position: 20},
		c: {Stream: "s", Version: 3, Position: 30},
		x: {Stream: "other", Version: 1, Position: 40},
	}
	lookup := func(id string) (eventstore.Recorded, bool) { r, ok := stored[id]; return r, ok }
	const fresh = "00000000-0000-4000-8000-000000000001"
	tests := []struct {
		name     string
		stream   string
		expected domain.ExpectedVersion
		ids      []string
		done     bool
		dup      bool
		want     eventstore.AppendResult
	}{
		{"new ids", "s", domain.ExactVersion(3), []string{fresh}, false, false, eventstore.AppendResult{}},
		{"whole replay, no stream", "s", domain.NoStream, []string{a, b, c}, true, false, eventstore.AppendResult{NextVersion: 3, Position: 30}},
		{"older append, exact", "s", domain.ExactVersion(1), []string{b}, true, false, eventstore.AppendResult{NextVersion: 2, Position: 20}},
		{"older append, any", "s", domain.AnyVersion, []string{a, b}, true, false, eventstore.AppendResult{NextVersion: 2, Position: 20}},
		{"replay at another expected version", "s", domain.ExactVersion(2), []string{b}, false, true, eventstore.AppendResult{}},
		{"stored in another stream", "s", domain.AnyVersion, []string{x}, false, true, eventstore.AppendResult{}},
		{"out of order", "s", domain.AnyVersion, []string{b, a}, false, true, eventstore.AppendResult{}},
		{"running past the end", "s", domain.AnyVersion, []string{c, fresh}, false, true, eventstore.AppendResult{}},
		{"a later id stored", "s", domain.AnyVersion, []string{fresh, b}, false, true, eventstore.AppendResult{}},
		{"gap between stored ids", "s", domain.AnyVersion, []string{a, c}, false, true, eventstore.AppendResult{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs := make([]domain.Envelope, len(tc.ids))
			for i, id := range tc.ids {
				evs[i] = domain.Envelope{ID: id, Type: "E"}
			}
			res, done, err := eventstore.Replayed(tc.stream, tc.expected, evs, lookup)
			if tc.dup {
				if !errors.Is(err, eventstore.ErrDuplicateEventID) || done {
					t.Fatalf("Replayed = %v, %v; want ErrDuplicateEventID", done, err)
				}
				return
			}
			if err != nil || done != tc.done || res != tc.want {
				t.Fatalf("Replayed = %+v, %v, %v; want %+v, %v", res, done, err, tc.want, tc.done)
			}
		})
	}
}
