package httpx

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// decodeProblemFor decodes body into dst as application/json and returns
// the problem it was refused with, or nil.
func decodeProblemFor(t *testing.T, body string, dst any) *Problem {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/x", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	err := DecodeJSON(req, dst)
	if err == nil {
		return nil
	}
	var p *Problem
	if !errors.As(err, &p) {
		t.Fatalf("error %v is not a *Problem", err)
	}
	return p
}

// TestDecodeJSONRefusesWhatEncodingJSONLetsThrough: invalid UTF-8, lone
// surrogates and repeated keys, which encoding/json would silently turn
// into U+FFFD or last-wins, are refused naming the field.
func TestDecodeJSONRefusesWhatEncodingJSONLetsThrough(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		field string // "" when the body is accepted
		msg   string // substring of the field's message
	}{
		{"invalid byte", "{\"customer_id\":\"a\xffb\"}", "customer_id", "UTF-8"},
		{"truncated sequence", "{\"customer_id\":\"ab\xe2\x82\"}", "customer_id", "UTF-8"},
		{"invalid byte nested", "{\"shipping_address\":{\"country\":\"U\xc0\xafS\"}}", "shipping_address.country", "UTF-8"},
		{"invalid byte in array", "{\"items\":[{\"sku\":\"a\"},{\"sku\":\"\xff\"}]}", "items[1].sku", "UTF-8"},
		{"invalid byte in map value", "{\"tags\":{\"k\":\"\xfe\"}}", "tags.k", "UTF-8"},
		{"invalid byte in key", "{\"cust\xffomer_id\":\"c\"}", "cust\ufffdomer_id", "field name"},
		{"lone high surrogate", `{"customer_id":"\ud800"}`, "customer_id", "surrogate"},
		{"lone high surrogate at the end", `{"shipping_address":{"country":"US\uDBFF"}}`, "shipping_address.country", "surrogate"},
		{"lone low surrogate", `{"customer_id":"a\udc00b"}`, "customer_id", "surrogate"},
		{"high surrogate then a letter", `{"customer_id":"\ud83d\u0041"}`, "customer_id", "surrogate"},
		{"two high surrogates", `{"customer_id":"\ud83d\ud83d"}`, "customer_id", "surrogate"},
		{"escaped backslash before u", `{"customer_id":"\\ud800"}`, "", ""},
		{"valid pair", `{"customer_id":"\ud83d\ude00"}`, "", ""},
		{"U+FFFD escaped", `{"customer_id":"\ufffd"}`, "", ""},
		{"U+FFFD as bytes", "{\"customer_id\":\"\xef\xbf\xbd\"}", "", ""},
		{"U+FFFD next to a valid pair", `{"customer_id":"\ufffd\ud83d\ude00"}`, "", ""},
		{"repeated key", `{"customer_id":"a","customer_id":"b"}`, "customer_id", "more than once"},
		{"repeated key nested", `{"shipping_address":{"country":"US","country":"FR"}}`, "shipping_address.country", "more than once"},
		{"repeated key in array element", `{"items":[{"sku":"a","quantity":1,"quantity":2}]}`, "items[0].quantity", "more than once"},
		{"repeated key spelled with an escape", `{"customer_id":"a","customer_\u0069d":"b"}`, "customer_id", "more than once"},
		{"repeated unknown key", `{"bogus":1,"bogus":2}`, "bogus", "more than once"},
		{"same key in sibling objects", `{"items":[{"sku":"a"},{"sku":"b"}]}`, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dst body
			p := decodeProblemFor(t, tt.body, &dst)
			if tt.field == "" {
				if p != nil {
					t.Fatalf("refused: %+v", p)
				}
				return
			}
			if p == nil {
				t.Fatalf("accepted, decoded %+v", dst)
			}
			if p.Status != http.StatusBadRequest || p.Type != ProblemTypeBase+SlugValidation {
				t.Fatalf("problem %+v, want 400 validation", p)
			}
			if len(p.Errors) != 1 || p.Errors[0].Field != tt.field || !strings.Contains(p.Errors[0].Message, tt.msg) {
				t.Fatalf("errors %+v, want field %q with a message about %q", p.Errors, tt.field, tt.msg)
			}
		})
	}
}

func TestDecodeJSONKeepsValidText(t *testing.T) {
	var dst body
	if p := decodeProblemFor(t, `{"customer_id":"\u00e9\ud83d\ude00\ufffd\\ud800"}`, &dst); p != nil {
		t.Fatalf("refused: %+v", p)
	}
	if want := "é😀\ufffd\\ud800"; dst.CustomerID != want {
		t.Fatalf("decoded %q, want %q", dst.CustomerID, want)
	}
}

