package domain_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/domain"
)

// gadgetMade is the newest shape of GadgetMade (v3). Version 1 was
// {"id","n"}; version 2 renamed n to count; version 3 added colour,
// "grey" for the gadgets made before.
type gadgetMade struct {
	ID     string `json:"id"`
	Count  int    `json:"count"`
	Colour string `json:"colour"`
}

// rename returns an upcaster that moves key from to key to.
func rename(from, to string) domain.Upcaster {
	return func(data json.RawMessage) (json.RawMessage, error) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		if v, ok := m[from]; ok {
			m[to] = v
			delete(m, from)
		}
		return json.Marshal(m)
	}
}

func addColour(data json.RawMessage) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	m["colour"] = json.RawMessage(`"grey"`)
	return json.Marshal(m)
}

func gadgetRegistry(t *testing.T) *domain.Registry {
	t.Helper()
	r := domain.NewRegistry()
	for _, err := range []error{
		r.Register("GadgetMade", 3, gadgetMade{}),
		r.RegisterUpcaster("GadgetMade", 1, rename("n", "count")),
		r.RegisterUpcaster("GadgetMade", 2, addColour),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestUpcasterChain(t *testing.T) {
	r := gadgetRegistry(t)
	tests := []struct {
		name    string
		version int
		data    string
		want    gadgetMade
	}{
		{"v1 goes through both upcasters", 1, `{"id":"g1","n":4}`, gadgetMade{ID: "g1", Count: 4, Colour: "grey"}},
		{"v2 goes through the last one", 2, `{"id":"g2","count":5}`, gadgetMade{ID: "g2", Count: 5, Colour: "grey"}},
		{"v3 is decoded as it is", 3, `{"id":"g3","count":6,"colour":"red"}`, gadgetMade{ID: "g3", Count: 6, Colour: "red"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := domain.Envelope{ID: "e1", Type: "GadgetMade", SchemaVersion: tt.version, Data: json.RawMessage(tt.data)}
			got, err := r.Decode(e)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Decode = %#v, want %#v", got, tt.want)
			}
			up, err := r.Upcast(e)
			if err != nil {
				t.Fatal(err)
			}
			if up.SchemaVersion != 3 || up.ID != e.ID || up.Type != e.Type {
				t.Errorf("Upcast = %s %s v%d, want %s %s v3", up.ID, up.Type, up.SchemaVersion, e.ID, e.Type)
			}
			var fromJSON gadgetMade
			if err := json.Unmarshal(up.Data, &fromJSON); err != nil || fromJSON != tt.want {
				t.Errorf("Upcast data %s reads as %#v (%v), want %#v", up.Data, fromJSON, err, tt.want)
			}
			if tt.version == 3 && string(up.Data) != tt.data {
				t.Errorf("Upcast changed the data of the newest version: %s", up.Data)
			}
			if string(e.Data) != tt.data {
				t.Errorf("Upcast changed the caller's data to %s", e.Data)
			}
			if v, ok := r.Current("GadgetMade", tt.version); !ok || v != 3 {
				t.Errorf("Current(GadgetMade, %d) = %d, %v; want 3, true", tt.version, v, ok)
			}
		})
	}
}

func TestUpcasterErrors(t *testing.T) {
	r := gadgetRegistry(t)
	tests := []struct {
		name        string
		typ         string
		version     int
		data        string
		wantUnknown bool
	}{
		{"a version newer than the newest", "GadgetMade", 4, `{}`, true},
		{"version zero", "GadgetMade", 0, `{}`, true},
		{"an unknown type", "WidgetMade", 1, `{}`, true},
		{"data the upcaster cannot read", "GadgetMade", 1, `[1]`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := domain.Envelope{ID: "e7", Type: tt.typ, SchemaVersion: tt.version, Data: json.RawMessage(tt.data)}
			_, decodeErr := r.Decode(e)
			_, upcastErr := r.Upcast(e)
			for _, err := range []error{decodeErr, upcastErr} {
				switch {
				case err == nil:
					t.Fatal("no error")
				case tt.wantUnknown && !errors.Is(err, domain.ErrUnknownEventType):
					t.Errorf("err = %v, want ErrUnknownEventType", err)
				case tt.wantUnknown && !strings.Contains(err.Error(), fmt.Sprintf("v%d", tt.version)):
					t.Errorf("err = %v does not name v%d", err, tt.version)
				case !tt.wantUnknown && !errors.Is(err, domain.ErrUpcast):
					t.Errorf("err = %v, want ErrUpcast", err)
				}
			}
			if !tt.wantUnknown {
				var te *json.UnmarshalTypeError
				if !errors.As(upcastErr, &te) {
					t.Errorf("err = %v does not carry the JSON error", upcastErr)
				}
			}
			if _, ok := r.Current(tt.typ, tt.version); ok == tt.wantUnknown {
				t.Errorf("Current(%s, %d) reachable = %v", tt.typ, tt.version, ok)
			}
		})
	}
}

func TestRegisterUpcasterRejects(t *testing.T) {
	noop := func(d json.RawMessage) (json.RawMessage, error) { return d, nil }
	tests := []struct {
		name     string
		register func(*domain.Registry) error
	}{
		{"empty name", func(r *domain.Registry) error { return r.RegisterUpcaster("", 1, noop) }},
		{"version zero", func(r *domain.Registry) error { return r.RegisterUpcaster("GadgetMade", 0, noop) }},
		{"nil upcaster", func(r *domain.Registry) error { return r.RegisterUpcaster("OtherMade", 1, nil) }},
		{"from a version taken by an upcaster", func(r *domain.Registry) error { return r.RegisterUpcaster("GadgetMade", 2, noop) }},
		{"from a version with a Go type", func(r *domain.Registry) error { return r.RegisterUpcaster("GadgetMade", 3, noop) }},
		{"a Go type at a version with an upcaster", func(r *domain.Registry) error {
			return r.Register("GadgetMade", 1, struct{ N int }{})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.register(gadgetRegistry(t)); err == nil {
				t.Fatal("registered, want an error")
			}
		})
	}
}
