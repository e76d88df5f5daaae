package httpx

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxBodyBytes is the largest request body a service accepts (1 MiB).
const MaxBodyBytes = 1 << 20

// ReadBody reads the whole request body, at most MaxBodyBytes; a larger body
// yields a 413 problem. It may be called once per request; callers that need
// the body again put a new reader in r.Body.
func ReadBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > MaxBodyBytes {
		return nil, tooLarge()
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge()
		}
		return nil, BadRequest(SlugBadRequest, "the request body could not be read")
	}
	if len(body) > MaxBodyBytes {
		return nil, tooLarge()
	}
	return body, nil
}

func tooLarge() *Problem {
	return NewProblem(http.StatusRequestEntityTooLarge, SlugPayloadTooLarge,
		fmt.Sprintf("the request body exceeds %d bytes", MaxBodyBytes))
}

// BadRequest builds a 400 problem with the given slug and no field errors.
func BadRequest(slug, format string, args ...any) *Problem {
	return NewProblem(http.StatusBadRequest, slug, fmt.Sprintf(format, args...))
}

// DecodeJSON reads r's body into dst, which must point to a struct. It is
// strict: a non-empty body must not be declared as another format (else
// 415; see isJSONMediaType), be at most MaxBodyBytes (else 413), hold
// exactly one JSON object (else 400) with no key repeated in any object
// and only valid UTF-8 in its strings (else 400 naming the field), whose
// fields all exist in dst with exactly their JSON names and have the right
// JSON types (else 400 naming the field, e.g. "items[1].quantity"). An
// integer field takes any integral number (1, 1.0, 1e2), as JSON Schema
// counts them all as integers. An empty body leaves dst unchanged, as
// "{}" would. Every error is a *Problem.
func DecodeJSON(r *http.Request, dst any) error {
	body, err := ReadBody(r)
	if err != nil {
		return err
	}
	return DecodeJSONBytes(r.Header.Get("Content-Type"), body, dst)
}

// DecodeJSONBytes is DecodeJSON for a body that was already read.
func DecodeJSONBytes(contentType string, body []byte, dst any) error {
	// Only JSON's own white space makes a body empty: bytes.TrimSpace
	// would also take a body of U+00A0 or U+2028 for an empty one and
	// accept it (caught by a FuzzDecodeJSON seed).
	if len(bytes.Trim(body, jsonSpace)) == 0 {
		return nil
	}
	if !isJSONMediaType(contentType) {
		p := NewProblem(http.StatusUnsupportedMediaType, SlugUnsupportedMediaType,
			"the request body must be JSON, sent as application/json")
		return p
	}
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("decode json: destination must be a non-nil pointer, got %T", dst)
	}

	// First pass: a token walk that builds generic values and catches
	// what encoding/json lets through silently (see parseStrict), then a
	// check of their shape against dst with exact paths.
	generic, err := parseStrict(body)
	if err != nil {
		return err
	}
	var sh shaper
	if fe := sh.check(generic, rv.Type().Elem(), "", func(v any) { generic = v }); fe != nil {
		return ValidationProblem("the request body has invalid fields", *fe)
	}
	if sh.changed {
		// Integral numbers written as 1.0 or 1e2 were rewritten for
		// integer fields, which encoding/json would refuse as they are.
		if body, err = json.Marshal(generic); err != nil {
			return fmt.Errorf("decode json: re-encode: %w", err)
		}
	}

	// Second pass: the real decode. The checks above make failures here
	// unlikely; they are still reported as client errors.
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return ValidationProblem("the request body has invalid fields",
				FieldError{Field: te.Field, Message: "must be " + jsonTypeName(te.Type)})
		}
		return BadRequest(SlugMalformedJSON, "the request body is not valid: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// jsonSpace is the white space JSON allows between tokens (RFC 8259).
const jsonSpace = " \t\r\n"

func malformed(err error) *Problem {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return BadRequest(SlugMalformedJSON, "the request body is not valid JSON (at byte %d): %s", se.Offset, se.Error())
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return BadRequest(SlugMalformedJSON, "the request body is not valid JSON: it ends early")
	}
	return BadRequest(SlugMalformedJSON, "the request body is not valid JSON")
}

