package httpx

import (
	"errors"

	"github.com/orderflow/orderflow/domain"
)

// Page is the body of every list answer: a page of items and the cursor of
// the next page, empty on the last one.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next"`
}

// NewPage returns the page of items, with an empty (not null) list when
// there are none.
func NewPage[T any](items []T, next string) Page[T] {
	if items == nil {
		items = []T{}
	}
	return Page[T]{Items: items, Next: next}
}

// JoinFieldErrors merges the field errors of errs (nil entries skipped)
// into one *domain.ValidationError, so that a request with several bad
// parameters hears about all of them at once. It returns nil when errs hold
// no error, and the first error that is not a validation error as is.
func JoinFieldErrors(errs ...error) error {
	var all domain.ValidationError
	for _, err := range errs {
		if err == nil {
			continue
		}
		var ve *domain.ValidationError
		if !errors.As(err, &ve) {
			return err
		}
		all.Fields = append(all.Fields, ve.Fields...)
	}
	return all.Err()
}
