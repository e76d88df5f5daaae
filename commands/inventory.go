package commands

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
)

// rollbackTimeout bounds the release of a failed reservation, which runs
// even when the command's context is done.
const rollbackTimeout = 10 * time.Second

// Inventory handles the commands of the inventory context. Each sku is its
// own stream; the commands for an order's skus visit them in sorted order.
type Inventory struct {
	x *executor
}

// NewInventory returns the stock command handlers writing to store. It
// panics when cfg is invalid; check cfg.Validate first to report that as an
// error.
func NewInventory(store EventStore, cfg Config) *Inventory {
	return &Inventory{x: newExecutor(store, cfg)}
}

// Restock adds quantity (1..1,000,000) to the stock of sku, creating it on
// the first restock.
func (h *Inventory) Restock(ctx context.Context, m Meta, sku string, quantity int) (Result, error) {
	m, v := prepare(m)
	checkSKU(v, "sku", sku)
	return run(ctx, h.x, m, v, inventory.Stream(sku), func(s *inventory.Stock) ([]any, error) {
		return s.Restock(sku, quantity)
	})
}

// Reserve holds stock for an order, all or nothing: the skus are reserved
// one stream at a time in sorted order, and when one cannot be (not enough
// available, or never restocked) the ones this command reserved are
// released again and the error, wrapping domain.ErrInsufficientStock, names
// the sku. A sku the order already holds a reservation on is left as it is.
// See docs/adr/0012-all-or-nothing-reservation.md.
//
// Repeating the command id returns the first outcome: the same results
// (Duplicate set) after a success, the same error after a rollback.
func (h *Inventory) Reserve(ctx context.Context, m Meta, orderID string, lines []inventory.Line) ([]Result, error) {
	m, v := prepare(m)
	checkID(v, "order_id", orderID)
	switch {
	case len(lines) == 0:
		v.Add("lines", "must hold at least 1 line")
	case len(lines) > maxLines:
		v.Add("lines", fmt.Sprintf("must hold at most %d lines", maxLines))
	}
	first := make(map[string]int, len(lines))
	for i, l := range lines {
		p := fmt.Sprintf("lines[%d]", i)
		if j, dup := first[l.SKU]; dup {
			v.Add(p+".sku", fmt.Sprintf("repeats the sku of lines[%d]", j))
		} else if checkSKU(v, p+".sku", l.SKU) {
			first[l.SKU] = i
		}
		if l.Quantity < 1 || l.Quantity > inventory.MaxReserve {
			v.Add(p+".quantity", fmt.Sprintf("must be between 1 and %d", inventory.MaxReserve))
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}

	sorted := slices.SortedFunc(slices.Values(lines), func(a, b inventory.Line) int { return cmp.Compare(a.SKU, b.SKU) })
	rollbackID := deriveID(m.CommandID, "rollback")
	var held []string // skus on which this command holds (or held) a reservation
	results := make([]Result, 0, len(sorted))
	for _, l := range sorted {
		out, err := execute(ctx, h.x, m, inventory.Stream(l.SKU), func(s *inventory.Stock) ([]any, error) {
			return s.Reserve(orderID, l.Quantity)
		}, rollbackID)
		if err == nil && (out.appended || out.Duplicate) {
			held = append(held, l.SKU)
		}
		if err == nil && out.seen[rollbackID] {
			// An earlier run of this command failed and released this
			// reservation; finish that rollback and fail the same way.
			err = fmt.Errorf("command %s failed before and was rolled back: %w", m.CommandID, domain.ErrInsufficientStock)
		}
		if err != nil {
			err = fmt.Errorf("reserve %s for order %s: %w", l.SKU, orderID, err)
			if rbErr := h.rollback(ctx, m, rollbackID, orderID, held); rbErr != nil {
				err = errors.Join(err, rbErr)
			}
			return nil, err
		}
		results = append(results, out.Result)
	}
	return results, nil
}

// maxLines bounds the skus of one reservation, as an order bounds its items.
const maxLines = 50

// rollback releases the reservations of orderID on skus, newest first, as
// the command rollbackID. It runs to the end even if ctx is done, since
// leaving a partial reservation behind would hold stock for nothing.
func (h *Inventory) rollback(ctx context.Context, m Meta, rollbackID, orderID string, skus []string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	m.CommandID = rollbackID
	var errs []error
	for _, sku := range slices.Backward(skus) {
		_, err := execute(ctx, h.x, m, inventory.Stream(sku), func(s *inventory.Stock) ([]any, error) {
			return s.Release(orderID)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("roll back reservation of %s: %w", sku, err))
		}
	}
	return errors.Join(errs...)
}

// Release gives an order's reservations on skus back to the available
// stock. A sku without a reservation for the order is left unchanged, so
// compensation can be repeated.
func (h *Inventory) Release(ctx context.Context, m Meta, orderID string, skus []string) ([]Result, error) {
	return h.each(ctx, m, orderID, skus, (*inventory.Stock).Release)
}

// Consume records that an order's reservations on skus were shipped: on
// hand and reserved both drop. A sku without a reservation for the order is
// left unchanged.
func (h *Inventory) Consume(ctx context.Context, m Meta, orderID string, skus []string) ([]Result, error) {
	return h.each(ctx, m, orderID, skus, (*inventory.Stock).Consume)
}

// each applies one decision about orderID to every sku, in sorted order.
// Each step is idempotent, so after an error the caller repeats the whole
// command.
func (h *Inventory) each(ctx context.Context, m Meta, orderID string, skus []string,
	decide func(*inventory.Stock, string) ([]any, error)) ([]Result, error) {
	m, v := prepare(m)
	checkID(v, "order_id", orderID)
	switch {
	case len(skus) == 0:
		v.Add("skus", "must hold at least 1 sku")
	case len(skus) > maxLines:
		v.Add("skus", fmt.Sprintf("must hold at most %d skus", maxLines))
	}
	first := make(map[string]int, len(skus))
	for i, sku := range skus {
		p := fmt.Sprintf("skus[%d]", i)
		if j, dup := first[sku]; dup {
			v.Add(p, fmt.Sprintf("repeats skus[%d]", j))
		} else if checkSKU(v, p, sku) {
			first[sku] = i
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	results := make([]Result, 0, len(skus))
	for _, sku := range slices.Sorted(slices.Values(skus)) {
		out, err := execute(ctx, h.x, m, inventory.Stream(sku), func(s *inventory.Stock) ([]any, error) {
			return decide(s, orderID)
		})
		if err != nil {
			return nil, err
		}
		results = append(results, out.Result)
	}
	return results, nil
}

// checkSKU adds a field error to v unless sku is valid, and reports
// whether it is.
func checkSKU(v *domain.ValidationError, field, sku string) bool {
	switch {
	case sku == "":
		v.Add(field, "is required")
	case !domain.ValidExternalID(sku):
		v.Add(field, domain.ExternalIDRule)
	default:
		return true
	}
	return false
}

// Stats returns the counts of the handlers' work (conflicts, retries,
// batches), shared with the other handlers given the same Config.Stats.
func (h *Inventory) Stats() StatsSnapshot { return h.x.stats.Snapshot() }
