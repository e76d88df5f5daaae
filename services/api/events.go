package api

import (
	"encoding/json"
	"time"
)

// Event is one item of GET /admin/events: an event as the service that
// stored it answers it, data upcast to the newest schema version, and as
// the gateway passes it on in the merged journey.
type Event struct {
	Service       string          `json:"service"`
	EventID       string          `json:"event_id"`
	Stream        string          `json:"stream"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	Version       int64           `json:"version"`
	Position      uint64          `json:"position"`
	RecordedAt    time.Time       `json:"recorded_at"`
	Data          json.RawMessage `json:"data"`
	Metadata      json.RawMessage `json:"metadata"`
}
