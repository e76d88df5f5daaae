// Package projections is the query side's runtime: it folds the events of the
// event store (or of JetStream, for events of other contexts) into read-model
// tables in PostgreSQL, and rebuilds those tables from scratch without taking
// them offline.
//
// A Projection says how to fold a batch of events into its tables. A
// Projector feeds it from a Source in global order, in batches, and commits
// the read-model rows together with the checkpoint, so that a crash or a
// redelivery never applies an event twice. A JetStreamProjector does the same
// from a durable JetStream consumer, deduplicating by event id. An event that
// cannot be decoded, or that keeps failing on its own, is parked in
// projection_parked and skipped, so one bad event never stops a read model.
//
// Read models are versioned: version n of table "orders" is orders_v<n>, and
// queries read the view rm_orders, which points at the active version named in
// projection_versions. Rebuild builds version n+1 from position zero while
// version n keeps serving, then repoints the views and the checkpoint in one
// transaction (see docs/adr/0060-versioned-read-models.md).
//
// The read models themselves live in the sub-packages orderview, stockview
// and shipmentview, each with the Get and List queries the HTTP layer uses.
package projections
