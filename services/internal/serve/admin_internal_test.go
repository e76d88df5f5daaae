package serve

import (
	"testing"

	"github.com/orderflow/orderflow/projections"
)

func TestPercent(t *testing.T) {
	tests := []struct {
		p    projections.Progress
		want float64
	}{
		{projections.Progress{Phase: "starting"}, 0},
		{projections.Progress{Phase: "replay", Done: 0, Total: 2000}, 0},
		{projections.Progress{Phase: "replay", Done: 1000, Total: 2000}, 50},
		{projections.Progress{Phase: "replay", Done: 1999, Total: 2000}, 99.9},
		{projections.Progress{Phase: "catch-up", Done: 2001, Total: 2000}, 100},
		{projections.Progress{Phase: "swap", Done: 10, Total: 2000}, 100},
		{projections.Progress{Phase: "done"}, 100},
	}
	for _, tt := range tests {
		if got := percent(&tt.p); got != tt.want {
			t.Errorf("percent(%+v) = %v, want %v", tt.p, got, tt.want)
		}
	}
}
