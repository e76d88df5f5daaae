package servetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"mime"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"gopkg.in/yaml.v3"
)

// Contract is the OpenAPI document of services/api/openapi.yaml, able to
// check real responses against it. It understands the subset of OpenAPI
// 3.1 / JSON Schema the document uses: $ref, type (also as a list), enum,
// const, properties, required, additionalProperties, items, min/max
// (Length, Items, imum), pattern, format (uuid, date-time, uri), allOf and
// anyOf.
type Contract struct {
	doc map[string]any
}

var (
	contractOnce sync.Once
	contract     *Contract
	contractErr  error
)

// LoadContract reads the project's openapi.yaml (once per test binary).
func LoadContract() (*Contract, error) {
	contractOnce.Do(func() {
		_, file, _, ok := runtime.Caller(0)
		if !ok {
			contractErr = fmt.Errorf("locate openapi.yaml: no caller information")
			return
		}
		// servetest -> serve -> internal -> services
		path := filepath.Join(filepath.Dir(file), "..", "..", "..", "api", "openapi.yaml")
		contract, contractErr = ParseContract(path)
	})
	return contract, contractErr
}

// ParseContract reads an OpenAPI document from path.
func ParseContract(path string) (*Contract, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return &Contract{doc: doc}, nil
}

// Operations lists the documented operations as "METHOD /path/template".
func (c *Contract) Operations() []string {
	var out []string
	for path, item := range asMap(c.doc["paths"]) {
		for method := range asMap(item) {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options":
				out = append(out, strings.ToUpper(method)+" "+path)
			}
		}
	}
	sort.Strings(out)
	return out
}

// BrokenRefs returns every $ref in the document that does not resolve.
func (c *Contract) BrokenRefs() []string {
	var broken []string
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			if ref, ok := t["$ref"].(string); ok {
				if _, err := c.resolve(ref); err != nil {
					broken = append(broken, ref)
				}
			}
			for _, e := range t {
				walk(e)
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	walk(c.doc)
	return broken
}

// Schema returns the named component schema.
func (c *Contract) Schema(name string) (any, bool) {
	s, ok := asMap(asMap(c.doc["components"])["schemas"])[name]
	return s, ok
}

// CheckResponse reports every way a response to method path differs from
// the document: an undocumented status, a content type the operation does
// not declare, a body that does not match the schema, a required header
// missing. A request to an operation the document does not describe must
// still be answered with a problem.
func (c *Contract) CheckResponse(method, path string, status int, header map[string][]string, body []byte) []string {
	get := func(name string) string {
		for k, v := range header {
			if strings.EqualFold(k, name) && len(v) > 0 {
				return v[0]
			}
		}
		return ""
	}
	ct := get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)

	op, tmpl := c.operation(method, path)
	if op == nil {
		if mt != "application/problem+json" {
			return []string{fmt.Sprintf("%s %s is not documented and answered %d %s, not a problem", method, path, status, ct)}
		}
		errs := c.checkBody(c.ref("#/components/schemas/Problem"), body, "Problem")
		if status == 405 {
			errs = append(errs, c.checkAllow(method, path, get("Allow"))...)
		}
		return errs
	}
	where := method + " " + tmpl + " " + strconv.Itoa(status)
	resp, ok := asMap(op["responses"])[strconv.Itoa(status)]
	if !ok {
		resp, ok = asMap(op["responses"])["default"]
	}
	if !ok {
		return []string{fmt.Sprintf("%s: status not documented", where)}
	}
	r := c.deref(resp)
	var errs []string
	for name, h := range asMap(r["headers"]) {
		if req, _ := c.deref(h)["required"].(bool); req && get(name) == "" {
			errs = append(errs, fmt.Sprintf("%s: required header %s missing", where, name))
		}
	}
	content := asMap(r["content"])
	if len(content) == 0 {
		if len(bytes.TrimSpace(body)) > 0 {
			errs = append(errs, fmt.Sprintf("%s: documented without a body, got %q", where, body))
		}
		return errs
	}
	media, ok := content[mt]
	if !ok {
		return append(errs, fmt.Sprintf("%s: content type %q not documented (have %v)", where, ct, keys(content)))
	}
	schema := asMap(media)["schema"]
	if schema == nil || !strings.Contains(mt, "json") {
		return errs
	}
	return append(errs, c.checkBody(schema, body, where)...)
}

