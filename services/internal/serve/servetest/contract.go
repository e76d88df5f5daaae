package servetest

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	vderrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/paths"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"github.com/pb33f/libopenapi/orderedmap"
)

// Contract is the OpenAPI document of services/api/openapi.yaml as
// libopenapi reads it, with the validators libopenapi-validator builds
// from it. The library does the checking: parameters, bodies, status
// codes, content types and response headers, JSON Schema 2020-12 with
// format assertions (uuid, date-time, uri). Contract adds only what the
// library leaves out: a request for a path or method the document does
// not describe is answered with a problem, and a 405 lists in Allow
// exactly the methods the path documents; a response the document
// declares without content has no body; a query parameter declared with
// allowEmptyValue may be sent empty. It is safe for concurrent use.
type Contract struct {
	doc   libopenapi.Document
	model *v3.Document
	// service sees requests as a service's own port does: it checks no
	// token, so the document's bearer requirement is not enforced.
	service validator.Validator
	// gateway enforces the bearer requirement too, as the gateway does.
	gateway validator.Validator
	schemas schema_validation.SchemaValidator
	problem *base.Schema
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

// ParseContract reads an OpenAPI document from path (see NewContract).
func ParseContract(path string) (*Contract, error) {
	spec, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := NewContract(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// NewContract builds the model and validators of an OpenAPI 3.1 document.
// Any error libopenapi reports while building the model (an unresolved
// $ref, a malformed object) is an error here: a contract the library
// only half understands checks nothing reliably.
func NewContract(spec []byte) (*Contract, error) {
	// libopenapi logs what it cannot resolve as well as returning it; the
	// error is enough.
	cfg := datamodel.NewDocumentConfiguration()
	cfg.Logger = slog.New(slog.DiscardHandler)
	doc, err := libopenapi.NewDocumentWithConfiguration(spec, cfg)
	if err != nil {
		return nil, fmt.Errorf("read OpenAPI document: %w", err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		return nil, fmt.Errorf("build OpenAPI model: %w", err)
	}
	if !strings.HasPrefix(m.Model.Version, "3.1.") {
		return nil, fmt.Errorf("OpenAPI version %q, want 3.1.x", m.Model.Version)
	}
	problem, ok := m.Model.Components.Schemas.Get("Problem")
	if !ok {
		return nil, fmt.Errorf("the document has no Problem schema")
	}
	opts := []config.Option{
		config.WithFormatAssertions(),
		// A body on an operation that declares none is refused, as a
		// validating proxy would.
		config.WithRejectUndeclaredRequestBody(),
	}
	service := validator.NewValidatorFromV3Model(&m.Model, append(opts, config.WithoutSecurityValidation())...)
	gateway := validator.NewValidatorFromV3Model(&m.Model, opts...)
	return &Contract{
		doc:     doc,
		model:   &m.Model,
		service: service,
		gateway: gateway,
		schemas: schema_validation.NewSchemaValidatorWithLogger(slog.New(slog.DiscardHandler), config.WithFormatAssertions()),
		problem: problem.Schema(),
	}, nil
}

// Model is the document as libopenapi's high-level model.
func (c *Contract) Model() *v3.Document { return c.model }

// ValidateDocument checks the document itself against the OpenAPI 3.1
// specification's schema and returns every error.
func (c *Contract) ValidateDocument() []string {
	v, errs := validator.NewValidator(c.doc)
	if len(errs) > 0 {
		out := make([]string, len(errs))
		for i, err := range errs {
			out[i] = err.Error()
		}
		return out
	}
	_, verrs := v.ValidateDocument()
	return describe("document", verrs)
}

// Operations lists the documented operations as "METHOD /path/template".
func (c *Contract) Operations() []string {
	var out []string
	for path, item := range c.model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			out = append(out, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

// CheckResponse reports every way a response to method path (which may
// carry a query) differs from the document: an undocumented status, a
// content type the response does not declare, a body that does not match
// its schema, a declared header that is missing or does not match, a body
// where the response declares none. A request for a path or method the
// document does not describe must still be answered with a Problem, and a
// 405 must list in Allow the methods the document gives the path (RFC 9110
// requires Allow on a 405).
func (c *Contract) CheckResponse(method, path string, status int, header map[string][]string, body []byte) []string {
	req, err := http.NewRequest(method, "http://service"+path, nil)
	if err != nil {
		return []string{fmt.Sprintf("%s %s: %v", method, path, err)}
	}
	res := &http.Response{
		StatusCode: status,
		Header:     http.Header(header),
		Body:       io.NopCloser(bytes.NewReader(body)),
		Request:    req,
	}
	where := method + " " + req.URL.Path + " " + strconv.Itoa(status)
	item, missing, tmpl := paths.FindPath(req, c.model, nil)
	if item == nil || len(missing) > 0 {
		return c.checkUndocumented(where, item, res, body)
	}
	where = method + " " + tmpl + " " + strconv.Itoa(status)
	_, verrs := c.service.ValidateHttpResponse(req, res)
	errs := describe(where, verrs)
	// The library checks content only where a response declares some; a
	// body where the document promises none (a 304, say) is a breach too.
	if op := item.GetOperations().GetOrZero(strings.ToLower(method)); op != nil && op.Responses != nil {
		if r := op.Responses.FindResponseByCode(status); r != nil && orderedmap.Len(r.Content) == 0 && len(bytes.TrimSpace(body)) > 0 {
			errs = append(errs, fmt.Sprintf("%s: documented without a body, got %q", where, short(body)))
		}
	}
	return errs
}

// checkUndocumented checks the answer to a request the document does not
// describe: item is the path's item when only the method is missing.
func (c *Contract) checkUndocumented(where string, item *v3.PathItem, res *http.Response, body []byte) []string {
	ct := res.Header.Get("Content-Type")
	if mt, _, _ := mime.ParseMediaType(ct); mt != "application/problem+json" {
		return []string{fmt.Sprintf("%s is not documented and answered %s, not a problem", where, ct)}
	}
	_, verrs := c.schemas.ValidateSchemaBytes(c.problem, body)
	errs := describe(where+" Problem", verrs)
	if res.StatusCode != http.StatusMethodNotAllowed {
		return errs
	}
	if item == nil {
		return append(errs, where+": the document has no such path")
	}
	var documented []string
	for m := range item.GetOperations().FromOldest() {
		documented = append(documented, strings.ToUpper(m))
	}
	var got []string
	for _, m := range strings.Split(res.Header.Get("Allow"), ",") {
		if m = strings.TrimSpace(m); m != "" {
			got = append(got, m)
		}
	}
	slices.Sort(got)
	slices.Sort(documented)
	if !slices.Equal(got, documented) {
		errs = append(errs, fmt.Sprintf("%s: Allow %q, want the documented methods %v", where, res.Header.Get("Allow"), documented))
	}
	return errs
}

// CheckRequest reports every reason a validating proxy that enforces the
// document in front of a service's own port would refuse a request: an
// undocumented operation, a path, query or header parameter that does not
// match its schema, a missing required body, a body where none is
// declared, a body of an undeclared content type, a JSON body that does
// not match its schema. target is the path with its query. The bearer
// token is not required: a service's port checks none (see
// CheckGatewayRequest). Like such a proxy it reads JSON with an ordinary
// decoder, so repeated keys and invalid UTF-8, which JSON Schema cannot
// express, pass here.
func (c *Contract) CheckRequest(method, target string, header map[string][]string, body []byte) []string {
	return c.checkRequest(c.service, method, target, header, body)
}

// CheckGatewayRequest is CheckRequest as the gateway sees a request: an
// operation the document secures with bearerAuth needs an
// "Authorization: Bearer ..." header as well. Whether the token is good
// is the gateway's business, not the document's.
func (c *Contract) CheckGatewayRequest(method, target string, header map[string][]string, body []byte) []string {
	return c.checkRequest(c.gateway, method, target, header, body)
}

func (c *Contract) checkRequest(v validator.Validator, method, target string, header map[string][]string, body []byte) []string {
	var rd io.Reader = http.NoBody
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://service"+target, rd)
	if err != nil {
		return []string{fmt.Sprintf("%s %s: %v", method, target, err)}
	}
	c.dropAllowedEmpty(req)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	_, verrs := v.ValidateHttpRequestSync(req)
	return describe(method+" "+req.URL.Path, verrs)
}

// dropAllowedEmpty removes from req's query every empty parameter the
// operation declares with allowEmptyValue ("limit=" is the same as no
// limit): OpenAPI lets such a parameter be sent empty whatever its
// schema, a rule the validator library does not implement.
func (c *Contract) dropAllowedEmpty(req *http.Request) {
	item, errs, _ := paths.FindPath(req, c.model, nil)
	if item == nil || len(errs) > 0 {
		return
	}
	op := item.GetOperations().GetOrZero(strings.ToLower(req.Method))
	if op == nil {
		return
	}
	q := req.URL.Query()
	changed := false
	for _, p := range append(slices.Clone(item.Parameters), op.Parameters...) {
		if p.In == "query" && p.AllowEmptyValue && q.Has(p.Name) && q.Get(p.Name) == "" {
			q.Del(p.Name)
			changed = true
		}
	}
	if changed {
		req.URL.RawQuery = q.Encode()
	}
}

// describe writes each validation error as one line: where, the
// library's message and reason, and each schema failure with the place
// in the instance it concerns.
func describe(where string, errs []*vderrors.ValidationError) []string {
	var out []string
	for _, e := range errs {
		msg := where + ": " + e.Message
		if e.Reason != "" && e.Reason != e.Message {
			msg += ": " + e.Reason
		}
		for _, f := range e.SchemaValidationErrors {
			loc := f.FieldPath
			if loc == "" {
				loc = "/" + strings.Join(f.InstancePath, "/")
			}
			msg += fmt.Sprintf("; %s %s", loc, f.Reason)
		}
		out = append(out, msg)
	}
	return out
}

func short(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}
