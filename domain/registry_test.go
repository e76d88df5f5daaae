package domain_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/domain"
)

type widgetMade struct {
	ID    string `json:"id"`
	Count int    `json:"count"`
}

type widgetMadeV2 struct {
	ID     string `json:"id"`
	Count  int    `json:"count"`
	Colour string `json:"colour"`
}

func newRegistry(t *testing.T) *domain.Registry {
	t.Helper()
	r := domain.NewRegistry()
	if err := r.Register("WidgetMade", 1, widgetMade{}); err != nil {
		t.Fatal(err)
	}
	if err := r.Register("WidgetMade", 2, &widgetMadeV2{}); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRegistryRoundTrip(t *testing.T) {
	r := newRegistry(t)
	tests := []struct {
		name        string
		payload     any
		wantType    string
		wantVersion int
		want        any
	}{
		{"value", widgetMade{ID: "w1", Count: 3}, "WidgetMade", 1, widgetMade{ID: "w1", Count: 3}},
		{"pointer", &widgetMade{ID: "w2", Count: 4}, "WidgetMade", 1, widgetMade{ID: "w2", Count: 4}},
		{"newer schema", widgetMadeV2{ID: "w3", Count: 5, Colour: "red"}, "WidgetMade", 2, widgetMadeV2{ID: "w3", Count: 5, Colour: "red"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, version, data, err := r.Encode(tt.payload)
			if err != nil {
				t.Fatal(err)
			}
			if name != tt.wantType || version != tt.wantVersion {
				t.Fatalf("Encode = %s v%d, want %s v%d", name, version, tt.wantType, tt.wantVersion)
			}
			if !json.Valid(data) {
				t.Fatalf("Encode data %q is not JSON", data)
			}
			got, err := r.Decode(domain.Envelope{ID: "e1", Type: name, SchemaVersion: version, Data: data})
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("Decode = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestRegistryDecodeOldSchema(t *testing.T) {
	r := newRegistry(t)
	got, err := r.Decode(domain.Envelope{Type: "WidgetMade", SchemaVersion: 1, Data: json.RawMessage(`{"id":"w","count":1,"colour":"ignored"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if want := (widgetMade{ID: "w", Count: 1}); got != want {
		t.Fatalf("Decode = %#v, want %#v", got, want)
	}
}

func TestRegistryErrors(t *testing.T) {
	r := newRegistry(t)
	t.Run("unknown type", func(t *testing.T) {
		_, err := r.Decode(domain.Envelope{ID: "e9", Type: "GadgetMade", SchemaVersion: 1, Data: json.RawMessage(`{}`)})
		if !errors.Is(err, domain.ErrUnknownEventType) || !strings.Contains(err.Error(), "GadgetMade") {
			t.Fatalf("err = %v, want ErrUnknownEventType naming GadgetMade", err)
		}
	})
	t.Run("unknown schema version", func(t *testing.T) {
		_, err := r.Decode(domain.Envelope{Type: "WidgetMade", SchemaVersion: 3, Data: json.RawMessage(`{}`)})
		if !errors.Is(err, domain.ErrUnknownEventType) || !strings.Contains(err.Error(), "v3") {
			t.Fatalf("err = %v, want ErrUnknownEventType naming v3", err)
		}
	})
	t.Run("malformed data", func(t *testing.T) {
		_, err := r.Decode(domain.Envelope{Type: "WidgetMade", SchemaVersion: 1, Data: json.RawMessage(`{"count":"x"}`)})
		if err == nil || errors.Is(err, domain.ErrUnknownEventType) {
			t.Fatalf("err = %v, want a JSON error", err)
		}
	})
	t.Run("unregistered payload", func(t *testing.T) {
		if _, _, _, err := r.Encode(struct{ X int }{1}); !errors.Is(err, domain.ErrUnknownEventType) {
			t.Fatalf("err = %v, want ErrUnknownEventType", err)
		}
		if _, _, _, err := r.Encode(nil); !errors.Is(err, domain.ErrUnknownEventType) {
			t.Fatalf("nil payload: err = %v, want ErrUnknownEventType", err)
		}
	})
}

func TestRegistryRegisterRejects(t *testing.T) {
	tests := []struct {
		name    string
		typ     string
		version int
		example any
	}{
		{"empty name", "", 1, widgetMade{}},
		{"version zero", "Other", 0, struct{ A int }{}},
		{"nil example", "Other", 1, nil},
		{"name and version taken", "WidgetMade", 1, struct{ B int }{}},
		{"go type taken", "Other", 1, widgetMade{}},
		{"go type taken through pointer", "Other", 1, &widgetMadeV2{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := newRegistry(t).Register(tt.typ, tt.version, tt.example); err == nil {
				t.Fatal("Register succeeded, want an error")
			}
		})
	}
}
