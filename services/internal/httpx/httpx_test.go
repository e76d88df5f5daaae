package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/domain"
)

func decodeProblem(t *testing.T, res *http.Response) Problem {
	t.Helper()
	if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	var p Problem
	if err := json.NewDecoder(res.Body).Decode(&p); err != nil {
		t.Fatalf("decode problem: %v", err)
	}
	if p.Status != res.StatusCode {
		t.Fatalf("problem status %d != response status %d", p.Status, res.StatusCode)
	}
	return p
}

func TestProblemFor(t *testing.T) {
	ve := &domain.ValidationError{}
	ve.Add("items[0].quantity", "must be > 0")
	tests := []struct {
		name   string
		err    error
		status int
		slug   string
		fields int
	}{
		{"validation", fmt.Errorf("place: %w", ve), 400, SlugValidation, 1},
		{"invalid", fmt.Errorf("x: %w", domain.ErrInvalid), 400, SlugValidation, 0},
		{"not found", fmt.Errorf("load order-1: %w", domain.ErrNotFound), 404, SlugNotFound, 0},
		{"illegal", fmt.Errorf("cancel: %w", domain.ErrIllegalState), 409, SlugIllegalState, 0},
		{"conflict", fmt.Errorf("append: %w", domain.ErrVersionConflict), 409, SlugVersionConflict, 0},
		{"stock", fmt.Errorf("reserve: %w", domain.ErrInsufficientStock), 409, SlugInsufficientStock, 0},
		{"dup event", fmt.Errorf("append: %w", domain.ErrDuplicateEventID), 409, SlugDuplicateEvent, 0},
		{"canceled", fmt.Errorf("query: %w", context.Canceled), 503, SlugUnavailable, 0},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), 503, SlugUnavailable, 0},
		{"problem", fmt.Errorf("wrapped: %w", NewProblem(413, SlugPayloadTooLarge, "big")), 413, SlugPayloadTooLarge, 0},
		{"other", errors.New("dial tcp 10.0.0.1:5432: connection refused"), 500, SlugInternal, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ProblemFor(tt.err)
			if p.Status != tt.status || p.Type != ProblemTypeBase+tt.slug || len(p.Errors) != tt.fields {
				t.Fatalf("ProblemFor = %+v, want status %d slug %s fields %d", p, tt.status, tt.slug, tt.fields)
			}
			if p.Title == "" {
				t.Fatal("empty title")
			}
		})
	}
}

func TestWriteErrorHidesInternals(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	h := RequestID(AccessLog(logger)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, errors.New("secret dsn postgres://u:pw@db/x failed"))
	})))
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	req.Header.Set(RequestIDHeader, "req-123")
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	res := rr.Result()
	p := decodeProblem(t, res)
	if p.Status != 500 {
		t.Fatalf("status %d", p.Status)
	}
	raw, _ := json.Marshal(p)
	if strings.Contains(string(raw), "secret") {
		t.Fatalf("500 body leaks internals: %s", raw)
	}
	if !strings.Contains(logs.String(), "secret dsn") || !strings.Contains(logs.String(), `"request_id":"req-123"`) {
		t.Fatalf("error not logged with request id: %s", logs.String())
	}
	if got := res.Header.Get(RequestIDHeader); got != "req-123" {
		t.Fatalf("X-Request-Id = %q", got)
	}
}

type item struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

type address struct {
	Country string `json:"country"`
}

type body struct {
	CustomerID string            `json:"customer_id"`
	Items      []item            `json:"items"`
	Address    address           `json:"shipping_address"`
	Price      int64             `json:"price"`
	Ratio      float64           `json:"ratio"`
	Flag       bool              `json:"flag"`
	Tags       map[string]string `json:"tags"`
	Ptr        *int              `json:"ptr"`
	When       time.Time         `json:"when"`
	Ignored    string            `json:"-"`
}

