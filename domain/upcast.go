package domain

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrUpcast is wrapped by the errors of an upcaster that cannot turn an
// event's stored data into the next schema version (its data does not fit
// the shape it claims). Errors of the JSON decoder are wrapped too, so
// errors.As still finds them.
var ErrUpcast = errors.New("upcast event")

// Upcaster turns the JSON data of one event type at schema version v into
// the data of version v+1. It is a pure function of the data: the same
// bytes always give the same result, whoever reads them and whenever, so
// that a replay sees what the live reader saw. It must not rewrite what the
// store holds; the store's bytes stay as they were written.
type Upcaster func(data json.RawMessage) (json.RawMessage, error)

// RegisterUpcaster records up as the way from schema version from of event
// type name to version from+1. Decode and Upcast apply the chain of
// upcasters, one version at a time, until they reach a version whose Go
// type is registered. A version with an upcaster cannot also have a Go
// type: such a type would never be decoded.
func (r *Registry) RegisterUpcaster(name string, from int, up Upcaster) error {
	switch {
	case name == "":
		return errors.New("register upcaster: empty type name")
	case from < 1:
		return fmt.Errorf("register upcaster %s: from version %d, want >= 1", name, from)
	case up == nil:
		return fmt.Errorf("register upcaster %s v%d: nil upcaster", name, from)
	}
	key := eventKey{name, from}
	if _, ok := r.upcasters[key]; ok {
		return fmt.Errorf("register upcaster %s v%d: already registered", name, from)
	}
	if t, ok := r.byKey[key]; ok {
		return fmt.Errorf("register upcaster %s v%d: %s is registered at that version", name, from, t)
	}
	r.upcasters[key] = up
	return nil
}

// Current returns the schema version that Decode and Upcast produce for
// events of type name stored at schema version stored, and false when
// no registered Go type is reachable from it.
func (r *Registry) Current(name string, stored int) (int, bool) {
	v := stored
	for {
		if _, ok := r.byKey[eventKey{name, v}]; ok {
			return v, true
		}
		if _, ok := r.upcasters[eventKey{name, v}]; !ok {
			return 0, false
		}
		v++
	}
}

// Upcast returns e with its Data and SchemaVersion brought to the newest
// version through the registered upcasters; an event already at a version
// with a Go type is returned as it is. It is for readers that unmarshal an
// event's JSON themselves, so that they see the shape Decode would decode.
// A type or version the registry cannot reach a Go type from fails with
// ErrUnknownEventType.
func (r *Registry) Upcast(e Envelope) (Envelope, error) {
	if _, ok := r.Current(e.Type, e.SchemaVersion); !ok {
		return e, fmt.Errorf("decode event %s (%s v%d): %w", e.ID, e.Type, e.SchemaVersion, ErrUnknownEventType)
	}
	for {
		up, ok := r.upcasters[eventKey{e.Type, e.SchemaVersion}]
		if !ok {
			return e, nil
		}
		data, err := up(e.Data)
		if err != nil {
			return e, fmt.Errorf("event %s (%s v%d to v%d): %w: %w", e.ID, e.Type, e.SchemaVersion, e.SchemaVersion+1, ErrUpcast, err)
		}
		e.Data = data
		e.SchemaVersion++
	}
}
