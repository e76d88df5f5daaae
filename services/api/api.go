// Package api holds the published HTTP contract of orderflow, the OpenAPI
// 3.1 document services/api/openapi.yaml, embedded in the binary so that
// the gateway serves the very document its tests validate against, and
// nothing can drift between the file in the repository and the one served.
package api

import (
	_ "embed"
	"slices"
)

// ContentType is the media type the document is served as (RFC 9512).
const ContentType = "application/yaml"

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the OpenAPI document (YAML). Each call returns a fresh
// copy, so that no caller can change what the others see.
func OpenAPI() []byte { return slices.Clone(openAPI) }
