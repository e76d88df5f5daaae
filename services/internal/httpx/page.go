package httpx

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/orderflow/orderflow/domain"
)

// MaxPageLimit is the largest page a list answers (API.md: limit 1-500).
const MaxPageLimit = 500

// PageParams reads the list parameters of r: limit, and the opaque after
// cursor, which the list's query checks. A limit that is present but not an
// integer in 1..MaxPageLimit is recorded in v (field "limit") so that the
// caller can report it together with its own filters' errors; an absent
// limit is 0, which the queries read as their default.
func PageParams(r *http.Request, v *domain.ValidationError) (limit int, after string) {
	q := r.URL.Query()
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > MaxPageLimit {
			v.Add("limit", fmt.Sprintf("must be an integer between 1 and %d", MaxPageLimit))
		} else {
			limit = n
		}
	}
	return limit, q.Get("after")
}

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