// isJSONMediaType reports whether a body declared as contentType is read
// as JSON: when it is declared application/json, or not at all, or as
// text/plain or application/x-www-form-urlencoded, which is what `curl -d`
// sends unless told otherwise. The body is still parsed strictly as JSON,
// so a real form body gets a 400, while a JSON body typed at a shell just
// works. Anything else gets a 415, also other JSON types such as
// application/merge-patch+json, whose meaning differs (the OpenAPI
// document lists exactly the types accepted here, so that a validating
// proxy and the service agree).
func isJSONMediaType(contentType string) bool {
	if contentType == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch mt {
	case "application/json", "application/x-www-form-urlencoded", "text/plain":
		return true
	}
	return false
}

// maxJSONDepth bounds the nesting of a request body. The API's bodies nest
// three levels; the bound keeps a body of a million brackets from costing
// a deep recursion.
const maxJSONDepth = 32

// parseStrict parses body, which must be one JSON object and nothing
// after it, into generic values (map[string]any, []any, string,
// json.Number, bool, nil). Unlike encoding/json it refuses, naming the
// field:
//
//   - a key repeated in one object (encoding/json keeps the last value);
//   - a string or key holding invalid UTF-8 or an escaped lone UTF-16
//     surrogate such as "\ud800" (encoding/json turns both into U+FFFD,
//     so the damage would be stored silently).
//
// It walks the body with json.Decoder.Token, which validates the syntax
// and reports where each token ends, so that the raw text of every string
// can be checked.
func parseStrict(body []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	p := &strictParser{body: body, dec: dec}
	tok, _, err := p.next()
	if err != nil {
		return nil, malformed(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, BadRequest(SlugMalformedJSON, "the request body must be a JSON object")
	}
	v, err := p.object("", 1)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, BadRequest(SlugMalformedJSON, "the request body must hold a single JSON value; found more data after it")
	}
	return v, nil
}

type strictParser struct {
	body []byte
	dec  *json.Decoder
}

// next returns the next token and the raw bytes from the end of the
// previous token to the end of this one (separators and white space, then
// the token).
func (p *strictParser) next() (json.Token, []byte, error) {
	start := p.dec.InputOffset()
	tok, err := p.dec.Token()
	if err != nil {
		return nil, nil, err
	}
	return tok, p.body[start:p.dec.InputOffset()], nil
}

// value parses the value at path whose first token is tok.
func (p *strictParser) value(tok json.Token, raw []byte, path string, depth int) (any, error) {
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return p.object(path, depth+1)
		case '[':
			return p.array(path, depth+1)
		}
		return nil, BadRequest(SlugMalformedJSON, "the request body is not valid JSON")
	case string:
		if msg := stringProblem(t, raw); msg != "" {
			return nil, ValidationProblem("the request body has invalid fields", FieldError{Field: path, Message: msg})
		}
	}
	return tok, nil
}

func (p *strictParser) object(path string, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, BadRequest(SlugMalformedJSON, "the request body nests deeper than %d levels", maxJSONDepth)
	}
	obj := make(map[string]any)
	for {
		tok, raw, err := p.next()
		if err != nil {
			return nil, malformed(err)
		}
		if d, ok := tok.(json.Delim); ok && d == '}' {
			return obj, nil
		}
		key, ok := tok.(string)
		if !ok { // Token reports a non-string key as a syntax error
			return nil, BadRequest(SlugMalformedJSON, "the request body is not valid JSON")
		}
		field := join(path, key)
		if msg := stringProblem(key, raw); msg != "" {
			return nil, ValidationProblem("the request body has invalid fields",
				FieldError{Field: field, Message: "the field name " + msg})
		}
		if _, dup := obj[key]; dup {
			return nil, ValidationProblem("the request body has invalid fields",
				FieldError{Field: field, Message: "appears more than once in its object; send each field once"})
		}
		tok, raw, err = p.next()
		if err != nil {
			return nil, malformed(err)
		}
		if obj[key], err = p.value(tok, raw, field, depth); err != nil {
			return nil, err
		}
	}
}