func TestDecodeJSONNesting(t *testing.T) {
	deep := `{"tags":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`
	p := decodeProblemFor(t, deep, &body{})
	if p == nil || p.Status != http.StatusBadRequest || p.Type != ProblemTypeBase+SlugMalformedJSON {
		t.Fatalf("100 levels: %+v, want 400 malformed-json", p)
	}
	// The API's own shapes nest far less than the bound.
	if p := decodeProblemFor(t, `{"items":[{"sku":"a"}],"shipping_address":{"country":"US"}}`, &body{}); p != nil {
		t.Fatalf("refused: %+v", p)
	}
}

// TestDecodeJSONIntegralNumbers: JSON Schema counts 1.0 and 1e2 as
// integers, so integer fields take them (with their value); fractions and
// values beyond the field's range stay refused.
func TestDecodeJSONIntegralNumbers(t *testing.T) {
	type nums struct {
		Q int   `json:"q"`
		P int64 `json:"p"`
		U uint8 `json:"u"`
		R float64
	}
	tests := []struct {
		body  string
		want  nums
		field string // refused naming this field when set
		msg   string
	}{
		{body: `{"q":1.0}`, want: nums{Q: 1}},
		{body: `{"q":1e2}`, want: nums{Q: 100}},
		{body: `{"q":1E+2}`, want: nums{Q: 100}},
		{body: `{"q":2.50e1}`, want: nums{Q: 25}},
		{body: `{"q":1500e-3}`, field: "q", msg: "integer"},
		{body: `{"q":-0.0}`, want: nums{Q: 0}},
		{body: `{"q":0e999999999999999999999}`, want: nums{Q: 0}},
		{body: `{"q":-12.000}`, want: nums{Q: -12}},
		{body: `{"p":9.223372036854775807e18}`, want: nums{P: 9223372036854775807}},
		{body: `{"p":9.223372036854775808e18}`, field: "p", msg: "out of range"},
		{body: `{"q":1.5}`, field: "q", msg: "integer"},
		{body: `{"q":1e-1}`, field: "q", msg: "integer"},
		{body: `{"q":1e-999999999999999999999}`, field: "q", msg: "integer"},
		{body: `{"q":1e400}`, field: "q", msg: "out of range"},
		{body: `{"q":1e999999999999999999999}`, field: "q", msg: "out of range"},
		{body: `{"u":255.0}`, want: nums{U: 255}},
		{body: `{"u":2.56e2}`, field: "u", msg: "out of range"},
		{body: `{"u":-1.0}`, field: "u", msg: "non-negative"},
		{body: `{"u":-0}`, want: nums{U: 0}},
		{body: `{"R":1.0}`, want: nums{R: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			var got nums
			p := decodeProblemFor(t, tt.body, &got)
			if tt.field != "" {
				if p == nil || len(p.Errors) != 1 || p.Errors[0].Field != tt.field || !strings.Contains(p.Errors[0].Message, tt.msg) {
					t.Fatalf("got %+v (decoded %+v), want field %s refused with %q", p, got, tt.field, tt.msg)
				}
				return
			}
			if p != nil {
				t.Fatalf("refused: %+v", p)
			}
			if got != tt.want {
				t.Fatalf("decoded %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestIntegerLiteral(t *testing.T) {
	tests := []struct {
		in             string
		lit            string
		integral, huge bool
	}{
		{"0", "0", true, false},
		{"-0", "0", true, false},
		{"7", "7", true, false},
		{"-7", "-7", true, false},
		{"1.0", "1", true, false},
		{"10", "10", true, false},
		{"100.00", "100", true, false},
		{"0.5e1", "5", true, false},
		{"12e-1", "", false, false},
		{"1.25e2", "125", true, false},
		{"0.001e3", "1", true, false},
		{"1e40", "", true, true},
		{"1e39", "1000000000000000000000000000000000000000", true, false},
		{"0.0e-5", "0", true, false},
	}
	for _, tt := range tests {
		lit, integral, huge := integerLiteral(tt.in)
		if lit != tt.lit || integral != tt.integral || huge != tt.huge {
			t.Errorf("integerLiteral(%q) = %q, %v, %v; want %q, %v, %v", tt.in, lit, integral, huge, tt.lit, tt.integral, tt.huge)
		}
	}
}
