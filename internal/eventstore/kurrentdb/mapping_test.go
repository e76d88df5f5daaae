package kurrentdb

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
)

func TestExpectedState(t *testing.T) {
	tests := []struct {
		expected domain.ExpectedVersion
		want     kurrentdb.StreamState
		invalid  bool
	}{
		{domain.AnyVersion, kurrentdb.Any{}, false},
		{domain.NoStream, kurrentdb.NoStream{}, false},
		{domain.ExactVersion(0), kurrentdb.NoStream{}, false},
		{domain.ExactVersion(1), kurrentdb.StreamRevision{Value: 0}, false},
		{domain.ExactVersion(42), kurrentdb.StreamRevision{Value: 41}, false},
		{domain.ExactVersion(math.MaxInt64), kurrentdb.StreamRevision{Value: math.MaxInt64 - 1}, false},
		{domain.ExpectedVersion(-2), nil, true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.expected), func(t *testing.T) {
			got, err := expectedState(tc.expected)
			if tc.invalid {
				if !errors.Is(err, eventstore.ErrInvalidAppend) {
					t.Fatalf("err = %v, want ErrInvalidAppend", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("expectedState(%d) = %#v, want %#v", tc.expected, got, tc.want)
			}
		})
	}
}

func TestVersionOf(t *testing.T) {
	for rev, want := range map[uint64]int64{0: 1, 1: 2, 99: 100} {
		if got := versionOf(rev); got != want {
			t.Errorf("versionOf(%d) = %d, want %d", rev, got, want)
		}
	}
}

func TestAllPosition(t *testing.T) {
	if got := allPosition(0); !reflect.DeepEqual(got, kurrentdb.Start{}) {
		t.Errorf("allPosition(0) = %#v, want Start", got)
	}
	if got := allPosition(1234); !reflect.DeepEqual(got, kurrentdb.Position{Commit: 1234, Prepare: 1234}) {
		t.Errorf("allPosition(1234) = %#v, want {1234 1234}", got)
	}
}

func TestPositionOf(t *testing.T) {
	tests := []struct {
		commit uint64
		want   uint64
	}{
		{0, 0},
		{5120, 5120},
		{math.MaxUint64, 0}, // the server's "unknown"
	}
	for _, tc := range tests {
		rec := kurrentdb.RecordedEvent{Position: kurrentdb.Position{Commit: tc.commit, Prepare: 7}}
		if got := positionOf(rec); got != tc.want {
			t.Errorf("positionOf(commit %d) = %d, want %d", tc.commit, got, tc.want)
		}
	}
}

func TestIsSystem(t *testing.T) {
	tests := []struct {
		stream, typ string
		want        bool
	}{
		{"order-1", "OrderPlaced", false},
		{"order-$1", "Odd$Type", false},
		{"$stats-127.0.0.1:2113", "$statsCollected", true},
		{"$$order-1", "$metadata", true},
		{"$ce-order", "$>", true},
		{"order-1", "$streamDeleted", true},
		{"$users", "UserCreated", true},
	}
	for _, tc := range tests {
		rec := kurrentdb.RecordedEvent{StreamID: tc.stream, EventType: tc.typ}
		if got := isSystem(rec); got != tc.want {
			t.Errorf("isSystem(%q, %q) = %v, want %v", tc.stream, tc.typ, got, tc.want)
		}
	}
}

func TestSubscriptionFilter(t *testing.T) {
	exclude := kurrentdb.ExcludeSystemEventsFilter()
	tests := []struct {
		name   string
		filter eventstore.Filter
		want   *kurrentdb.SubscriptionFilter
	}{
		{"empty filter drops system types", eventstore.Filter{}, exclude},
		{"prefixes filter streams", eventstore.Filter{StreamPrefixes: []string{"order-", "stock-"}},
			&kurrentdb.SubscriptionFilter{Type: kurrentdb.StreamFilterType, Prefixes: []string{"order-", "stock-"}}},
		{"an empty prefix matches all", eventstore.Filter{StreamPrefixes: []string{"order-", ""}}, exclude},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := subscriptionFilter(tc.filter); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("subscriptionFilter(%v) = %#v, want %#v", tc.filter, got, tc.want)
			}
		})
	}
	f := eventstore.Filter{StreamPrefixes: []string{"a-"}}
	got := subscriptionFilter(f)
	got.Prefixes[0] = "changed"
	if f.StreamPrefixes[0] != "a-" {
		t.Fatal("subscriptionFilter shares the caller's prefix slice")
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	e := domain.Envelope{
		SchemaVersion: 3,
		Metadata: domain.Metadata{
			CorrelationID: "corr", CausationID: "cause", RequestID: "req-ñ",
			TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "k=v",
		},
	}
	b, err := encodeMetadata(e)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("metadata is not a JSON object: %s", b)
	}
	for k, want := range map[string]any{
		"correlation_id": "corr", "causation_id": "cause", "request_id": "req-ñ",
		"tracestate": "k=v", "schema_version": 3.0,
		"$correlationId": "corr", "$causationId": "cause",
	} {
		if raw[k] != want {
			t.Errorf("metadata[%q] = %v, want %v (metadata %s)", k, raw[k], want, b)
		}
	}
	md, schema, err := decodeMetadata(b)
	if err != nil {
		t.Fatal(err)
	}
	if md != e.Metadata || schema != 3 {
		t.Fatalf("decoded %+v schema %d, want %+v schema 3", md, schema, e.Metadata)
	}
}

