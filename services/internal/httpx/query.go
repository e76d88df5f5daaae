package httpx

import (
	"context"
	"net/http"
	"net/url"

	"github.com/orderflow/orderflow/projections"
)

// ListHandler serves one page of a read model's list as a Page. filter
// reads and checks the list's own query parameters (nil: the list has
// none); its field errors and a bad limit are reported together, so a
// client hears of every bad parameter at once. The cursor (after) is left
// to list, which can only check it once the others are fine.
func ListHandler[DB, F, T any](db DB, filter func(url.Values) (F, error),
	list func(ctx context.Context, db DB, f F, limit int, after string) ([]T, string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		params := r.URL.Query()
		limit, limitErr := projections.ParseLimit(params.Get("limit"))
		var (
			f         F
			filterErr error
		)
		if filter != nil {
			f, filterErr = filter(params)
		}
		if err := JoinFieldErrors(limitErr, filterErr); err != nil {
			WriteError(w, r, err)
			return
		}
		items, next, err := list(r.Context(), db, f, limit, params.Get("after"))
		if err != nil {
			WriteError(w, r, err)
			return
		}
		WriteJSON(w, r, http.StatusOK, NewPage(items, next))
	}
}