func (c *Contract) checkBody(schema any, body []byte, where string) []string {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []string{fmt.Sprintf("%s: body is not JSON: %v", where, err)}
	}
	var errs []string
	c.validate(schema, v, "$", func(path, msg string) {
		errs = append(errs, fmt.Sprintf("%s: %s %s", where, path, msg))
	})
	return errs
}

// checkAllow checks a 405 answer to method on path: the path must be
// documented without that method, and Allow must list exactly the
// documented methods (RFC 9110 requires Allow on a 405).
func (c *Contract) checkAllow(method, path, allow string) []string {
	where := method + " " + path + " 405"
	var documented []string
	for _, item := range c.pathItems(path) {
		for m := range asMap(item) {
			switch m {
			case "get", "put", "post", "delete", "patch", "head", "options":
				documented = append(documented, strings.ToUpper(m))
			}
		}
	}
	if len(documented) == 0 {
		return []string{where + ": the document has no such path"}
	}
	var got []string
	for _, m := range strings.Split(allow, ",") {
		if m = strings.TrimSpace(m); m != "" {
			got = append(got, m)
		}
	}
	sort.Strings(got)
	sort.Strings(documented)
	if !slices.Equal(got, documented) {
		return []string{fmt.Sprintf("%s: Allow %q, want the documented methods %v", where, allow, documented)}
	}
	return nil
}

// operation finds the operation for method and a concrete path by
// matching the document's path templates segment by segment.
func (c *Contract) operation(method, path string) (map[string]any, string) {
	for tmpl, item := range c.pathItems(path) {
		if op, ok := asMap(item)[strings.ToLower(method)]; ok {
			return asMap(op), tmpl
		}
	}
	return nil, ""
}

// pathItems returns the path items whose templates match a concrete path,
// by template.
func (c *Contract) pathItems(path string) map[string]any {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	segs := strings.Split(path, "/")
	out := make(map[string]any)
	for tmpl, item := range asMap(c.doc["paths"]) {
		tsegs := strings.Split(tmpl, "/")
		if len(tsegs) != len(segs) {
			continue
		}
		match := true
		for i := range tsegs {
			isParam := strings.HasPrefix(tsegs[i], "{") && strings.HasSuffix(tsegs[i], "}")
			if !(isParam && segs[i] != "") && tsegs[i] != segs[i] {
				match = false
				break
			}
		}
		if match {
			out[tmpl] = item
		}
	}
	return out
}

