// Package projections will hold the projector runtime (checkpoints,
// batching, replay, versioned rebuild) and the read-model projections of
// each context. The query side is built on top of the event store's global
// order; see docs/adr for the plan.
package projections
