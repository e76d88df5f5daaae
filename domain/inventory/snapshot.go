package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// stockSnapshot is a Stock's snapshot.
type stockSnapshot struct {
	SKU          string         `json:"sku"`
	OnHand       int            `json:"on_hand"`
	Reserved     int            `json:"reserved"`
	Reservations map[string]int `json:"reservations"`
}

// ErrBadStockSnapshot is returned by UnmarshalSnapshot for data that
// MarshalSnapshot did not write.
var ErrBadStockSnapshot = errors.New("not a stock snapshot")

// MarshalSnapshot encodes s for a snapshot of its stream: a JSON object
// with its counts and reservations, then a newline. The settled orders
// are left out (since schema 3): a hot sku's ran to a megabyte, read at
// every load, and the command layer looks up the few a reservation names
// instead (see learn.go and
// docs/adr/0159-settled-orders-looked-up-instead-of-snapshotted.md).
func (s *Stock) MarshalSnapshot() ([]byte, error) {
	head, err := json.Marshal(stockSnapshot{
		SKU:          s.SKU,
		OnHand:       s.OnHand,
		Reserved:     s.Reserved,
		Reservations: s.Reservations,
	})
	if err != nil {
		return nil, err
	}
	return append(head, '\n'), nil
}

// UnmarshalSnapshot sets s to the state MarshalSnapshot encoded, which
// does not hold the orders settled before the snapshot: s is marked
// incomplete (MustLearn asks about every order) until RestoredAt gives the
// snapshot's version. Anything else is refused with ErrBadStockSnapshot:
// an unknown member or bytes after the head are another codec's form
// (schemas 1 and 2 held the settled ids), whose settled orders would
// otherwise be lost silently.
func (s *Stock) UnmarshalSnapshot(data []byte) error {
	head, rest, _ := bytes.Cut(data, []byte{'\n'})
	if len(rest) > 0 {
		return fmt.Errorf("%w: bytes after its head (settled ids, as schema 2 wrote them)", ErrBadStockSnapshot)
	}
	var d stockSnapshot
	dec := json.NewDecoder(bytes.NewReader(head))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return fmt.Errorf("%w: %w", ErrBadStockSnapshot, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: more than one JSON value in its head", ErrBadStockSnapshot)
	}
	*s = Stock{SKU: d.SKU, OnHand: d.OnHand, Reserved: d.Reserved, Reservations: d.Reservations, settledUnknownUpTo: unknownUpToSnapshot}
	return nil
}