// CheckRequest reports every reason a validating proxy that enforces the
// document would refuse a request: an undocumented operation, a required
// security scheme without credentials, a path, query or header parameter
// that does not match its schema, a missing required body, a body of an
// undeclared content type, a JSON body that does not match its schema.
// target is the path with its query. Like such a proxy it sees JSON
// through an ordinary decoder, so repeated keys and invalid UTF-8, which
// JSON Schema cannot express, pass here.
func (c *Contract) CheckRequest(method, target string, header map[string][]string, body []byte) []string {
	get := func(name string) (string, bool) {
		for k, v := range header {
			if strings.EqualFold(k, name) && len(v) > 0 {
				return v[0], true
			}
		}
		return "", false
	}
	u, err := url.Parse(target)
	if err != nil {
		return []string{fmt.Sprintf("%s %s: %v", method, target, err)}
	}
	op, tmpl := c.operation(method, u.Path)
	if op == nil {
		return []string{fmt.Sprintf("%s %s is not documented", method, u.Path)}
	}
	where := method + " " + tmpl
	var errs []string
	fail := func(path, msg string) { errs = append(errs, fmt.Sprintf("%s: %s %s", where, path, msg)) }

	security, ok := op["security"]
	if !ok {
		security = c.doc["security"]
	}
	if _, hasAuth := get("Authorization"); !hasAuth {
		for _, req := range asSlice(security) {
			if len(asMap(req)) > 0 {
				fail("security", fmt.Sprintf("requires credentials %v", req))
				break
			}
		}
	}

	// Operation parameters override the path item's of the same name and
	// location.
	params := map[string]map[string]any{}
	for _, p := range append(slices.Clone(asSlice(asMap(asMap(c.doc["paths"])[tmpl])["parameters"])), asSlice(op["parameters"])...) {
		pm := c.deref(p)
		params[fmt.Sprint(pm["in"], ":", pm["name"])] = pm
	}
	segs, tsegs := strings.Split(u.EscapedPath(), "/"), strings.Split(tmpl, "/")
	for _, pm := range params {
		name := fmt.Sprint(pm["name"])
		var (
			value   string
			present bool
		)
		switch pm["in"] {
		case "path":
			for i, ts := range tsegs {
				if ts == "{"+name+"}" && i < len(segs) {
					value, err = url.PathUnescape(segs[i])
					present = err == nil
				}
			}
		case "query":
			present = u.Query().Has(name)
			value = u.Query().Get(name)
		case "header":
			value, present = get(name)
		}
		if !present {
			if req, _ := pm["required"].(bool); req {
				fail(name, "is required")
			}
			continue
		}
		c.validate(pm["schema"], c.paramValue(pm["schema"], value), fmt.Sprint(pm["in"], " ", name), fail)
	}

	rb := c.deref(op["requestBody"])
	if len(bytes.TrimSpace(body)) == 0 {
		if req, _ := rb["required"].(bool); req {
			fail("body", "is required")
		}
		return errs
	}
	if len(rb) == 0 {
		fail("body", "is not expected")
		return errs
	}
	ct, _ := get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		fail("body", fmt.Sprintf("has no usable Content-Type (%q)", ct))
		return errs
	}
	media, ok := asMap(rb["content"])[mt]
	if !ok {
		fail("body", fmt.Sprintf("content type %q not documented (have %v)", mt, keys(asMap(rb["content"]))))
		return errs
	}
	if schema := asMap(media)["schema"]; schema != nil && strings.Contains(mt, "json") {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			fail("body", fmt.Sprintf("is not JSON: %v", err))
			return errs
		}
		c.validate(schema, v, "$", fail)
	}
	return errs
}

// paramValue is the value a parameter's text stands for: a number where
// the schema wants one and the text is one, else the text.
func (c *Contract) paramValue(schema any, text string) any {
	switch c.deref(schema)["type"] {
	case "integer", "number":
		dec := json.NewDecoder(strings.NewReader(text))
		dec.UseNumber()
		var n json.Number
		if err := dec.Decode(&n); err == nil && !dec.More() {
			return n
		}
	}
	return text
}

func (c *Contract) resolve(ref string) (any, error) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, fmt.Errorf("only local refs are supported: %s", ref)
	}
	var cur any = c.doc
	for _, part := range strings.Split(ref[2:], "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("ref %s: %s is not an object", ref, part)
		}
		if cur, ok = m[part]; !ok {
			return nil, fmt.Errorf("ref %s: no %s", ref, part)
		}
	}
	return cur, nil
}

func (c *Contract) ref(ref string) any {
	v, err := c.resolve(ref)
	if err != nil {
		panic(err)
	}
	return v
}

// deref follows $ref chains.
func (c *Contract) deref(v any) map[string]any {
	m := asMap(v)
	for range 32 {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		m = asMap(c.ref(ref))
	}
	return m
}

var formats = map[string]func(string) bool{
	"uuid": func(s string) bool { _, err := uuid.Parse(s); return err == nil && len(s) == 36 },
	"date-time": func(s string) bool {
		_, err := time.Parse(time.RFC3339Nano, s)
		return err == nil
	},
	"uri": func(s string) bool { return strings.Contains(s, ":") },
}