func TestDecodeJSON(t *testing.T) {
	big := `{"customer_id":"` + strings.Repeat("a", MaxBodyBytes) + `"}`
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int
		slug        string
		field       string
	}{
		{"ok", "application/json", `{"customer_id":"c","items":[{"sku":"a","quantity":2}],"ptr":3,"when":"2024-01-02T03:04:05Z"}`, 0, "", ""},
		{"ok charset", "application/json; charset=utf-8", `{"flag":true}`, 0, "", ""},
		{"other JSON type", "application/merge-patch+json", `{}`, 415, SlugUnsupportedMediaType, ""},
		{"empty body", "", ``, 0, "", ""},
		{"whitespace body", "text/plain", "  \n", 0, "", ""},
		{"nulls", "application/json", `{"items":null,"ptr":null,"customer_id":null}`, 0, "", ""},
		{"no content type", "", `{}`, 0, "", ""},
		{"text plain", "text/plain", `{}`, 0, "", ""},
		{"curl -d default with JSON", "application/x-www-form-urlencoded", `{}`, 0, "", ""},
		{"real form body", "application/x-www-form-urlencoded", `a=b`, 400, SlugMalformedJSON, ""},
		{"xml", "application/xml", `{}`, 415, SlugUnsupportedMediaType, ""},
		{"multipart", "multipart/form-data; boundary=x", `{}`, 415, SlugUnsupportedMediaType, ""},
		{"malformed", "application/json", `{"customer_id":`, 400, SlugMalformedJSON, ""},
		{"syntax", "application/json", `{"customer_id" "x"}`, 400, SlugMalformedJSON, ""},
		{"trailing", "application/json", `{} {}`, 400, SlugMalformedJSON, ""},
		{"trailing garbage", "application/json", `{}x`, 400, SlugMalformedJSON, ""},
		{"array top", "application/json", `[1]`, 400, SlugMalformedJSON, ""},
		{"null top", "application/json", `null`, 400, SlugMalformedJSON, ""},
		{"unknown top", "application/json", `{"bogus":1}`, 400, SlugValidation, "bogus"},
		{"unknown nested", "application/json", `{"items":[{"sku":"a"},{"sku":"b","colour":"red"}]}`, 400, SlugValidation, "items[1].colour"},
		{"case differs", "application/json", `{"Customer_ID":"c"}`, 400, SlugValidation, "Customer_ID"},
		{"dash field", "application/json", `{"Ignored":"x"}`, 400, SlugValidation, "Ignored"},
		{"wrong type string", "application/json", `{"customer_id":5}`, 400, SlugValidation, "customer_id"},
		{"wrong type nested", "application/json", `{"items":[{"sku":"a","quantity":"2"}]}`, 400, SlugValidation, "items[0].quantity"},
		{"fraction", "application/json", `{"items":[{"quantity":1.5}]}`, 400, SlugValidation, "items[0].quantity"},
		{"overflow", "application/json", `{"price":99999999999999999999}`, 400, SlugValidation, "price"},
		{"items object", "application/json", `{"items":{}}`, 400, SlugValidation, "items"},
		{"address array", "application/json", `{"shipping_address":[]}`, 400, SlugValidation, "shipping_address"},
		{"address field", "application/json", `{"shipping_address":{"country":1}}`, 400, SlugValidation, "shipping_address.country"},
		{"bool", "application/json", `{"flag":"yes"}`, 400, SlugValidation, "flag"},
		{"float", "application/json", `{"ratio":"1"}`, 400, SlugValidation, "ratio"},
		{"map value", "application/json", `{"tags":{"a":1}}`, 400, SlugValidation, "tags.a"},
		{"time", "application/json", `{"when":"yesterday"}`, 400, SlugMalformedJSON, ""},
		{"too large", "application/json", big, 413, SlugPayloadTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/x", strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			var dst body
			err := DecodeJSON(req, &dst)
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("DecodeJSON: %v", err)
				}
				return
			}
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("error %v is not a *Problem", err)
			}
			if p.Status != tt.status || p.Type != ProblemTypeBase+tt.slug {
				t.Fatalf("problem = %+v, want %d %s", p, tt.status, tt.slug)
			}
			if tt.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tt.field) {
				t.Fatalf("errors = %+v, want field %q", p.Errors, tt.field)
			}
		})
	}
}

func TestDecodeJSONFillsDestination(t *testing.T) {
	req := httptest.NewRequest(http.MethodPost, "/x",
		strings.NewReader(`{"customer_id":"c-1","items":[{"sku":"A","quantity":3}],"shipping_address":{"country":"US"}}`))
	req.Header.Set("Content-Type", "application/json")
	var dst body
	if err := DecodeJSON(req, &dst); err != nil {
		t.Fatal(err)
	}
	if dst.CustomerID != "c-1" || len(dst.Items) != 1 || dst.Items[0].Quantity != 3 || dst.Address.Country != "US" {
		t.Fatalf("decoded %+v", dst)
	}
}

func TestDecodeJSONBodyLimitStreaming(t *testing.T) {
	// No Content-Length: the limit must still hold while reading.
	r := io.MultiReader(strings.NewReader(`{"customer_id":"`), strings.NewReader(strings.Repeat("x", MaxBodyBytes+10)), strings.NewReader(`"}`))
	req := httptest.NewRequest(http.MethodPost, "/x", r)
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	var dst body
	err := DecodeJSON(req, &dst)
	if p := ProblemFor(err); p.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %v, want 413", err)
	}
}

