// Package domain holds the pure decision logic of orderflow: the order, stock
// and shipment aggregates (in sub-packages), the event envelope every event
// travels in, the type registry used to encode and decode event payloads and
// the sentinel errors shared by every layer. It imports only the standard
// library, performs no I/O and never reads the clock: time is passed in.
package domain

import (
	"encoding/json"
	"time"
)

// Envelope is one event as it is appended to and read from the event store.
//
// Callers appending events set ID, Type, SchemaVersion, Data and Metadata; the
// store fills Stream, Version, Position and RecordedAt.
type Envelope struct {
	// ID is a UUID unique across the store. Appending an event whose ID is
	// already stored (at the same place in the same stream) is a no-op, which
	// makes retries safe.
	ID string `json:"id"`
	// Stream is the aggregate's stream, e.g. "order-<uuid>".
	Stream string `json:"stream"`
	// Version is the event's 1-based position within its stream.
	Version int64 `json:"version"`
	// Position is the event's place in the store's global order (> 0).
	Position uint64 `json:"position"`
	// Type names the event, e.g. "OrderPlaced".
	Type string `json:"type"`
	// SchemaVersion is the version of Data's shape for Type.
	SchemaVersion int `json:"schema_version"`
	// Data is the JSON-encoded payload.
	Data json.RawMessage `json:"data"`
	// Metadata carries tracing and causality information.
	Metadata Metadata `json:"metadata"`
	// RecordedAt is when the store committed the event (UTC).
	RecordedAt time.Time `json:"recorded_at"`
}

// Metadata is the causality and tracing context carried by every event.
type Metadata struct {
	// CorrelationID ties together everything caused by one external request.
	CorrelationID string `json:"correlation_id,omitempty"`
	// CausationID is the id of the command or event that caused this event.
	CausationID string `json:"causation_id,omitempty"`
	// RequestID is the X-Request-Id of the HTTP request, when there was one.
	RequestID string `json:"request_id,omitempty"`
	// TraceParent and TraceState are the W3C trace context.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
}

// ExpectedVersion states what the writer believes the stream's version is.
// Values > 0 are exact versions; see AnyVersion and NoStream.
type ExpectedVersion int64

const (
	// AnyVersion appends whatever the stream's current version.
	AnyVersion ExpectedVersion = -1
	// NoStream requires that the stream has no events yet (version 0).
	NoStream ExpectedVersion = 0
)

// ExactVersion requires the stream's last event to have version v
// (ExactVersion(0) is the same as NoStream).
func ExactVersion(v int64) ExpectedVersion { return ExpectedVersion(v) }

// AppendResult reports where an append put its events.
type AppendResult struct {
	// NextVersion is the stream's version after the append.
	NextVersion int64
	// Position is the global position of the last appended event (0 when
	// the adapter cannot tell, e.g. an idempotent no-op).
	Position uint64
}
