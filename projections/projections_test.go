package projections

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orderflow/orderflow/domain"
)

func TestPageLimit(t *testing.T) {
	for _, c := range []struct {
		in, want int
		bad      bool
	}{
		{0, DefaultLimit, false}, {1, 1, false}, {500, 500, false},
		{501, 0, true}, {-1, 0, true},
	} {
		got, err := PageLimit(c.in)
		var v *domain.ValidationError
		if c.bad != (err != nil) || got != c.want || (c.bad && (!errors.As(err, &v) || v.Fields[0].Field != "limit")) {
			t.Errorf("PageLimit(%d) = %d, %v", c.in, got, err)
		}
	}
}

func TestParseLimit(t *testing.T) {
	for raw, want := range map[string]int{"": DefaultLimit, "1": 1, "500": 500, "0": -1, "501": -1, "ten": -1, "-3": -1, "1e2": -1} {
		got, err := ParseLimit(raw)
		if want < 0 {
			var v *domain.ValidationError
			if !errors.As(err, &v) || v.Fields[0].Field != "limit" {
				t.Errorf("ParseLimit(%q) = %d, %v; want a validation error on limit", raw, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("ParseLimit(%q) = %d, %v; want %d", raw, got, err, want)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	type key struct {
		At time.Time `json:"t"`
		ID string    `json:"id"`
	}
	in := key{At: time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC), ID: "x"}
	var out key
	if err := DecodeCursor(EncodeCursor(in), &out, nil); err != nil || !out.At.Equal(in.At) || out.ID != in.ID {
		t.Fatalf("round trip %+v -> %+v, %v", in, out, err)
	}
	for _, bad := range []string{"%%%", "bm90IGpzb24", EncodeCursor(key{})} {
		var k key
		err := DecodeCursor(bad, &k, func() bool { return k.ID != "" })
		var v *domain.ValidationError
		if !errors.As(err, &v) || v.Fields[0].Field != "after" || !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("DecodeCursor(%q) = %v, want a validation error on after", bad, err)
		}
	}
}

func TestTransient(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "40001"}, true},
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "55P03"}, true},
		{fmt.Errorf("apply: %w", &pgconn.PgError{Code: "23505"}), false},
		{&pgconn.PgError{Code: "22P02"}, false},
		{io.ErrUnexpectedEOF, true},
		{context.DeadlineExceeded, true},
		{Undecodable(domain.Envelope{ID: "e"}, io.EOF), false},
		{errors.New("handler says no"), false},
		{fmt.Errorf("order x: %w", ErrOutOfOrder), true},
	} {
		if got := transient(c.err); got != c.want {
			t.Errorf("transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestRateMeter(t *testing.T) {
	var m rateMeter
	t0 := time.Unix(1_000_000, 0)
	for s := range 7 {
		m.add(t0.Add(time.Duration(s)*time.Second), 70)
	}
	if got := m.rate(t0.Add(7 * time.Second)); got != 70 {
		t.Errorf("steady 70/s measured as %v", got)
	}
	if got := m.rate(t0.Add(time.Minute)); got != 0 {
		t.Errorf("a minute of silence measured as %v/s", got)
	}
}

func TestTablesNames(t *testing.T) {
	v := Tables{Version: 3}
	if got := v.Name("orders"); got != `"orders_v3"` {
		t.Errorf("Name = %s", got)
	}
	if got := v.Index("orders", "by_customer"); got != `"orders_v3_by_customer"` {
		t.Errorf("Index = %s", got)
	}
	if View("orders") != "rm_orders" {
		t.Errorf("View = %s", View("orders"))
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{BatchSize: -1}, {BatchSize: 200_000}, {RetryDelay: -1}, {MinBackoff: time.Second, MaxBackoff: time.Millisecond}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	if (JetStreamConfig{}).Validate() == nil {
		t.Error("JetStream config without subjects accepted")
	}
}

func TestTrim(t *testing.T) {
	evs := []domain.Envelope{{Position: 3}, {Position: 5}, {Position: 8}}
	if got := trim(evs, 5); len(got) != 1 || got[0].Position != 8 {
		t.Errorf("trim at 5 = %v", got)
	}
	if got := trim(evs, 0); len(got) != 3 {
		t.Errorf("trim at 0 = %v", got)
	}
}

func TestNewRetryPolicy(t *testing.T) {
	for _, c := range []struct {
		retries int
		delay   time.Duration
		want    retryPolicy
	}{
		{0, 0, retryPolicy{retries: 2, delay: 50 * time.Millisecond}},
		{-1, 0, retryPolicy{retries: 0, delay: 50 * time.Millisecond}},
		{5, time.Second, retryPolicy{retries: 5, delay: time.Second}},
	} {
		if got := newRetryPolicy(c.retries, c.delay); got != c.want {
			t.Errorf("newRetryPolicy(%d, %v) = %+v, want %+v", c.retries, c.delay, got, c.want)
		}
	}
}

func TestReach(t *testing.T) {
	evs := []domain.Envelope{{Position: 4}, {Position: 7}}
	for _, c := range []struct {
		name   string
		after  uint64
		events []domain.Envelope
		limit  int
		head   uint64
		want   uint64
	}{
		{"full read stops at its last event", 2, evs, 2, 20, 7},
		{"short read covers the head", 2, evs, 5, 20, 20},
		{"empty read covers the head", 9, nil, 5, 12, 12},
		{"empty read behind the checkpoint stays", 9, nil, 5, 3, 9},
	} {
		if got := reach(c.after, c.events, c.limit, c.head); got != c.want {
			t.Errorf("%s: reach = %d, want %d", c.name, got, c.want)
		}
	}
}
