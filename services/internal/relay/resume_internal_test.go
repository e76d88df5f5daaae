package relay

import (
	"testing"
	"time"
)

// TestResumeMarks: the sequence saved with a checkpoint stays below every
// message found beyond it and below what the session publishes next, so
// that the next search, starting above it, misses none of them.
func TestResumeMarks(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	newHeld := func() *held {
		st := &streamState{
			created: created,
			base:    100, // the stream's last sequence when the search ran
			// Found beyond the checkpoint, by position; 12 was stored
			// after 13 (republished after a refusal).
			// Listed out of position order, as the search finds them.
			held: []heldMsg{{pos: 11, seq: 40}, {pos: 13, seq: 50}, {pos: 12, seq: 60}, {pos: 15, seq: 70}},
		}
		st.index()
		return &held{streams: map[string]*streamState{"EVENTS": st}}
	}
	type ack struct {
		stream string
		seq    uint64
	}
	tests := []struct {
		name string
		acks []ack
		pos  uint64
		want map[string]uint64
	}{
		{"before every found message", nil, 10, map[string]uint64{"EVENTS": 39}},
		{"past the first", nil, 11, map[string]uint64{"EVENTS": 49}},
		{"a later message stored earlier holds the mark", nil, 12, map[string]uint64{"EVENTS": 49}},
		{"past all but the last", nil, 14, map[string]uint64{"EVENTS": 69}},
		{"past every found message: the search's end", nil, 15, map[string]uint64{"EVENTS": 100}},
		{"acks raise the mark", []ack{{"EVENTS", 130}, {"EVENTS", 120}}, 20, map[string]uint64{"EVENTS": 130}},
		{"acks do not pass a found message still ahead", []ack{{"EVENTS", 130}}, 14, map[string]uint64{"EVENTS": 69}},
		{"an ack in a stream the search did not read", []ack{{"COMMANDS", 7}}, 20, map[string]uint64{"EVENTS": 100, "COMMANDS": 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHeld()
			for _, a := range tt.acks {
				h.acked(a.stream, a.seq)
			}
			rp := h.marks(tt.pos)
			if rp.Position != tt.pos {
				t.Errorf("position %d, want %d", rp.Position, tt.pos)
			}
			if len(rp.Streams) != len(tt.want) {
				t.Fatalf("marks %+v, want %v", rp.Streams, tt.want)
			}
			for name, seq := range tt.want {
				if got := rp.Streams[name].Seq; got != seq {
					t.Errorf("%s mark %d, want %d", name, got, seq)
				}
			}
			if !rp.Streams["EVENTS"].Created.Equal(created) {
				t.Errorf("EVENTS created %v, want %v", rp.Streams["EVENTS"].Created, created)
			}
		})
	}
}

func TestHeldCovers(t *testing.T) {
	h := &held{filters: []string{"events.sagas.>", "commands.>", "events.orders.Exact"}}
	for subject, want := range map[string]bool{
		"events.sagas.SagaStarted":   true,
		"commands.inventory.reserve": true,
		"events.orders.Exact":        true,
		"events.orders.ExactNot":     false,
		"events.orders.OrderPlaced":  false,
		"events.sagasX.Started":      false,
	} {
		if got := h.covers(subject); got != want {
			t.Errorf("covers(%q) = %v, want %v", subject, got, want)
		}
	}
}