func TestDecodeMetadata(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    domain.Metadata
		schema  int
		wantErr bool
	}{
		{"empty", "", domain.Metadata{}, 0, false},
		{"kurrentdb convention only", `{"$correlationId":"c1","$causationId":"c2"}`,
			domain.Metadata{CorrelationID: "c1", CausationID: "c2"}, 0, false},
		{"ours win over the convention", `{"correlation_id":"ours","$correlationId":"theirs","schema_version":2}`,
			domain.Metadata{CorrelationID: "ours"}, 2, false},
		{"unknown fields ignored", `{"tenant":"x","schema_version":1}`, domain.Metadata{}, 1, false},
		{"not JSON", "\x00\x01", domain.Metadata{}, 0, true},
		{"not an object", `[1,2]`, domain.Metadata{}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			md, schema, err := decodeMetadata([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if md != tc.want || schema != tc.schema {
				t.Fatalf("got %+v schema %d, want %+v schema %d", md, schema, tc.want, tc.schema)
			}
		})
	}
}

func TestToEventData(t *testing.T) {
	id := uuid.New()
	good := domain.Envelope{ID: id.String(), Type: "OrderPlaced", SchemaVersion: 2, Data: json.RawMessage(`{"n":1}`),
		Metadata: domain.Metadata{CorrelationID: "c"}}
	data, err := toEventData("order-1", []domain.Envelope{good})
	if err != nil {
		t.Fatal(err)
	}
	d := data[0]
	if d.EventID != id || d.EventType != "OrderPlaced" || d.ContentType != kurrentdb.ContentTypeJson || string(d.Data) != `{"n":1}` {
		t.Fatalf("event data = %+v, want id %s, type OrderPlaced, JSON content, data {\"n\":1}", d, id)
	}
	if md, schema, err := decodeMetadata(d.Metadata); err != nil || md.CorrelationID != "c" || schema != 2 {
		t.Fatalf("metadata %s decodes to %+v schema %d (%v)", d.Metadata, md, schema, err)
	}

	upper := good
	upper.ID = "6BA7B810-9DAD-11D1-80B4-00C04FD430C8"
	if data, err := toEventData("s", []domain.Envelope{upper}); err != nil || data[0].EventID.String() != "6ba7b810-9dad-11d1-80b4-00c04fd430c8" {
		t.Fatalf("upper-case id: %v, %v", data, err)
	}

	nilID := good
	nilID.ID = uuid.Nil.String()
	notJSON := good
	notJSON.Data = json.RawMessage(`{"n":`)
	systemType := good
	systemType.Type = "$metadata"
	for name, e := range map[string]domain.Envelope{"nil uuid": nilID, "data not JSON": notJSON, "system type": systemType} {
		if _, err := toEventData("s", []domain.Envelope{good, e}); !errors.Is(err, eventstore.ErrInvalidAppend) {
			t.Errorf("%s: err = %v, want ErrInvalidAppend", name, err)
		}
	}
	if _, err := toEventData("$ce-order", []domain.Envelope{good}); !errors.Is(err, eventstore.ErrInvalidAppend) {
		t.Errorf("system stream: err = %v, want ErrInvalidAppend", err)
	}
	if data, err := toEventData("s", []domain.Envelope{{ID: id.String(), Type: "Empty"}}); err != nil || len(data[0].Data) != 0 {
		t.Errorf("event without data: %v, %v", data, err)
	}
}

