package kurrentdb

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/google/uuid"
	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
)

// Internal error kinds. The backend translates the client's error codes into
// these so that the Store's logic (and the fake backend in the tests) does
// not depend on how the client library reports them.
var (
	errWrongVersion  = errors.New("wrong expected version")
	errNotFound      = errors.New("stream not found")
	errStreamDeleted = errors.New("stream deleted")
	// errDead marks a client whose connection was closed without our asking:
	// the client library gives up for good after a failed node discovery,
	// so the Store replaces it. Like errUnavailable it is a transient
	// failure of the server (domain.ErrUnavailable), which the HTTP layer
	// answers 503, as it does a PostgreSQL store that is down.
	errDead = fmt.Errorf("client connection closed: %w", domain.ErrUnavailable)
	// errUnavailable marks a server that cannot be reached, did not answer
	// in time or, in a cluster, is no longer the leader.
	errUnavailable = fmt.Errorf("server unavailable: %w", domain.ErrUnavailable)
)

// kindError keeps the client's error for the message and adds one of the
// kinds above for errors.Is.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// classify maps an error of the client library to our kinds; other errors
// pass unchanged.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var kerr *kurrentdb.Error
	if !errors.As(err, &kerr) {
		return err
	}
	return classifyCode(kerr.Code(), err)
}

func classifyCode(code kurrentdb.ErrorCode, err error) error {
	var kind error
	switch code {
	case kurrentdb.ErrorCodeWrongExpectedVersion, kurrentdb.ErrorCodeStreamRevisionConflict:
		kind = errWrongVersion
	case kurrentdb.ErrorCodeResourceNotFound:
		kind = errNotFound
	case kurrentdb.ErrorCodeStreamDeleted, kurrentdb.ErrorCodeStreamTombstoned:
		kind = errStreamDeleted
	case kurrentdb.ErrorCodeConnectionClosed:
		kind = errDead
	case kurrentdb.ErrorUnavailable, kurrentdb.ErrorCodeDeadlineExceeded, kurrentdb.ErrorCodeNotLeader:
		kind = errUnavailable
	default:
		return err
	}
	return &kindError{kind: kind, err: err}
}

// expectedState maps our 1-based expected version to KurrentDB's stream
// state: version n is revision n-1, so "the stream is at version n" means
// "its last event has revision n-1".
func expectedState(expected domain.ExpectedVersion) (kurrentdb.StreamState, error) {
	switch {
	case expected == domain.AnyVersion:
		return kurrentdb.Any{}, nil
	case expected == domain.NoStream:
		return kurrentdb.NoStream{}, nil
	case expected > 0:
		return kurrentdb.StreamRevision{Value: uint64(expected) - 1}, nil
	default:
		return nil, fmt.Errorf("expected version %d: %w", expected, eventstore.ErrInvalidAppend)
	}
}

// versionOf converts a KurrentDB stream revision to our 1-based version.
func versionOf(revision uint64) int64 { return int64(revision) + 1 }

// allPosition is where a forward read of $all starts so that it yields the
// event at position after (if any) and everything past it. KurrentDB writes
// each event as a self-committed record whose commit and prepare positions
// are both the record's log position, so the pair (after, after) names it.
func allPosition(after uint64) kurrentdb.AllPosition {
	if after == 0 {
		return kurrentdb.Start{}
	}
	return kurrentdb.Position{Commit: after, Prepare: after}
}

// positionOf is the event's commit position, our Envelope.Position. The
// server reports an unknown position as the largest uint64; that becomes 0.
func positionOf(rec kurrentdb.RecordedEvent) uint64 {
	if rec.Position.Commit == math.MaxUint64 {
		return 0
	}
	return rec.Position.Commit
}

// isSystem reports whether an event belongs to KurrentDB itself: system
// streams ($...), stream metadata ($$...), links ($>) and other $-typed
// events never reach our readers.
func isSystem(rec kurrentdb.RecordedEvent) bool {
	return strings.HasPrefix(rec.StreamID, "$") || strings.HasPrefix(rec.EventType, "$")
}

// subscriptionFilter is the server-side filter for a subscription: a stream
// name prefix filter when the Filter has prefixes, else the filter that drops
// system event types. The adapter still drops system events client-side, as a
// prefix filter lets through a $-stream that happens to match.
func subscriptionFilter(f eventstore.Filter) *kurrentdb.SubscriptionFilter {
	if len(f.StreamPrefixes) == 0 {
		return kurrentdb.ExcludeSystemEventsFilter()
	}
	for _, p := range f.StreamPrefixes {
		if p == "" {
			// An empty prefix matches every stream; the server would
			// treat it the same, but a type filter skips system events
			// earlier.
			return kurrentdb.ExcludeSystemEventsFilter()
		}
	}
	return &kurrentdb.SubscriptionFilter{
		Type:     kurrentdb.StreamFilterType,
		Prefixes: append([]string(nil), f.StreamPrefixes...),
	}
}

