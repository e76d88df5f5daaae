package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/services/api"
)

// TestCausalOrder: an effect comes after its cause even when its service's
// clock put it earlier; events without a listed cause go by time, then
// service, stream and version; a stream keeps its version order; a cycle
// (which no store writes) still yields every event once.
func TestCausalOrder(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ev := func(id, svc, stream string, version int64, at time.Duration, cause string) journeyEvent {
		return journeyEvent{Event: api.Event{EventID: id, Service: svc, Stream: stream, Version: version, RecordedAt: t0.Add(at)}, causation: cause}
	}
	tests := []struct {
		name string
		in   []journeyEvent
		want string
	}{
		{"by time without causes", []journeyEvent{
			ev("b", "sagas", "saga-1", 1, 2*time.Millisecond, ""),
			ev("a", "orders", "order-1", 1, time.Millisecond, ""),
		}, "a b"},
		{"ties by service, stream, version", []journeyEvent{
			ev("c", "sagas", "saga-1", 1, 0, ""),
			ev("b", "orders", "order-2", 1, 0, ""),
			ev("a", "orders", "order-1", 2, 0, ""),
			ev("z", "orders", "order-1", 1, 0, ""),
		}, "z a b c"},
		{"an effect recorded earlier by a skewed clock", []journeyEvent{
			ev("placed", "orders", "order-1", 1, 10*time.Millisecond, ""),
			ev("started", "sagas", "saga-1", 1, 0, "placed"),
			ev("reserved", "inventory", "stock-1", 1, 5*time.Millisecond, "started"),
			ev("other", "shipping", "shipment-9", 1, 7*time.Millisecond, "unlisted"),
		}, "other placed started reserved"},
		{"a stream's versions stay in order", []journeyEvent{
			ev("v2", "sagas", "saga-1", 2, 0, ""),
			ev("v1", "sagas", "saga-1", 1, time.Millisecond, ""),
		}, "v1 v2"},
		// The events of a cycle wait for everything else.
		{"a cycle", []journeyEvent{
			ev("x", "orders", "order-1", 1, 0, "y"),
			ev("y", "sagas", "saga-1", 1, time.Millisecond, "x"),
			ev("w", "sagas", "saga-2", 1, 2*time.Millisecond, ""),
		}, "w x y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range causalOrder(tt.in) {
				got = append(got, e.EventID)
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("order %v, want %s", got, tt.want)
			}
		})
	}
}

func TestUnlistedCauses(t *testing.T) {
	const a, b, c = "0b8c3a4e-7c55-4f5b-9a0e-8d2b1f4c6a10", "1b8c3a4e-7c55-4f5b-9a0e-8d2b1f4c6a10", "2b8c3a4e-7c55-4f5b-9a0e-8d2b1f4c6a10"
	evs := []journeyEvent{
		{Event: api.Event{EventID: a}, causation: b},
		{Event: api.Event{EventID: c}, causation: a},          // listed: not asked for
		{Event: api.Event{EventID: "d"}, causation: b},        // asked once
		{Event: api.Event{EventID: "e"}, causation: "cmd-42"}, // not an event id
		{Event: api.Event{EventID: "f"}},
	}
	if got := unlistedCauses(evs); len(got) != 1 || got[0] != b {
		t.Errorf("unlistedCauses = %v, want [%s]", got, b)
	}
}
