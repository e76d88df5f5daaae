package commands_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/events"
	"github.com/orderflow/orderflow/domain/inventory"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   commands.Config
		valid bool
	}{
		{"zero means defaults", commands.Config{}, true},
		{"explicit", commands.Config{RetryBudget: time.Second, CacheStreams: 10, CacheIDs: 100, ServedCountries: []string{"US", "BR"}}, true},
		{"negative budget", commands.Config{RetryBudget: -time.Second}, false},
		{"negative cache streams", commands.Config{CacheStreams: -1}, false},
		{"negative cache ids", commands.Config{CacheIDs: -1}, false},
		{"not a country", commands.Config{ServedCountries: []string{"US", "EU"}}, false},
		{"lower case", commands.Config{ServedCountries: []string{"us"}}, false},
		{"empty list", commands.Config{ServedCountries: []string{}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.valid {
				t.Fatalf("Validate = %v, want valid %v", err, tt.valid)
			}
			if !tt.valid {
				defer func() {
					if recover() == nil {
						t.Error("NewShipping accepted an invalid config")
					}
				}()
				commands.NewShipping(newStore(), tt.cfg)
			}
		})
	}
}

// brokenStore fails reads, or serves a stream holding an event no registry
// knows.
type brokenStore struct {
	commands.EventStore
	readErr error
}

func (s *brokenStore) ReadStream(ctx context.Context, stream string, from int64, max int) ([]domain.Envelope, error) {
	if s.readErr != nil {
		return nil, s.readErr
	}
	if from > 1 {
		return nil, nil
	}
	return []domain.Envelope{{ID: uuid.NewString(), Stream: stream, Version: 1, Type: "Mystery", SchemaVersion: 1, Data: json.RawMessage(`{}`)}}, nil
}

func TestStoreFailuresReachTheCaller(t *testing.T) {
	ctx := context.Background()
	errRead := errors.New("read failed")
	h := commands.NewOrders(&brokenStore{EventStore: newStore(), readErr: errRead}, commands.Config{})
	_, err := h.Cancel(ctx, meta(), uuid.NewString(), "cancelled_by_customer")
	wantErr(t, err, errRead)

	h = commands.NewOrders(&brokenStore{EventStore: newStore()}, commands.Config{})
	_, err = h.Cancel(ctx, meta(), uuid.NewString(), "cancelled_by_customer")
	wantErr(t, err, domain.ErrUnknownEventType)
	_, _, err = h.Load(ctx, uuid.NewString())
	wantErr(t, err, domain.ErrUnknownEventType)
}

// TestLongStreamsArePaged: a stream longer than one read page is loaded
// whole.
func TestLongStreamsArePaged(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	h := commands.NewInventory(s, commands.Config{})
	const restocks = 1200
	r := events.NewRegistry()
	envs := make([]domain.Envelope, restocks)
	for i := range envs {
		typ, v, data, err := r.Encode(inventory.StockRestocked{SKU: "A", Quantity: 1})
		noError(t, err)
		envs[i] = domain.Envelope{ID: uuid.NewString(), Type: typ, SchemaVersion: v, Data: data}
	}
	_, err := s.Append(ctx, inventory.Stream("A"), domain.NoStream, envs)
	noError(t, err)
	res, err := h.Restock(ctx, meta(), "A", 1)
	noError(t, err)
	if res.Version != restocks+1 {
		t.Errorf("version = %d, want %d", res.Version, restocks+1)
	}
	wantLevels(t, s, "A", restocks+1, 0)
}