func (p *strictParser) array(path string, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, BadRequest(SlugMalformedJSON, "the request body nests deeper than %d levels", maxJSONDepth)
	}
	arr := []any{}
	for i := 0; ; i++ {
		tok, raw, err := p.next()
		if err != nil {
			return nil, malformed(err)
		}
		if d, ok := tok.(json.Delim); ok && d == ']' {
			return arr, nil
		}
		v, err := p.value(tok, raw, path+"["+strconv.Itoa(i)+"]", depth)
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
	}
}

// stringProblem says what is wrong with a JSON string whose decoded value
// is s and whose raw text ends raw (from its opening quote on, after any
// separators), or returns "". encoding/json decodes both invalid UTF-8 and
// lone surrogate escapes to U+FFFD, so only a decoded string holding U+FFFD
// needs its raw text looked at.
func stringProblem(s string, raw []byte) string {
	if !strings.ContainsRune(s, utf8.RuneError) {
		return ""
	}
	lit := raw[bytes.IndexByte(raw, '"'):]
	if !utf8.Valid(lit) {
		return "must be valid UTF-8"
	}
	const lone = `must not hold a lone UTF-16 surrogate escape (\ud800 to \udfff not in a valid pair)`
	// The decoder checked the syntax: every backslash starts a valid
	// escape and every \u has four hex digits.
	for i := 0; i < len(lit); i++ {
		if lit[i] != '\\' {
			continue
		}
		i++
		if lit[i] != 'u' {
			continue
		}
		r := hex4(lit[i+1 : i+5])
		i += 4
		switch {
		case 0xD800 <= r && r < 0xDC00: // high half: a low half must follow
			if i+6 < len(lit) && lit[i+1] == '\\' && lit[i+2] == 'u' {
				if lo := hex4(lit[i+3 : i+7]); 0xDC00 <= lo && lo < 0xE000 {
					i += 6
					continue
				}
			}
			return lone
		case 0xDC00 <= r && r < 0xE000: // a low half alone
			return lone
		}
	}
	return ""
}

// hex4 decodes four hex digits (checked by the JSON decoder).
func hex4(b []byte) rune {
	r, _ := strconv.ParseUint(string(b), 16, 16)
	return rune(r)
}