func TestToEnvelope(t *testing.T) {
	id := uuid.New()
	created := time.Date(2025, 3, 1, 12, 0, 0, 123456700, time.FixedZone("X", 3600))
	rec := kurrentdb.RecordedEvent{
		EventID:      id,
		EventType:    "StockReserved",
		StreamID:     "stock-sku1",
		EventNumber:  4,
		Position:     kurrentdb.Position{Commit: 9000, Prepare: 9000},
		CreatedDate:  created,
		Data:         []byte(`{"qty":2}`),
		UserMetadata: []byte(`{"correlation_id":"c","schema_version":5}`),
	}
	got := toEnvelope(rec)
	want := domain.Envelope{
		ID: id.String(), Stream: "stock-sku1", Version: 5, Position: 9000, Type: "StockReserved",
		SchemaVersion: 5, Data: json.RawMessage(`{"qty":2}`), Metadata: domain.Metadata{CorrelationID: "c"},
		RecordedAt: created.UTC(),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("toEnvelope =\n %+v\nwant\n %+v", got, want)
	}
	if got.RecordedAt.Location() != time.UTC {
		t.Fatalf("RecordedAt in %v, want UTC", got.RecordedAt.Location())
	}

	rec.Data = []byte{}
	if got := toEnvelope(rec); got.Data != nil {
		t.Fatalf("empty data became %q, want nil (which marshals as null)", got.Data)
	}
	if _, err := json.Marshal(toEnvelope(rec)); err != nil {
		t.Fatalf("envelope without data does not marshal: %v", err)
	}

	rec.UserMetadata = []byte{0xff, 0x00}
	if got := toEnvelope(rec); got.Metadata != (domain.Metadata{}) || got.SchemaVersion != 0 || got.ID != id.String() {
		t.Fatalf("foreign metadata: got %+v, want the event with empty metadata", got)
	}
}

func TestClassifyCode(t *testing.T) {
	cause := errors.New("cause")
	tests := []struct {
		code kurrentdb.ErrorCode
		kind error // nil: passed through unchanged
	}{
		{kurrentdb.ErrorCodeWrongExpectedVersion, errWrongVersion},
		{kurrentdb.ErrorCodeStreamRevisionConflict, errWrongVersion},
		{kurrentdb.ErrorCodeResourceNotFound, errNotFound},
		{kurrentdb.ErrorCodeStreamDeleted, errStreamDeleted},
		{kurrentdb.ErrorCodeStreamTombstoned, errStreamDeleted},
		{kurrentdb.ErrorCodeConnectionClosed, errDead},
		{kurrentdb.ErrorCodeUnknown, nil},
		{kurrentdb.ErrorCodeDeadlineExceeded, errUnavailable},
		{kurrentdb.ErrorUnavailable, errUnavailable},
		{kurrentdb.ErrorCodeNotLeader, errUnavailable},
		{kurrentdb.ErrorCodeAccessDenied, nil},
	}
	kinds := []error{errWrongVersion, errNotFound, errStreamDeleted, errDead, errUnavailable}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			got := classifyCode(tc.code, cause)
			if !errors.Is(got, cause) {
				t.Fatalf("classified error %v lost its cause", got)
			}
			if got.Error() != cause.Error() {
				t.Errorf("message %q, want the cause's %q", got.Error(), cause.Error())
			}
			for _, k := range kinds {
				if errors.Is(got, k) != (k == tc.kind) {
					t.Errorf("errors.Is(%v) = %v, want %v", k, errors.Is(got, k), k == tc.kind)
				}
			}
			// The HTTP layer answers a transient failure 503, anything
			// else 500 or what its kind means.
			transient := tc.kind == errDead || tc.kind == errUnavailable
			if errors.Is(got, domain.ErrUnavailable) != transient {
				t.Errorf("errors.Is(domain.ErrUnavailable) = %v, want %v", !transient, transient)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	if classify(nil) != nil {
		t.Fatal("classify(nil) != nil")
	}
	plain := errors.New("plain")
	if got := classify(plain); got != plain {
		t.Fatalf("classify(plain) = %v, want it unchanged", got)
	}
	// FromError wraps a foreign error as the client's own, code unknown.
	kerr, _ := kurrentdb.FromError(plain)
	wrapped := fmt.Errorf("could not read: %w", kerr)
	got := classify(wrapped)
	if got != wrapped || errors.Is(got, errWrongVersion) {
		t.Fatalf("classify(unknown client error) = %v, want it unchanged", got)
	}
}

func TestConfig(t *testing.T) {
	d := Config{}.withDefaults()
	if d.ReadBatch != defaultReadBatch || d.AnyVersionScan != defaultAnyVersionScan || d.SubscriptionBuffer != defaultSubscriptionBuffer {
		t.Fatalf("defaults = %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if off := (Config{AnyVersionScan: -1}).withDefaults(); off.AnyVersionScan != -1 {
		t.Fatalf("AnyVersionScan -1 became %d", off.AnyVersionScan)
	}
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"small batch", Config{ReadBatch: 1}, true},
		{"largest batch", Config{ReadBatch: maxReadBatch}, true},
		{"negative batch", Config{ReadBatch: -1}, false},
		{"huge batch", Config{ReadBatch: maxReadBatch + 1}, false},
		{"negative buffer", Config{SubscriptionBuffer: -3}, false},
		{"huge scan", Config{AnyVersionScan: maxReadBatch + 1}, false},
		{"scan off", Config{AnyVersionScan: -1}, true},
		{"zero buffer takes the default", Config{SubscriptionBuffer: 0}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate(%+v) = %v, want ok %v", tc.cfg, err, tc.ok)
			}
		})
	}
}