// eventMeta is the JSON of an event's user metadata: our causality and
// tracing fields, the schema version of Data, and KurrentDB's conventional
// $correlationId/$causationId so that the server's own tooling (the
// by-correlation projection, the UI) understands them.
type eventMeta struct {
	domain.Metadata
	SchemaVersion  int    `json:"schema_version"`
	KCorrelationID string `json:"$correlationId,omitempty"`
	KCausationID   string `json:"$causationId,omitempty"`
}

func encodeMetadata(e domain.Envelope) ([]byte, error) {
	return json.Marshal(eventMeta{
		Metadata:       e.Metadata,
		SchemaVersion:  e.SchemaVersion,
		KCorrelationID: e.Metadata.CorrelationID,
		KCausationID:   e.Metadata.CausationID,
	})
}

// decodeMetadata reads user metadata written by encodeMetadata. Events
// written by other tools may carry only the $-prefixed ids, which are used
// when ours are absent.
func decodeMetadata(b []byte) (domain.Metadata, int, error) {
	if len(b) == 0 {
		return domain.Metadata{}, 0, nil
	}
	var m eventMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return domain.Metadata{}, 0, fmt.Errorf("decode event metadata: %w", err)
	}
	if m.CorrelationID == "" {
		m.CorrelationID = m.KCorrelationID
	}
	if m.CausationID == "" {
		m.CausationID = m.KCausationID
	}
	return m.Metadata, m.SchemaVersion, nil
}

// toEventData converts the envelopes of one append. It expects arguments
// that passed eventstore.CheckAppend and adds the checks this backend needs:
// names starting with $ are KurrentDB's own (its readers would hide such
// events), the nil UUID is refused (the client would silently replace it with
// a random id, breaking idempotent retries) and Data must be JSON, since it
// is stored with the JSON content type.
func toEventData(stream string, events []domain.Envelope) ([]kurrentdb.EventData, error) {
	if strings.HasPrefix(stream, "$") {
		return nil, fmt.Errorf("append %s: stream names starting with $ are reserved for KurrentDB: %w", stream, eventstore.ErrInvalidAppend)
	}
	out := make([]kurrentdb.EventData, len(events))
	for i, e := range events {
		if strings.HasPrefix(e.Type, "$") {
			return nil, fmt.Errorf("append %s: event %d: types starting with $ are reserved for KurrentDB: %w", stream, i, eventstore.ErrInvalidAppend)
		}
		id, err := uuid.Parse(e.ID)
		if err != nil || id == uuid.Nil {
			return nil, fmt.Errorf("append %s: event %d: id %q is not a usable UUID: %w", stream, i, e.ID, eventstore.ErrInvalidAppend)
		}
		if len(e.Data) > 0 && !json.Valid(e.Data) {
			return nil, fmt.Errorf("append %s: event %d: data is not JSON: %w", stream, i, eventstore.ErrInvalidAppend)
		}
		meta, err := encodeMetadata(e)
		if err != nil {
			return nil, fmt.Errorf("append %s: event %d: %w", stream, i, err)
		}
		out[i] = kurrentdb.EventData{
			EventID:     id,
			EventType:   e.Type,
			ContentType: kurrentdb.ContentTypeJson,
			Data:        e.Data,
			Metadata:    meta,
		}
	}
	return out, nil
}

// toEnvelope converts a recorded event. Metadata that is not ours (events of
// other applications on a shared server) is tolerated: the envelope then has
// empty Metadata and SchemaVersion 0, and the payload passes through as is.
func toEnvelope(rec kurrentdb.RecordedEvent) domain.Envelope {
	md, schema, _ := decodeMetadata(rec.UserMetadata)
	var data json.RawMessage
	if len(rec.Data) > 0 {
		// An empty RawMessage would not marshal; nil marshals as null.
		data = rec.Data
	}
	return domain.Envelope{
		ID:            rec.EventID.String(),
		Stream:        rec.StreamID,
		Version:       versionOf(rec.EventNumber),
		Position:      positionOf(rec),
		Type:          rec.EventType,
		SchemaVersion: schema,
		Data:          data,
		Metadata:      md,
		RecordedAt:    rec.CreatedDate.UTC(),
	}
}
