// Package sagas is the saga engine and the saga definitions of orderflow.
//
// A Definition is a named, versioned list of steps; each step sends a
// command, waits for a reply that means success or failure, may be undone
// by a compensation, and has a timeout and a retry budget (exponential
// backoff with jitter). A saga's state is event-sourced in its stream
// saga-<id>: the decisions Start, OnEvent, OnDeadline and Retry are pure
// functions of the state, an incoming event and the time, and return the
// events to append (SagaStarted, CommandIssued, ReplyReceived, ...); the
// state is rebuilt with State.Apply. Every decision is thus recorded
// before it takes effect: a command reaches its receiver only when the
// relay publishes the CommandIssued event, and a deadline is the saga's
// State.Deadline after the append.
//
// The package imports the standard library and domain/... only, performs
// no I/O and never reads the clock. The coordinator runtime
// (services/internal/coordinator) loads states, calls the decisions,
// appends their events and keeps the deadline rows; docs/adr/0100 and
// 0101 record the design.
package sagas
