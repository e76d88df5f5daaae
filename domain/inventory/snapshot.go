package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// stockSnapshot is the JSON head of a Stock's snapshot. It reaches the
// settled orders, which the Stock keeps unexported.
type stockSnapshot struct {
	SKU          string         `json:"sku"`
	OnHand       int            `json:"on_hand"`
	Reserved     int            `json:"reserved"`
	Reservations map[string]int `json:"reservations"`
	// SettledOther are the settled ids not in canonical UUID form.
	SettledOther []string `json:"settled_other,omitempty"`
}

// ErrBadStockSnapshot is returned by UnmarshalSnapshot for data that
// MarshalSnapshot did not write.
var ErrBadStockSnapshot = errors.New("not a stock snapshot")

// MarshalSnapshot encodes s for a snapshot of its stream: a JSON object
// with the small fields, a newline, then the packed settled ids as they are
// held, 16 bytes each. A hot sku's ids run to a megabyte: raw, they are
// neither encoded nor decoded, only copied (see
// docs/adr/0158-snapshots-as-bytea-and-the-load-in-one-round-trip.md).
// encoding/json escapes newlines within strings, so the first newline
// ends the head.
func (s *Stock) MarshalSnapshot() ([]byte, error) {
	packed, others := s.settled.pack()
	head, err := json.Marshal(stockSnapshot{
		SKU:          s.SKU,
		OnHand:       s.OnHand,
		Reserved:     s.Reserved,
		Reservations: s.Reservations,
		SettledOther: others,
	})
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(head)+1+len(packed))
	out = append(out, head...)
	out = append(out, '\n')
	return append(out, packed...), nil
}

// UnmarshalSnapshot sets s to the state MarshalSnapshot encoded. Without
// a newline, data is a head alone, with nothing packed ({} is the empty
// stock). A head with a member it does not know is refused: that is
// another codec's form (the JSON one of schema 1 held the packed ids in
// base64), whose settled orders would otherwise be lost silently. The
// packed ids are kept where they are in data, not copied (a copy of a hot
// sku's megabyte cost more than the rest of decoding): the caller must not
// change data afterwards. The Stock never writes to them.
func (s *Stock) UnmarshalSnapshot(data []byte) error {
	head, packed, _ := bytes.Cut(data, []byte{'\n'})
	if len(packed)%uuidSize != 0 {
		return fmt.Errorf("%w: packed settled ids are not a whole number of UUIDs", ErrBadStockSnapshot)
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
	*s = Stock{SKU: d.SKU, OnHand: d.OnHand, Reserved: d.Reserved, Reservations: d.Reservations}
	if len(packed) > 0 {
		s.settled.packed = packed[:len(packed):len(packed)]
	}
	for _, id := range d.SettledOther {
		s.settled.add(id)
	}
	return nil
}
