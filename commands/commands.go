// Package commands handles the commands of the orders, inventory and shipping
// contexts: load the aggregate from its stream, let the domain decide, append
// the resulting events with the expected version, and retry when another
// writer got there first.
//
// Within one process the commands on one stream never conflict: they queue,
// and the stream's single writer runs them one after another on the state
// it keeps from the previous ones, appending the events of the commands
// queued together in one append. Only writers in other processes cause
// version conflicts; those are retried with backoff within a time budget,
// reading only the events appended since.
//
// Every command carries an id. The ids of the events a command produces are
// derived from it, and a handler that finds the command already applied to the
// stream answers with the earlier result, so a repeated command changes
// nothing.
//
// The commands a saga sends travel as data: each is a struct registered in
// the catalog under its context, name and schema version (catalog.go), and
// a context's Bus runs the decoded command on the same handlers the HTTP
// routes call (bus.go). Such a command is always answered by an event
// caused by it, whatever its outcome, because the saga waits for that
// event. Every command, HTTP or traveling, passes through Config.Hook
// (hook.go).
package commands

import (
	"context"
	"time"

	"github.com/orderflow/orderflow/domain"
)

// EventStore is the part of an event store the command handlers use.
type EventStore interface {
	Append(ctx context.Context, stream string, expected domain.ExpectedVersion, events []domain.Envelope) (domain.AppendResult, error)
	ReadStream(ctx context.Context, stream string, from int64, max int) ([]domain.Envelope, error)
}

// Meta is what every command carries besides its own fields.
type Meta struct {
	// CommandID identifies the command (a UUID). Repeating a command with
	// the same id changes nothing and returns the first result.
	CommandID     string
	CorrelationID string
	RequestID     string
	TraceParent   string
	TraceState    string
	// Now is the time the command is decided at (the domain never reads
	// the clock).
	Now time.Time
	// Attempt is the delivery count of a command that came as data (1
	// the first time, more after a redelivery); 0 when unknown, as for
	// HTTP. Only hooks read it.
	Attempt int
}

// Result reports the outcome of a command on one aggregate.
type Result struct {
	// Stream is the aggregate's stream.
	Stream string
	// Version is the stream's version after the command.
	Version int64
	// Duplicate is true when the command id had already been applied and
	// nothing new was appended.
	Duplicate bool
}
