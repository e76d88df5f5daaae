// Package eventtest builds event envelopes for the read models' unit tests.
package eventtest

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
)

// Envelope returns payload encoded as event version of stream, recorded
// version seconds into 2025 so that later versions are recorded later.
func Envelope(t testing.TB, stream string, version int64, payload any) domain.Envelope {
	t.Helper()
	name, v, data, err := events.NewRegistry().Encode(payload)
	if err != nil {
		t.Fatal(err)
	}
	return domain.Envelope{ID: uuid.NewString(), Stream: stream, Version: version, Type: name, SchemaVersion: v, Data: data,
		RecordedAt: time.Date(2025, 1, 1, 0, 0, int(version), 0, time.UTC)}
}
