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

// Restock names the arguments of Inventory.Restock for hooks.
type Restock struct {
	SKU      string
	Quantity int
}

// Restock adds quantity (1..1,000,000) to the stock of sku, creating it on
// the first restock.
func (h *Inventory) Restock(ctx context.Context, m Meta, sku string, quantity int) (Result, error) {
	return h.x.single(ctx, KindRestock, m, Restock{SKU: sku, Quantity: quantity}, func(ctx context.Context, m Meta) (Result, error) {
		m, v := prepare(m)
		checkSKU(v, "sku", sku)
		return run(ctx, h.x, m, v, inventory.Stream(sku), func(s *inventory.Stock) ([]any, error) {
			return s.Restock(sku, quantity)
		})
	})
}

// Reserve holds stock for an order, all or nothing: the skus are reserved
// one stream at a time in sorted order, and when one cannot be (not enough
// available, or never restocked) the ones this command reserved are
// released again and the error, wrapping domain.ErrInsufficientStock, names
// the sku. A sku the order already holds a reservation on is left as it is.
// Any other failure rolls back too. See
// docs/adr/0012-all-or-nothing-reservation.md.
//
// Repeating the command id returns the first outcome: the same results
// (Duplicate set) after a success, the same error after a rollback.
func (h *Inventory) Reserve(ctx context.Context, m Meta, orderID string, lines []inventory.Line) ([]Result, error) {
	c := ReserveStock{OrderID: orderID, Lines: lines}
	return h.x.multi(ctx, KindReserveStock, m, c, func(ctx context.Context, m Meta) ([]Result, error) {
		m, sorted, err := h.prepareReserve(m, c)
		if err != nil {
			return nil, err
		}
		r := h.reserve(ctx, m, orderID, sorted, true)
		return r.results, r.err
	})
}

// ReserveStock runs the reserve_stock command. Its answer, on the order's
// reservation stream, is StockReservationAccepted once every line is held,
// or StockReservationRejected once whatever this command had reserved was
// released again: insufficient_stock (a sku short or never restocked) or
// reservation_settled (the order's reservation was released or consumed
// before, as when a late attempt arrives after the saga compensated).
//
// The first answer to an order's reservation stands: a later attempt (a
// new command id) of a reservation that was answered gets that answer
// again, after giving back anything it holds itself when the answer is
// not an acceptance. See docs/adr/0015-answered-commands.md.
//
// Unlike Reserve it does not roll back when the store fails or ctx ends:
// the command is repeated (redelivered) until it is answered, and the
// repetition completes what the first run left half done.
func (h *Inventory) ReserveStock(ctx context.Context, m Meta, c ReserveStock) (Outcome, error) {
	return h.x.through(ctx, KindReserveStock, m, c, func(ctx context.Context, m Meta) (Outcome, error) {
		m, sorted, err := h.prepareReserve(m, c)
		if err != nil {
			return Outcome{}, err
		}
		stream := inventory.ReservationStream(c.OrderID)
		repeat := func(r *inventory.Reservation) ([]any, error) { return r.Answer(c.OrderID) }

		// Answered before, by this command or another attempt?
		out, err := execute(ctx, h.x, m, stream, func(r *inventory.Reservation) ([]any, error) {
			switch r.Status {
			case "":
				return nil, nil
			case inventory.ReservationAccepted:
				return r.Answer(c.OrderID)
			}
			return nil, errStands
		})
		switch {
		case errors.Is(err, errStands):
			// Rejected or settled: an earlier run of this command may
			// have reserved before it was cut short.
			if err := h.releaseOwn(ctx, m, c.OrderID, sorted); err != nil {
				return Outcome{}, err
			}
			out, err := execute(ctx, h.x, m, stream, repeat)
			return outcomeOf(out), err
		case err != nil:
			return Outcome{}, err
		case out.Duplicate || out.appended:
			return outcomeOf(out), nil
		}

		res := h.reserve(ctx, m, c.OrderID, sorted, false)
		var (
			decide func(*inventory.Reservation) ([]any, error)
			short  *shortage
		)
		switch {
		case res.rollbackErr != nil:
			// Stock may still be held: no answer until a redelivery
			// has given it back. Only the rollback's failure goes in the
			// chain: with the refusal in it, a consumer would take the
			// command as refused for good and never run it again.
			return Outcome{}, fmt.Errorf("order %s refused, and rolling back what it held failed (running the command again releases it): %w", c.OrderID, res.rollbackErr)
		case res.err == nil:
			decide = func(r *inventory.Reservation) ([]any, error) { return r.Accept(c.OrderID, c.Lines) }
		case errors.As(res.err, &short):
			rej := inventory.StockReservationRejected{OrderID: c.OrderID, Reason: inventory.ReasonInsufficientStock,
				SKU: short.sku, Requested: short.requested, Available: short.available}
			decide = func(r *inventory.Reservation) ([]any, error) { return r.Reject(rej) }
		case isRefusal(res.err):
			// Rolled back, without a shortage to name: a sku refused
			// the order for good, or an earlier run was rolled back.
			rej := inventory.StockReservationRejected{OrderID: c.OrderID, Reason: inventory.ReasonInsufficientStock}
			if errors.Is(res.err, domain.ErrIllegalState) {
				rej.Reason = inventory.ReasonReservationSettled
			}
			decide = func(r *inventory.Reservation) ([]any, error) { return r.Reject(rej) }
		default:
			return Outcome{}, res.err
		}
		out, err = execute(ctx, h.x, m, stream, decide)
		if errors.Is(err, domain.ErrIllegalState) {
			// Rejected or settled while the stock was being reserved:
			// give back what this command took and repeat that answer.
			if err := h.rollback(ctx, m, res.rollbackID, c.OrderID, res.held); err != nil {
				return Outcome{}, err
			}
			out, err = execute(ctx, h.x, m, stream, repeat)
		}
		if err != nil {
			return Outcome{}, err
		}
		o := outcomeOf(out)
		o.Results = append(res.results, o.Results...)
		return o, nil
	})
}

