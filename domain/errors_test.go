package domain

import (
	"errors"
	"fmt"
	"testing"
)

func TestRefusal(t *testing.T) {
	r := Refuse(ErrIllegalState, "order %s is %s", "o-1", "shipped")
	wrapped := fmt.Errorf("order-o-1: %w", r)
	if !errors.Is(wrapped, ErrIllegalState) || errors.Is(wrapped, ErrNotFound) {
		t.Fatalf("errors.Is through %v does not find exactly its sentinel", wrapped)
	}
	var got *Refusal
	if !errors.As(wrapped, &got) || got.Detail != "order o-1 is shipped" {
		t.Fatalf("errors.As found %+v, want the refusal's detail", got)
	}
	if r.Error() != got.Detail {
		t.Fatalf("Error() = %q, want the detail", r.Error())
	}
}
