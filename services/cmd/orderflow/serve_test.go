package main

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestServeNATSReplicas: --nats-replicas and NATS_REPLICAS take 1..5; any
// other value, a NATS_REPLICAS that is no number and the flag given to the
// gateway are usage errors naming the problem, before anything starts.
func TestServeNATSReplicas(t *testing.T) {
	tests := []struct {
		name string
		env  string // NATS_REPLICAS
		args []string
		want string // in the usage error; "" when the replicas pass
	}{
		{"default", "", []string{"orders"}, ""},
		{"flag 3", "", []string{"orders", "--nats-replicas", "3"}, ""},
		{"flag 5", "", []string{"sagas", "--nats-replicas=5"}, ""},
		{"env 3", "3", []string{"inventory"}, ""},
		{"flag wins over env", "9", []string{"orders", "--nats-replicas", "3"}, ""},
		{"flag 0", "", []string{"orders", "--nats-replicas", "0"}, "--nats-replicas 0: want 1..5"},
		{"flag 6", "", []string{"shipping", "--nats-replicas", "6"}, "--nats-replicas 6: want 1..5"},
		{"flag negative", "", []string{"orders", "--nats-replicas=-1"}, "--nats-replicas -1: want 1..5"},
		{"env 6", "6", []string{"orders"}, "--nats-replicas 6: want 1..5"},
		{"env no number", "three", []string{"orders"}, `NATS_REPLICAS="three" is no number`},
		{"gateway", "", []string{"gateway", "--nats-replicas", "3"}, "--nats-replicas does not apply to it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NATS_REPLICAS", tt.env)
			// With no database the service stops at its config check,
			// after the replicas were checked; nothing is started.
			t.Setenv("DATABASE_URL", "")
			t.Setenv("NATS_URL", "")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := runServe(ctx, tt.args)
			var usage usageError
			if tt.want == "" {
				if err == nil || errors.As(err, &usage) || !strings.Contains(err.Error(), "database URL is required") {
					t.Fatalf("runServe(%q) = %v, want the service's own config error (no database), not a usage error", tt.args, err)
				}
				return
			}
			if !errors.As(err, &usage) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("runServe(%q) = %v, want a usage error containing %q", tt.args, err, tt.want)
			}
		})
	}
}
