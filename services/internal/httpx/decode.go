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
// 415; see isJSONMediaType), be at most
// MaxBodyBytes (else 413), hold exactly one JSON object (else 400) whose
// fields all exist in dst with exactly their JSON names and have the right
// JSON types (else 400 naming the field, e.g. "items[1].quantity"). An empty
// body leaves dst unchanged, as "{}" would. Every error is a *Problem.
func DecodeJSON(r *http.Request, dst any) error {
	body, err := ReadBody(r)
	if err != nil {
		return err
	}
	return DecodeJSONBytes(r.Header.Get("Content-Type"), body, dst)
}

// DecodeJSONBytes is DecodeJSON for a body that was already read.
func DecodeJSONBytes(contentType string, body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if !isJSONMediaType(contentType) {
		p := NewProblem(http.StatusUnsupportedMediaType, SlugUnsupportedMediaType,
			"the request body must be application/json")
		return p
	}

	// First pass: parse into generic values to catch syntax errors and
	// trailing data, and to check the shape against dst with exact paths.
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return malformed(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return BadRequest(SlugMalformedJSON, "the request body must hold a single JSON value; found more data after it")
	}
	if _, ok := generic.(map[string]any); !ok {
		return BadRequest(SlugMalformedJSON, "the request body must be a JSON object")
	}
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("decode json: destination must be a non-nil pointer, got %T", dst)
	}
	if fe := checkShape(generic, rv.Type().Elem(), ""); fe != nil {
		return ValidationProblem("the request body has invalid fields", *fe)
	}

	// Second pass: the real decode. The shape check makes failures here
	// unlikely; they are still reported as client errors.
	dec = json.NewDecoder(bytes.NewReader(body))
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

func malformed(err error) *Problem {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return BadRequest(SlugMalformedJSON, "the request body is not valid JSON (at byte %d): %s", se.Offset, se.Error())
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return BadRequest(SlugMalformedJSON, "the request body is not valid JSON: it ends early")
	}
	return BadRequest(SlugMalformedJSON, "the request body is not valid JSON")
}

// isJSONMediaType reports whether a body declared as contentType is read
// as JSON. Besides JSON types it accepts no declaration, text/plain and
// application/x-www-form-urlencoded, which is what `curl -d` sends unless
// told otherwise: the body is still parsed strictly as JSON, so a real form
// body gets a 400, while a JSON body typed at a shell just works. Types that
// are clearly something else (XML, multipart, HTML, ...) get a 415.
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
	return strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

var (
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkShape walks a generically decoded JSON value along the Go type it is
// meant for and reports the first unknown field or type mismatch with its
// full path. Field names match exactly (encoding/json alone would accept any
// letter case). JSON null is accepted anywhere, as encoding/json does.
func checkShape(v any, t reflect.Type, path string) *FieldError {
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
			if fe := checkShape(obj[name], ft, join(path, name)); fe != nil {
				return fe
			}
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return &FieldError{Field: path, Message: "must be an object"}
		}
		for _, k := range sortedKeys(obj) {
			if fe := checkShape(obj[k], t.Elem(), join(path, k)); fe != nil {
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
			if fe := checkShape(e, t.Elem(), path+"["+strconv.Itoa(i)+"]"); fe != nil {
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
		n, ok := v.(json.Number)
		if !ok {
			return &FieldError{Field: path, Message: "must be an integer"}
		}
		if _, err := strconv.ParseInt(n.String(), 10, t.Bits()); err != nil {
			if isIntegerLiteral(n.String()) {
				return &FieldError{Field: path, Message: "is out of range"}
			}
			return &FieldError{Field: path, Message: "must be an integer"}
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			return &FieldError{Field: path, Message: "must be a non-negative integer"}
		}
		if _, err := strconv.ParseUint(n.String(), 10, t.Bits()); err != nil {
			if isIntegerLiteral(n.String()) {
				return &FieldError{Field: path, Message: "is out of range"}
			}
			return &FieldError{Field: path, Message: "must be a non-negative integer"}
		}
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

func isIntegerLiteral(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
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
