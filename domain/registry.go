package domain

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// ErrUnknownEventType is returned when the registry does not know an event's
// type name or schema version, or a payload's Go type.
var ErrUnknownEventType = errors.New("unknown event type")

// Registry maps event payloads between their Go types and their stored form:
// a type name, a schema version and JSON. Every payload Go type is registered
// once under one (name, version) pair. An older shape of an event is kept
// readable by an upcaster from its version to the next (RegisterUpcaster),
// so that every reader decodes it as the newest shape; registering the old
// Go type under the older version instead also works, for a type whose
// readers handle both shapes.
//
// Register everything before first use; after that a Registry is safe for
// concurrent Encode and Decode.
type Registry struct {
	byKey     map[eventKey]reflect.Type
	byType    map[reflect.Type]eventKey
	upcasters map[eventKey]Upcaster
}

type eventKey struct {
	name    string
	version int
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		byKey:     make(map[eventKey]reflect.Type),
		byType:    make(map[reflect.Type]eventKey),
		upcasters: make(map[eventKey]Upcaster),
	}
}

// Register records that payloads of example's Go type (a struct value or a
// pointer to one) are stored as event type name at schemaVersion.
func (r *Registry) Register(name string, schemaVersion int, example any) error {
	if name == "" {
		return errors.New("register event: empty type name")
	}
	if schemaVersion < 1 {
		return fmt.Errorf("register event %s: schema version %d, want >= 1", name, schemaVersion)
	}
	t := payloadType(example)
	if t == nil {
		return fmt.Errorf("register event %s: nil example payload", name)
	}
	key := eventKey{name, schemaVersion}
	if old, ok := r.byKey[key]; ok {
		return fmt.Errorf("register event %s v%d: already registered as %s", name, schemaVersion, old)
	}
	if _, ok := r.upcasters[key]; ok {
		return fmt.Errorf("register event %s v%d: an upcaster from that version is registered", name, schemaVersion)
	}
	if old, ok := r.byType[t]; ok {
		return fmt.Errorf("register event %s v%d: %s is already registered as %s v%d", name, schemaVersion, t, old.name, old.version)
	}
	r.byKey[key] = t
	r.byType[t] = key
	return nil
}

// Encode returns the type name, schema version and JSON form of payload,
// which must be of a registered Go type (or a pointer to one).
func (r *Registry) Encode(payload any) (name string, schemaVersion int, data json.RawMessage, err error) {
	t := payloadType(payload)
	key, ok := r.byType[t]
	if !ok {
		return "", 0, nil, fmt.Errorf("encode %v: %w", t, ErrUnknownEventType)
	}
	data, err = json.Marshal(payload)
	if err != nil {
		return "", 0, nil, fmt.Errorf("encode %s: %w", key.name, err)
	}
	return key.name, key.version, data, nil
}

// Decode returns the payload of e as a value of the Go type registered for
// e.Type at the newest version its upcasters reach from e.SchemaVersion (a
// struct value, not a pointer). The store's bytes are not changed: an old
// event is upcast each time it is read.
func (r *Registry) Decode(e Envelope) (any, error) {
	up, err := r.Upcast(e)
	if err != nil {
		return nil, err
	}
	t := r.byKey[eventKey{up.Type, up.SchemaVersion}]
	p := reflect.New(t)
	if err := json.Unmarshal(up.Data, p.Interface()); err != nil {
		if up.SchemaVersion != e.SchemaVersion {
			return nil, fmt.Errorf("decode event %s (%s v%d, read as v%d): %w", e.ID, e.Type, e.SchemaVersion, up.SchemaVersion, err)
		}
		return nil, fmt.Errorf("decode event %s (%s v%d): %w", e.ID, e.Type, e.SchemaVersion, err)
	}
	return p.Elem().Interface(), nil
}

// payloadType is the Go type a payload is registered under: pointers are
// looked through so that T and *T are the same event.
func payloadType(v any) reflect.Type {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}