func TestRequestID(t *testing.T) {
	tests := []struct {
		name, sent string
		echoed     bool
	}{
		{"valid", "abc-123", true},
		{"max length", strings.Repeat("a", 200), true},
		{"too long", strings.Repeat("a", 201), false},
		{"control char", "abc\x01", false},
		{"non ascii", "abcé", false},
		{"absent", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var inCtx string
			h := RequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				inCtx = RequestIDFrom(r.Context())
				w.WriteHeader(http.StatusNoContent)
			}))
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			if tt.sent != "" {
				req.Header.Set(RequestIDHeader, tt.sent)
			}
			rr := httptest.NewRecorder()
			h.ServeHTTP(rr, req)
			got := rr.Header().Get(RequestIDHeader)
			if got != inCtx {
				t.Fatalf("header %q != context %q", got, inCtx)
			}
			if tt.echoed {
				if got != tt.sent {
					t.Fatalf("got %q, want echo of %q", got, tt.sent)
				}
				return
			}
			if _, err := uuid.Parse(got); err != nil {
				t.Fatalf("generated id %q is not a UUID", got)
			}
		})
	}
}

func TestRecover(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	h := RequestID(AccessLog(logger)(Recover(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("boom at secret place")
	}))))
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/", nil))
	res := rr.Result()
	p := decodeProblem(t, res)
	if p.Status != 500 || strings.Contains(p.Detail, "secret") {
		t.Fatalf("problem %+v", p)
	}
	if res.Header.Get(RequestIDHeader) == "" {
		t.Fatal("no request id on panic response")
	}
	if !strings.Contains(logs.String(), "boom at secret place") || !strings.Contains(logs.String(), `"status":500`) {
		t.Fatalf("logs: %s", logs.String())
	}
}

func TestReadyz(t *testing.T) {
	ok := Check{Name: "database", Probe: func(context.Context) error { return nil }}
	bad := Check{Name: "nats", Probe: func(context.Context) error { return errors.New("nats: status RECONNECTING") }}

	rr := httptest.NewRecorder()
	Readyz(time.Second, ok)(rr, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rr.Code != 200 {
		t.Fatalf("ready: status %d", rr.Code)
	}

	rr = httptest.NewRecorder()
	Readyz(time.Second, ok, bad)(rr, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	p := decodeProblem(t, rr.Result())
	if p.Status != 503 || !strings.Contains(p.Detail, "nats") || strings.Contains(p.Detail, "database") {
		t.Fatalf("problem %+v", p)
	}

	rr = httptest.NewRecorder()
	Healthz(rr, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rr.Code != 200 {
		t.Fatalf("healthz: status %d", rr.Code)
	}
}

func TestJoinFieldErrors(t *testing.T) {
	bad := func(fields ...string) error {
		v := &domain.ValidationError{}
		for _, f := range fields {
			v.Add(f, "is bad")
		}
		return v.Err()
	}
	other := errors.New("database down")
	tests := []struct {
		name   string
		errs   []error
		fields []string // nil: want nil
		want   error
	}{
		{"none", nil, nil, nil},
		{"all nil", []error{nil, nil}, nil, nil},
		{"one", []error{nil, bad("limit")}, []string{"limit"}, nil},
		{"merged in order", []error{bad("limit"), nil, bad("customer_id", "status")}, []string{"limit", "customer_id", "status"}, nil},
		{"wrapped", []error{fmt.Errorf("list: %w", bad("after"))}, []string{"after"}, nil},
		{"not a validation error", []error{bad("limit"), other}, nil, other},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := JoinFieldErrors(tt.errs...)
			if tt.want != nil {
				if err != tt.want {
					t.Fatalf("got %v, want %v", err, tt.want)
				}
				return
			}
			if tt.fields == nil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			var ve *domain.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a validation error", err)
			}
			got := make([]string, len(ve.Fields))
			for i, f := range ve.Fields {
				got[i] = f.Field
			}
			if strings.Join(got, ",") != strings.Join(tt.fields, ",") {
				t.Fatalf("fields %v, want %v", got, tt.fields)
			}
		})
	}
}

func TestNewPageNeverNull(t *testing.T) {
	rr := httptest.NewRecorder()
	WriteJSON(rr, httptest.NewRequest(http.MethodGet, "/api/inventory", nil), http.StatusOK, NewPage[int](nil, ""))
	if got := strings.TrimSpace(rr.Body.String()); got != `{"items":[],"next":""}` {
		t.Fatalf("empty page encodes as %s", got)
	}
}