func TestReplayed(t *testing.T) {
	a, b, c, x := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	// The stream holds a, b, c at revisions 0..2; the tail lists them
	// newest first, as a backwards read does.
	tail := []kurrentdb.RecordedEvent{
		{EventID: c, EventNumber: 2, Position: kurrentdb.Position{Commit: 300}},
		{EventID: b, EventNumber: 1, Position: kurrentdb.Position{Commit: 200}},
		{EventID: a, EventNumber: 0, Position: kurrentdb.Position{Commit: 100}},
	}
	tests := []struct {
		name string
		tail []kurrentdb.RecordedEvent
		ids  []uuid.UUID
		done bool
		dup  bool
		want eventstore.AppendResult
	}{
		{"empty stream", nil, []uuid.UUID{a}, false, false, eventstore.AppendResult{}},
		{"new ids", tail, []uuid.UUID{x}, false, false, eventstore.AppendResult{}},
		{"whole replay", tail, []uuid.UUID{a, b, c}, true, false, eventstore.AppendResult{NextVersion: 3, Position: 300}},
		{"replay of an older append", tail, []uuid.UUID{a, b}, true, false, eventstore.AppendResult{NextVersion: 2, Position: 200}},
		{"replay of the newest", tail, []uuid.UUID{c}, true, false, eventstore.AppendResult{NextVersion: 3, Position: 300}},
		{"stored ids out of order", tail, []uuid.UUID{b, a}, false, true, eventstore.AppendResult{}},
		{"replay running past the end", tail, []uuid.UUID{c, x}, false, true, eventstore.AppendResult{}},
		{"a later id stored", tail, []uuid.UUID{x, b}, false, true, eventstore.AppendResult{}},
		{"gap between stored ids", tail, []uuid.UUID{a, c}, false, true, eventstore.AppendResult{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs := make([]domain.Envelope, len(tc.ids))
			for i, id := range tc.ids {
				evs[i] = domain.Envelope{ID: id.String(), Type: "E"}
			}
			res, done, err := replayed("s", tc.tail, evs)
			if tc.dup {
				if !errors.Is(err, eventstore.ErrDuplicateEventID) {
					t.Fatalf("err = %v, want ErrDuplicateEventID", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if done != tc.done || res != tc.want {
				t.Fatalf("replayed = %+v, %v; want %+v, %v", res, done, tc.want, tc.done)
			}
		})
	}
}