// errStands is how the first look at a reservation says that it was
// answered with a rejection or is settled.
var errStands = errors.New("the reservation's answer stands")

// releaseOwn gives back the reservations this command holds on the lines'
// skus: those an earlier run of it made and did not roll back.
func (h *Inventory) releaseOwn(ctx context.Context, m Meta, orderID string, lines []inventory.Line) error {
	rollbackID := deriveID(m.CommandID, "rollback")
	var held []string
	for _, l := range lines {
		out, err := execute(ctx, h.x, m, inventory.Stream(l.SKU), func(*inventory.Stock) ([]any, error) { return nil, nil }, rollbackID)
		if err != nil {
			return err
		}
		if out.Duplicate && !out.seen[rollbackID] {
			held = append(held, l.SKU)
		}
	}
	return h.rollback(ctx, m, rollbackID, orderID, held)
}

// prepareReserve checks a reservation's fields and returns its lines
// sorted by sku, the order the skus are visited in.
func (h *Inventory) prepareReserve(m Meta, c ReserveStock) (Meta, []inventory.Line, error) {
	m, v := prepare(m)
	checkID(v, "order_id", c.OrderID)
	switch {
	case len(c.Lines) == 0:
		v.Add("lines", "must hold at least 1 line")
	case len(c.Lines) > maxLines:
		v.Add("lines", fmt.Sprintf("must hold at most %d lines", maxLines))
	}
	first := make(map[string]int, len(c.Lines))
	for i, l := range c.Lines {
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
		return m, nil, err
	}
	return m, slices.SortedFunc(slices.Values(c.Lines), func(a, b inventory.Line) int { return cmp.Compare(a.SKU, b.SKU) }), nil
}

// shortage is the refusal of a sku that has less available than a line
// asks for; it wraps the domain's refusal.
type shortage struct {
	sku                  string
	requested, available int
	err                  error
}