func (c *Contract) validate(schema any, v any, path string, fail func(path, msg string)) {
	s := c.deref(schema)
	for _, sub := range asSlice(s["allOf"]) {
		c.validate(sub, v, path, fail)
	}
	if anyOf := asSlice(s["anyOf"]); len(anyOf) > 0 {
		ok := false
		for _, sub := range anyOf {
			var errs int
			c.validate(sub, v, path, func(string, string) { errs++ })
			if errs == 0 {
				ok = true
				break
			}
		}
		if !ok {
			fail(path, fmt.Sprintf("matches none of anyOf: %v", short(v)))
		}
	}
	if t, ok := s["type"]; ok {
		types := []string{}
		switch tt := t.(type) {
		case string:
			types = append(types, tt)
		case []any:
			for _, e := range tt {
				types = append(types, fmt.Sprint(e))
			}
		}
		if !slices.ContainsFunc(types, func(t string) bool { return hasType(v, t) }) {
			fail(path, fmt.Sprintf("is %s, want type %v", short(v), types))
			return
		}
	}
	if enum := asSlice(s["enum"]); len(enum) > 0 {
		if !slices.ContainsFunc(enum, func(e any) bool { return equal(e, v) }) {
			fail(path, fmt.Sprintf("is %s, not one of %v", short(v), enum))
		}
	}
	if cst, ok := s["const"]; ok && !equal(cst, v) {
		fail(path, fmt.Sprintf("is %s, want %v", short(v), cst))
	}
	switch tv := v.(type) {
	case map[string]any:
		props := asMap(s["properties"])
		for _, r := range asSlice(s["required"]) {
			if _, ok := tv[fmt.Sprint(r)]; !ok {
				fail(path, fmt.Sprintf("lacks required property %q", r))
			}
		}
		for k, e := range tv {
			if ps, ok := props[k]; ok {
				c.validate(ps, e, path+"."+k, fail)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					fail(path, fmt.Sprintf("has undocumented property %q", k))
				}
			case map[string]any:
				c.validate(ap, e, path+"."+k, fail)
			}
		}
	case []any:
		if n, ok := number(s["minItems"]); ok && float64(len(tv)) < n {
			fail(path, fmt.Sprintf("has %d items, want >= %v", len(tv), n))
		}
		if n, ok := number(s["maxItems"]); ok && float64(len(tv)) > n {
			fail(path, fmt.Sprintf("has %d items, want <= %v", len(tv), n))
		}
		if items, ok := s["items"]; ok {
			for i, e := range tv {
				c.validate(items, e, fmt.Sprintf("%s[%d]", path, i), fail)
			}
		}
	case string:
		n := float64(len([]rune(tv)))
		if m, ok := number(s["minLength"]); ok && n < m {
			fail(path, fmt.Sprintf("is shorter than %v", m))
		}
		if m, ok := number(s["maxLength"]); ok && n > m {
			fail(path, fmt.Sprintf("is longer than %v", m))
		}
		if p, ok := s["pattern"].(string); ok {
			re, err := regexp.Compile(p)
			if err != nil {
				fail(path, fmt.Sprintf("schema pattern %q does not compile: %v", p, err))
			} else if !re.MatchString(tv) {
				fail(path, fmt.Sprintf("%q does not match %s", tv, p))
			}
		}
		if f, ok := s["format"].(string); ok {
			if check, known := formats[f]; known && !check(tv) {
				fail(path, fmt.Sprintf("%q is not a %s", tv, f))
			}
		}
	case json.Number:
		x, _ := tv.Float64()
		if m, ok := number(s["minimum"]); ok && x < m {
			fail(path, fmt.Sprintf("is %v, want >= %v", tv, m))
		}
		if m, ok := number(s["maximum"]); ok && x > m {
			fail(path, fmt.Sprintf("is %v, want <= %v", tv, m))
		}
	}
}

func hasType(v any, t string) bool {
	switch t {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		// JSON Schema: any number with a zero fractional part, 1.0 and
		// 1e2 included.
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		r, ok := new(big.Rat).SetString(n.String())
		return ok && r.IsInt()
	}
	return false
}

func equal(schemaValue, v any) bool {
	switch tv := v.(type) {
	case json.Number:
		f, _ := tv.Float64()
		sv, ok := number(schemaValue)
		return ok && sv == f
	case string:
		sv, ok := schemaValue.(string)
		return ok && sv == tv
	case bool:
		sv, ok := schemaValue.(bool)
		return ok && sv == tv
	case nil:
		return schemaValue == nil
	}
	return false
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
