package httpx_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"unicode/utf8"

	"github.com/orderflow/orderflow/services/internal/httpx"
)

// The fuzz destinations. placeBody has the shape of the orders service's
// place-order request (the body clients send most); wideBody has every
// kind of field the shaper treats differently, an interface among them so
// that arbitrarily nested JSON can be accepted and the depth bound shows.
type (
	placeBody struct {
		CustomerID string `json:"customer_id"`
		Items      []struct {
			SKU            string `json:"sku"`
			Quantity       int    `json:"quantity"`
			UnitPriceCents int64  `json:"unit_price_cents"`
		} `json:"items"`
		ShippingAddress struct {
			Name       string `json:"name"`
			Line1      string `json:"line1"`
			Line2      string `json:"line2"`
			City       string `json:"city"`
			PostalCode string `json:"postal_code"`
			Country    string `json:"country"`
		} `json:"shipping_address"`
	}
	wideBody struct {
		S     string            `json:"s"`
		I8    int8              `json:"i8"`
		U     uint              `json:"u"`
		U16   *uint16           `json:"u16"`
		F     float64           `json:"f"`
		F32   float32           `json:"f32"`
		B     bool              `json:"b"`
		Tags  map[string]string `json:"tags"`
		Arr   [2]int            `json:"arr"`
		Raw   json.RawMessage   `json:"raw,omitempty"` // null would decode to the text null
		Any   any               `json:"any"`
		Inner *wideBody         `json:"inner"`
		Named                   // embedded: its fields are flattened
	}
	Named struct {
		Name string `json:"name"`
	}
)

// FuzzDecodeJSON: whatever the body, DecodeJSONBytes never panics and
// fails only with a *Problem; what it accepts is one JSON object of valid
// UTF-8 with no repeated key, no lone surrogate escape and no more than
// 32 levels of nesting (checked here by a parser of the test's own), and
// re-marshals to JSON that decodes to the same value. A body the test's
// parser finds well-formed is never refused as malformed JSON.
//
// testdata/fuzz/FuzzDecodeJSON/unicode-space-body failed once: a body of
// U+00A0 was taken for an empty body and accepted (DecodeJSONBytes
// trimmed Unicode white space, not JSON's).
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"customer_id":"c-1","items":[{"sku":"SKU-1","quantity":2,"unit_price_cents":1299}],"shipping_address":{"name":"Ada","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"DE"}}`,
		`{"items":[{"quantity":1.0},{"quantity":1e2},{"quantity":2.50e1}]}`,
		`{"s":"x","i8":-128,"u":0,"u16":65535,"f":1.5e300,"f32":3.4e38,"b":true,"tags":{"a":"b"},"arr":[1,2],"raw":{"x":[1,{}]},"any":{"a":[null,1,"s"]},"inner":{"inner":{"name":"n"}},"name":"n"}`,
		``, "  \n", `{}`, `null`, `[]`, `"s"`, `{"s":1}`, `{"u":-1}`, `{"i8":128}`, `{"u":1e999999999}`, `{"i8":1e-999999999}`,
		`{"s":"a","s":"b"}`, `{"s":"a","\u0073":"b"}`, `{"tags":{"k":"1","k":"2"}}`,
		`{"s":"\ud800"}`, `{"s":"\udc00\ud800"}`, `{"s":"\ud83d\ude00"}`, `{"\ud800":1}`, `{"s":"\uFFFD"}`,
		"{\"s\":\"\xff\"}", "{\"\xc3\x28\":1}", "{\"s\":\"\xef\xbf\xbd\"}",
		`{"Customer_ID":"c-1"}`, `{"arr":[1,2,3]}`, `{"s":"x"} {}`, `{"s":"x"`, `{"s":"x"}]`,
		`{"any":` + nest(31) + `}`, `{"any":` + nest(32) + `}`, `{"any":` + nest(200) + `}`,
		"\u00a0", "\u2028",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecode(t, body, func() any { return new(placeBody) })
		checkDecode(t, body, func() any { return new(wideBody) })
	})
}