func (s *shortage) Error() string { return s.err.Error() }
func (s *shortage) Unwrap() error { return s.err }

// reservation is what reserve did.
type reservation struct {
	results []Result
	// held are the skus on which this command holds a reservation (after
	// an error: held before the rollback, which may have failed).
	held       []string
	rollbackID string
	err        error
	// rollbackErr is set when the rollback after err failed.
	rollbackErr error
}

// reserve reserves the sorted lines for orderID, as command m. When a sku
// refuses the order (a shortage, or its reservation there is settled), the
// skus this command holds are released as the command rollbackID and the
// refusal is returned; a *shortage says which sku was short. Other
// failures roll back only when rollbackAlways is set.
func (h *Inventory) reserve(ctx context.Context, m Meta, orderID string, sorted []inventory.Line, rollbackAlways bool) reservation {
	r := reservation{rollbackID: deriveID(m.CommandID, "rollback"), results: make([]Result, 0, len(sorted))}
	for i, l := range sorted {
		out, err := executeKeyed(ctx, h.x, m, inventory.Stream(l.SKU), []string{orderID}, func(s *inventory.Stock) ([]any, error) {
			evs, err := s.Reserve(orderID, l.Quantity)
			if errors.Is(err, domain.ErrInsufficientStock) {
				return nil, &shortage{sku: l.SKU, requested: l.Quantity, available: max(s.Available(), 0), err: err}
			}
			return evs, err
		}, r.rollbackID)
		switch {
		case err == nil && out.seen[r.rollbackID]:
			// An earlier run of this command failed and released what
			// it held; fail the same way, naming the sku it failed on,
			// and finish its rollback if it was cut short.
			err = h.rolledBack(ctx, m.CommandID, r.rollbackID, orderID, sorted[i+1:], &r.held)
			if err == nil {
				err = fmt.Errorf("command %s failed before and was rolled back: %w", m.CommandID, domain.ErrInsufficientStock)
			}
		case err == nil && (out.appended || out.Duplicate):
			r.held = append(r.held, l.SKU)
		}
		if err != nil {
			r.err = fmt.Errorf("reserve %s for order %s: %w", l.SKU, orderID, err)
			if rollbackAlways || isRefusal(err) {
				if r.rollbackErr = h.rollback(ctx, m, r.rollbackID, orderID, r.held); r.rollbackErr != nil {
					r.err = errors.Join(r.err, r.rollbackErr)
				}
			}
			r.results = nil
			return r
		}
		r.results = append(r.results, out.Result)
	}
	return r
}

// isRefusal reports whether a sku refused a reservation for good.
func isRefusal(err error) bool {
	return errors.Is(err, domain.ErrInsufficientStock) || errors.Is(err, domain.ErrIllegalState)
}

// rolledBack looks, without changing anything, at the lines after the
// first sku an earlier run of commandID reserved and rolled back: it adds
// to held those that run reserved and did not release, and returns a
// *shortage for the first sku that run did not reserve (the one it failed
// on, short then and, as far as the stock now tells, short still), or nil
// when every line was reserved by it.
func (h *Inventory) rolledBack(ctx context.Context, commandID, rollbackID, orderID string, rest []inventory.Line, held *[]string) error {
	for _, l := range rest {
		var reserved, released bool
		st := new(inventory.Stock)
		if _, _, err := readInto(ctx, h.x.store, inventory.Stream(l.SKU), st, 0, func(e domain.Envelope) {
			switch e.Metadata.CausationID {
			case commandID:
				reserved = true
			case rollbackID:
				released = true
			}
		}); err != nil {
			return err
		}
		switch {
		case !reserved:
			return &shortage{sku: l.SKU, requested: l.Quantity, available: max(st.Available(), 0),
				err: domain.Refuse(domain.ErrInsufficientStock, "the reservation of order %s failed on sku %s before and was rolled back", orderID, l.SKU)}
		case !released:
			*held = append(*held, l.SKU)
		}
	}
	return nil
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
	c := ReleaseStock{OrderID: orderID, SKUs: skus}
	return h.x.multi(ctx, KindReleaseStock, m, c, func(ctx context.Context, m Meta) ([]Result, error) {
		m, err := prepareEach(m, orderID, skus)
		if err != nil {
			return nil, err
		}
		return h.each(ctx, m, orderID, skus, (*inventory.Stock).Release)
	})
}

