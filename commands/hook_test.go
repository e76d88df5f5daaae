package commands_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/domain/inventory"
	"github.com/orderflow/orderflow/domain/order"
)

// TestCounterSeesEveryCommand: HTTP commands and traveling ones pass
// through the one hook of the handlers' Config.
func TestCounterSeesEveryCommand(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	c := commands.NewCounter()
	cfg := commands.Config{Hook: c.Hook()}
	inv := commands.NewInventory(s, cfg)
	orders := commands.NewOrders(s, cfg)
	b := commands.NewInventoryBus(inv)

	_, err := inv.Restock(ctx, meta(), "A", 1)
	noError(t, err)
	_, err = inv.Restock(ctx, meta(), "A", 0)
	wantErr(t, err, domain.ErrInvalid)
	orderID := uuid.NewString()
	m := meta()
	_, err = b.Run(ctx, m, commands.ReserveStock{OrderID: orderID, Lines: []inventory.Line{{SKU: "A", Quantity: 1}}})
	noError(t, err)
	m.Attempt = 2
	_, err = b.Run(ctx, m, commands.ReserveStock{OrderID: orderID, Lines: []inventory.Line{{SKU: "A", Quantity: 1}}})
	noError(t, err)
	_, err = b.Run(ctx, meta(), commands.ReserveStock{OrderID: uuid.NewString(), Lines: []inventory.Line{{SKU: "A", Quantity: 1}}})
	noError(t, err)
	_, err = orders.Cancel(ctx, meta(), uuid.NewString(), order.ReasonCancelledByCustomer)
	wantErr(t, err, domain.ErrNotFound)

	got := c.Snapshot()
	want := []commands.Count{
		{Kind: commands.KindRestock, Outcome: commands.OutcomeInvalid, N: 1},
		{Kind: commands.KindRestock, Outcome: commands.OutcomeOK, N: 1},
		{Kind: commands.KindReserveStock, Outcome: commands.OutcomeDuplicate, N: 1},
		{Kind: commands.KindReserveStock, Outcome: commands.OutcomeOK, N: 1},
		{Kind: commands.KindReserveStock, Outcome: commands.OutcomeRejected, N: 1},
		{Kind: commands.KindCancelOrder, Outcome: commands.OutcomeRefused, N: 1},
	}
	if len(got.Counts) != len(want) {
		t.Fatalf("counts %+v, want %+v", got.Counts, want)
	}
	for _, w := range want {
		if !slices.Contains(got.Counts, w) {
			t.Errorf("counts %+v lack %+v", got.Counts, w)
		}
	}
	if want := []commands.Count{{Kind: commands.KindReserveStock, N: 1}}; !slices.Equal(got.Redelivered, want) {
		t.Errorf("redelivered %+v, want %+v", got.Redelivered, want)
	}
}

// TestChainOrderAndRetry: hooks apply outermost first, and a hook that
// runs a command again gets a duplicate, not a second effect.
func TestChainOrderAndRetry(t *testing.T) {
	ctx := context.Background()
	s := newStore()
	var trail []string
	trace := func(name string) commands.Hook {
		return func(next commands.Handle) commands.Handle {
			return func(ctx context.Context, c commands.Call) (commands.Outcome, error) {
				trail = append(trail, name+">"+c.Kind.Name)
				o, err := next(ctx, c)
				trail = append(trail, "<"+name)
				return o, err
			}
		}
	}
	var outcomes []commands.Outcome
	twice := func(next commands.Handle) commands.Handle {
		return func(ctx context.Context, c commands.Call) (commands.Outcome, error) {
			o, err := next(ctx, c)
			if err != nil {
				return o, err
			}
			outcomes = append(outcomes, o)
			o, err = next(ctx, c)
			outcomes = append(outcomes, o)
			return o, err
		}
	}
	h := commands.NewInventory(s, commands.Config{Hook: commands.Chain(trace("outer"), nil, trace("inner"), twice)})
	res, err := h.Restock(ctx, meta(), "A", 3)
	noError(t, err)
	if want := []string{"outer>restock", "inner>restock", "<inner", "<outer"}; !slices.Equal(trail, want) {
		t.Errorf("trail %v, want %v", trail, want)
	}
	if len(outcomes) != 2 || outcomes[0].Duplicate || !outcomes[1].Duplicate || !res.Duplicate {
		t.Errorf("outcomes %+v, result %+v: want the second run a duplicate", outcomes, res)
	}
	wantLevels(t, s, "A", 3, 0)
}

func TestOutcomeLabel(t *testing.T) {
	tests := []struct {
		o    commands.Outcome
		err  error
		want string
	}{
		{commands.Outcome{}, nil, commands.OutcomeOK},
		{commands.Outcome{Rejected: true}, nil, commands.OutcomeRejected},
		{commands.Outcome{Duplicate: true, Rejected: true}, nil, commands.OutcomeDuplicate},
		{commands.Outcome{}, &domain.ValidationError{Fields: []domain.FieldError{{Field: "x"}}}, commands.OutcomeInvalid},
		{commands.Outcome{}, domain.Refuse(domain.ErrIllegalState, "no"), commands.OutcomeRefused},
		{commands.Outcome{}, errors.Join(errors.New("x"), domain.ErrVersionConflict), commands.OutcomeConflict},
		{commands.Outcome{}, commands.ErrUndecodable, commands.OutcomeUnknown},
		{commands.Outcome{}, context.Canceled, commands.OutcomeCanceled},
		{commands.Outcome{}, domain.ErrUnavailable, commands.OutcomeUnavailable},
		{commands.Outcome{}, errors.New("boom"), commands.OutcomeError},
	}
	for _, tt := range tests {
		if got := commands.OutcomeLabel(tt.o, tt.err); got != tt.want {
			t.Errorf("OutcomeLabel(%+v, %v) = %s, want %s", tt.o, tt.err, got, tt.want)
		}
	}
}
