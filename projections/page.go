package projections

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/orderflow/orderflow/domain"
)

// Page sizes of the list queries.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// PageLimit checks a list's limit: 0 means DefaultLimit, anything else must
// be within 1..MaxLimit (a *domain.ValidationError on field "limit").
func PageLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return DefaultLimit, nil
	case limit < 1 || limit > MaxLimit:
		v := &domain.ValidationError{}
		v.Add("limit", fmt.Sprintf("must be between 1 and %d", MaxLimit))
		return 0, v
	}
	return limit, nil
}

// ParseLimit reads a list's limit query parameter: empty means
// DefaultLimit; anything but an integer within 1..MaxLimit is a
// *domain.ValidationError on field "limit".
func ParseLimit(raw string) (int, error) {
	if raw == "" {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > MaxLimit {
		v := &domain.ValidationError{}
		v.Add("limit", fmt.Sprintf("must be an integer between 1 and %d", MaxLimit))
		return 0, v
	}
	return n, nil
}

// EncodeCursor returns the opaque cursor of a list's last key.
func EncodeCursor(key any) string {
	b, err := json.Marshal(key)
	if err != nil {
		// Keys are plain structs of strings and times.
		panic(fmt.Sprintf("encode cursor: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reads a cursor made by EncodeCursor into key; anything else
// is a *domain.ValidationError on field "after". valid checks the decoded
// key (nil: any key).
func DecodeCursor(cursor string, key any, valid func() bool) error {
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err == nil {
		err = json.Unmarshal(b, key)
	}
	if err != nil || (valid != nil && !valid()) {
		v := &domain.ValidationError{}
		v.Add("after", "is not a cursor returned by this list")
		return v
	}
	return nil
}