// nest returns n nested JSON arrays around 0.
func nest(n int) string {
	return string(bytes.Repeat([]byte("["), n)) + "0" + string(bytes.Repeat([]byte("]"), n))
}

func checkDecode(t *testing.T, body []byte, fresh func() any) {
	t.Helper()
	dst := fresh()
	err := httpx.DecodeJSONBytes("application/json", body, dst)
	verdict := judgeJSON(body)
	if err != nil {
		var p *httpx.Problem
		if !errors.As(err, &p) {
			t.Fatalf("body %q into %T: error %v is not a *Problem", body, dst, err)
		}
		if p.Status != http.StatusBadRequest && p.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("body %q: status %d, want 400 or 413", body, p.Status)
		}
		if verdict == "" && p.Type == httpx.ProblemTypeBase+httpx.SlugMalformedJSON {
			t.Fatalf("well-formed body %q refused as malformed: %v", body, err)
		}
		return
	}
	if verdict != "" && verdict != verdictEmpty {
		t.Fatalf("body %q into %T accepted, but it %s", body, dst, verdict)
	}
	if verdict == verdictEmpty {
		if !reflect.DeepEqual(dst, fresh()) {
			t.Fatalf("empty body %q changed the destination to %+v", body, dst)
		}
		return
	}
	again, err := json.Marshal(dst)
	if err != nil {
		t.Fatalf("body %q: the accepted value does not marshal: %v", body, err)
	}
	dst2 := fresh()
	if err := httpx.DecodeJSONBytes("application/json", again, dst2); err != nil {
		t.Fatalf("body %q accepted, its re-marshalled form %s refused: %v", body, again, err)
	}
	if !reflect.DeepEqual(dst, dst2) {
		t.Fatalf("body %q decodes to %+v, its re-marshalled form %s to %+v", body, dst, again, dst2)
	}
}

// verdictEmpty is judgeJSON's answer for a body of JSON white space only.
const verdictEmpty = "is empty"

// judgeJSON says what disqualifies body as a request body, or "" for one
// JSON object of valid UTF-8, no key repeated in an object, no lone
// surrogate escape and at most 32 levels of nesting. It is written
// independently of parseStrict (a byte-level recursive descent, not
// json.Decoder tokens), so that the two check each other.
func judgeJSON(body []byte) string {
	j := judge{b: body}
	j.space()
	if j.i == len(body) {
		return verdictEmpty
	}
	if !utf8.Valid(body) {
		return "is not valid UTF-8"
	}
	if body[j.i] != '{' {
		return "is not an object"
	}
	if msg := j.value(1); msg != "" {
		return msg
	}
	j.space()
	if j.i != len(body) {
		return "has data after the object"
	}
	return ""
}

type judge struct {
	b []byte
	i int
}

func (j *judge) space() {
	for j.i < len(j.b) && (j.b[j.i] == ' ' || j.b[j.i] == '\t' || j.b[j.i] == '\n' || j.b[j.i] == '\r') {
		j.i++
	}
}

// value parses the value at j.i, a container at nesting level depth.
func (j *judge) value(depth int) string {
	j.space()
	if j.i >= len(j.b) {
		return "ends early"
	}
	switch c := j.b[j.i]; {
	case c == '{' || c == '[':
		if depth > 32 {
			return "nests deeper than 32 levels"
		}
		return j.container(c, depth)
	case c == '"':
		_, msg := j.str()
		return msg
	default:
		start := j.i
		for j.i < len(j.b) && bytes.IndexByte([]byte(" \t\n\r,]}:"), j.b[j.i]) < 0 {
			j.i++
		}
		if !json.Valid(j.b[start:j.i]) {
			return "holds an invalid literal"
		}
		return ""
	}
}