var (
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// shaper checks generically decoded JSON values against the Go type they
// are meant for; changed records that it rewrote a value (see check).
type shaper struct {
	changed bool
}

// check walks v along t and reports the first unknown field or type
// mismatch with its full path. Field names match exactly (encoding/json
// alone would accept any letter case). JSON null is accepted anywhere, as
// encoding/json does. An integral number written with a fraction or an
// exponent (1.0, 1e2) for an integer field is replaced, through set, by
// its plain form, which encoding/json can decode.
func (sh *shaper) check(v any, t reflect.Type, path string, set func(any)) *FieldError {
	if v == nil {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawMessageType || t.Kind() == reflect.Interface {
		return nil
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil // the type decodes itself; the real decode checks it
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		if _, ok := v.(string); !ok {
			return &FieldError{Field: path, Message: "must be a string"}
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return &FieldError{Field: path, Message: "must be an object"}
		}
		fields := jsonFields(t)
		for _, name := range sortedKeys(obj) {
			ft, ok := fields[name]
			if !ok {
				return &FieldError{Field: join(path, name), Message: "unknown field"}
			}
			if fe := sh.check(obj[name], ft, join(path, name), func(nv any) { obj[name] = nv }); fe != nil {
				return fe
			}
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return &FieldError{Field: path, Message: "must be an object"}
		}
		for _, k := range sortedKeys(obj) {
			if fe := sh.check(obj[k], t.Elem(), join(path, k), func(nv any) { obj[k] = nv }); fe != nil {
				return fe
			}
		}
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			if _, ok := v.(string); !ok {
				return &FieldError{Field: path, Message: "must be a base64 string"}
			}
			return nil
		}
		arr, ok := v.([]any)
		if !ok {
			return &FieldError{Field: path, Message: "must be an array"}
		}
		if t.Kind() == reflect.Array && len(arr) > t.Len() {
			return &FieldError{Field: path, Message: fmt.Sprintf("must have at most %d elements", t.Len())}
		}
		for i, e := range arr {
			if fe := sh.check(e, t.Elem(), path+"["+strconv.Itoa(i)+"]", func(nv any) { arr[i] = nv }); fe != nil {
				return fe
			}
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return &FieldError{Field: path, Message: "must be a string"}
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return &FieldError{Field: path, Message: "must be a boolean"}
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return sh.integer(v, path, set, func(lit string) error {
			_, err := strconv.ParseInt(lit, 10, t.Bits())
			return err
		}, "must be an integer")
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return sh.integer(v, path, set, func(lit string) error {
			if strings.HasPrefix(lit, "-") {
				return strconv.ErrSyntax
			}
			_, err := strconv.ParseUint(lit, 10, t.Bits())
			return err
		}, "must be a non-negative integer")
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			return &FieldError{Field: path, Message: "must be a number"}
		}
		if _, err := strconv.ParseFloat(n.String(), t.Bits()); err != nil {
			return &FieldError{Field: path, Message: "is out of range"}
		}
	}
	return nil
}

// integer checks a value meant for an integer field: parse reports
// whether the plain decimal literal fits the field (a range error) or
// not at all (any other error, e.g. a negative value for an unsigned
// field); want is the message for a value that is no integer.
func (sh *shaper) integer(v any, path string, set func(any), parse func(string) error, want string) *FieldError {
	n, ok := v.(json.Number)
	if !ok {
		return &FieldError{Field: path, Message: want}
	}
	lit, integral, huge := integerLiteral(n.String())
	switch {
	case !integral:
		return &FieldError{Field: path, Message: want}
	case huge:
		return &FieldError{Field: path, Message: "is out of range"}
	}
	if err := parse(lit); err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return &FieldError{Field: path, Message: "is out of range"}
		}
		return &FieldError{Field: path, Message: want}
	}
	if lit != n.String() {
		set(json.Number(lit))
		sh.changed = true
	}
	return nil
}

// maxIntegerDigits is more than any Go integer type holds; integerLiteral
// reports longer integers as huge instead of spelling them out.
const maxIntegerDigits = 40

// integerLiteral returns the plain decimal form of the JSON number s when
// s denotes an integer (1, -0, 1.0, 1e2, 2.50e1 are all integers, as JSON
// Schema counts them), and whether it does. An integer of more than
// maxIntegerDigits digits is reported as huge, without its literal, so
// that an exponent like 1e999999999 costs nothing.
func integerLiteral(s string) (lit string, integral, huge bool) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, expText := s, ""
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant, expText = s[:i], s[i+1:]
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	if digits == "" {
		return "0", true, false // zero, whatever its exponent
	}
	trimmed := strings.TrimRight(digits, "0")
	// value = trimmed * 10^exp, with trimmed ending in a non-zero digit.
	exp := len(digits) - len(trimmed) - len(frac)
	if expText != "" {
		e, err := strconv.Atoi(expText)
		switch {
		case (err != nil || e < -1<<30) && strings.HasPrefix(expText, "-"):
			return "", false, false // a non-zero value times 10^-huge
		case err != nil || e > 1<<30:
			return "", true, true
		}
		exp += e
	}
	switch {
	case exp < 0:
		return "", false, false
	case len(trimmed)+exp > maxIntegerDigits:
		return "", true, true
	}
	lit = trimmed + strings.Repeat("0", exp)
	if neg {
		lit = "-" + lit
	}
	return lit, true, false
}

// jsonFields maps the JSON names of t's exported fields (following
// encoding/json's tag rules, embedded structs flattened) to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for n, ft := range jsonFields(et) {
					if _, taken := out[n]; !taken {
						out[n] = ft
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// sortedKeys makes error reports deterministic: the first bad field in
// name order is reported.
func sortedKeys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func jsonTypeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}
