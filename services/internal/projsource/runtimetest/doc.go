// Package runtimetest holds the integration tests of the projector runtime
// (package projections) against real PostgreSQL and NATS: atomic batches and
// checkpoints, parking, JetStream deduplication, versioned rebuilds and the
// runner. They live under services/internal because only code there may
// import the test environment and the event store adapters.
package runtimetest