func (j *judge) container(open byte, depth int) string {
	j.i++
	keys := map[string]bool{}
	for n := 0; ; n++ {
		j.space()
		if j.i < len(j.b) && (open == '{' && j.b[j.i] == '}' || open == '[' && j.b[j.i] == ']') {
			if n > 0 && j.b[j.i-1] == ',' {
				return "has a trailing comma"
			}
			j.i++
			return ""
		}
		if n > 0 {
			if j.i >= len(j.b) || j.b[j.i] != ',' {
				return "misses a comma"
			}
			j.i++
			j.space()
		}
		if open == '{' {
			if j.i >= len(j.b) || j.b[j.i] != '"' {
				return "has a key that is not a string"
			}
			key, msg := j.str()
			if msg != "" {
				return msg
			}
			if keys[key] {
				return "repeats the key " + strconv.Quote(key)
			}
			keys[key] = true
			j.space()
			if j.i >= len(j.b) || j.b[j.i] != ':' {
				return "misses a colon"
			}
			j.i++
		}
		if msg := j.value(depth + 1); msg != "" {
			return msg
		}
	}
}

// str parses the string literal at j.i and returns its value.
func (j *judge) str() (string, string) {
	start := j.i
	j.i++
	for {
		if j.i >= len(j.b) {
			return "", "ends early"
		}
		c := j.b[j.i]
		switch {
		case c == '"':
			j.i++
			var s string
			if err := json.Unmarshal(j.b[start:j.i], &s); err != nil {
				return "", "holds an invalid string"
			}
			return s, ""
		case c < 0x20:
			return "", "holds a control character in a string"
		case c == '\\':
			if j.i+1 >= len(j.b) {
				return "", "ends early"
			}
			if j.b[j.i+1] != 'u' {
				j.i += 2
				continue
			}
			r, ok := j.hex(j.i + 2)
			if !ok {
				return "", "holds a bad \\u escape"
			}
			j.i += 6
			switch {
			case 0xDC00 <= r && r < 0xE000:
				return "", "holds a lone low surrogate"
			case 0xD800 <= r && r < 0xDC00:
				lo, ok := j.hex(j.i + 2)
				if !ok || j.b[j.i] != '\\' || j.b[j.i+1] != 'u' || lo < 0xDC00 || lo >= 0xE000 {
					return "", "holds a lone high surrogate"
				}
				j.i += 6
			}
		default:
			j.i++
		}
	}
}

// hex decodes the four hex digits at i.
func (j *judge) hex(i int) (rune, bool) {
	if i+4 > len(j.b) {
		return 0, false
	}
	r, err := strconv.ParseUint(string(j.b[i:i+4]), 16, 16)
	return rune(r), err == nil
}

// TestJudgeJSON checks FuzzDecodeJSON's own parser, so that a lenient
// oracle cannot hide a lenient decoder.
func TestJudgeJSON(t *testing.T) {
	tests := []struct {
		body string
		ok   bool
	}{
		{`{"a":[1,{"b":"c"}],"d":null}`, true},
		{` {"a":"\ud83d\ude00"} `, true},
		{`{"a":"\uFFFD"}`, true},
		{`{"any":` + nest(31) + `}`, true},
		{`{"any":` + nest(32) + `}`, false},
		{`{"a":1,"a":2}`, false},
		{`{"a":1,"\u0061":2}`, false},
		{`{"a":{"b":1,"b":1}}`, false},
		{`{"a":"\ud800"}`, false},
		{`{"a":"\udc00"}`, false},
		{`{"a":"\ud800\u0041"}`, false},
		{"{\"a\":\"\xff\"}", false},
		{`{"a":1,}`, false},
		{`{"a":01}`, false},
		{`{"a":1} {}`, false},
		{`[]`, false},
		{"\u00a0", false},
		{`{"a":"x`, false},
	}
	for _, tt := range tests {
		if got := judgeJSON([]byte(tt.body)); (got == "") != tt.ok {
			t.Errorf("judgeJSON(%q) = %q, want ok %t", tt.body, got, tt.ok)
		}
	}
	if got := judgeJSON([]byte(" \n\t")); got != verdictEmpty {
		t.Errorf("judgeJSON of white space = %q, want %q", got, verdictEmpty)
	}
}