// Consume records that an order's reservations on skus were shipped: on
// hand and reserved both drop. A sku without a reservation for the order is
// left unchanged.
func (h *Inventory) Consume(ctx context.Context, m Meta, orderID string, skus []string) ([]Result, error) {
	c := ConsumeStock{OrderID: orderID, SKUs: skus}
	return h.x.multi(ctx, KindConsumeStock, m, c, func(ctx context.Context, m Meta) ([]Result, error) {
		m, err := prepareEach(m, orderID, skus)
		if err != nil {
			return nil, err
		}
		return h.each(ctx, m, orderID, skus, (*inventory.Stock).Consume)
	})
}

// ReleaseStock runs the release_stock command, a compensation: it
// releases whatever the order holds on the skus, then answers with
// StockReservationReleased on the order's reservation stream, also when
// nothing was held. The answer fences the reservation: a reservation of
// the order still on its way is refused and gives back what it took. One
// that was accepted between the release of the skus and the answer is
// released by a second pass after the answer. A run cut short is
// completed by the command's redelivery.
func (h *Inventory) ReleaseStock(ctx context.Context, m Meta, c ReleaseStock) (Outcome, error) {
	return h.settle(ctx, KindReleaseStock, m, c, c.OrderID, c.SKUs, true, (*inventory.Reservation).Release, (*inventory.Stock).Release)
}

// ConsumeStock runs the consume_stock command: the order's reservations
// on the skus leave with its shipment, then StockReservationConsumed
// answers on the order's reservation stream (also when nothing was held).
func (h *Inventory) ConsumeStock(ctx context.Context, m Meta, c ConsumeStock) (Outcome, error) {
	return h.settle(ctx, KindConsumeStock, m, c, c.OrderID, c.SKUs, false, (*inventory.Reservation).Consume, (*inventory.Stock).Consume)
}

// settle applies decide to the order's skus, answers, and with sweep
// applies it once more. The second pass re-decides only the skus where
// the first changed nothing (elsewhere the command's id is found): a
// hold that appeared there in between is one the fence came too late
// for.
func (h *Inventory) settle(ctx context.Context, kind Kind, m Meta, cmd any, orderID string, skus []string, sweep bool,
	answer func(*inventory.Reservation, string) ([]any, error), decide func(*inventory.Stock, string) ([]any, error)) (Outcome, error) {
	return h.x.through(ctx, kind, m, cmd, func(ctx context.Context, m Meta) (Outcome, error) {
		m, err := prepareEach(m, orderID, skus)
		if err != nil {
			return Outcome{}, err
		}
		results, err := h.each(ctx, m, orderID, skus, decide)
		if err != nil {
			return Outcome{}, err
		}
		out, err := execute(ctx, h.x, m, inventory.ReservationStream(orderID), func(r *inventory.Reservation) ([]any, error) {
			return answer(r, orderID)
		})
		if err != nil {
			return Outcome{}, err
		}
		if sweep {
			if results, err = h.each(ctx, m, orderID, skus, decide); err != nil {
				return Outcome{}, err
			}
		}
		// Duplicate says the command was answered before.
		o := outcomeOf(out)
		o.Results = append(results, o.Results...)
		return o, nil
	})
}

// prepareEach checks the fields of a command about an order's skus.
func prepareEach(m Meta, orderID string, skus []string) (Meta, error) {
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
	return m, v.Err()
}

// each applies one decision about orderID to every sku, in sorted order.
// Each step is idempotent, so after an error the caller repeats the whole
// command.
func (h *Inventory) each(ctx context.Context, m Meta, orderID string, skus []string,
	decide func(*inventory.Stock, string) ([]any, error)) ([]Result, error) {
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
