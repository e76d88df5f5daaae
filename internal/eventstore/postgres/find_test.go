package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/internal/eventstore/postgres"
)

// TestFindEventsUsesIndex: a correlation's events are found through the
// index of migration 0003, not by reading the table, which grows with
// every order.
func TestFindEventsUsesIndex(t *testing.T) {
	_, pool := newStore(t, postgres.Config{})
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	// An empty table would be read whole whatever the indexes; forbid
	// that plan to see whether another exists.
	if _, err := conn.Exec(ctx, "SET enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	var plan strings.Builder
	rows, err := conn.Query(ctx, "EXPLAIN SELECT position FROM es_events WHERE es_correlation_id(metadata) = $1::text OR event_id = ANY($2::uuid[])",
		"0b8c3a4e-7c55-4f5b-9a0e-8d2b1f4c6a10", []string{})
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan.String(), "es_events_correlation") {
		t.Errorf("the plan does not use es_events_correlation:\n%s", plan.String())
	}
}
