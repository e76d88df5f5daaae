package inventory

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
)

// stockSnapshot is the encoded form of a Stock in a snapshot of its
// stream. It reaches the settled orders, which the Stock keeps unexported.
type stockSnapshot struct {
	SKU          string         `json:"sku"`
	OnHand       int            `json:"on_hand"`
	Reserved     int            `json:"reserved"`
	Reservations map[string]int `json:"reservations"`
	// SettledOther are the settled ids not in canonical UUID form.
	SettledOther []string `json:"settled_other,omitempty"`
	// SettledPacked are the other settled ids, as sorted 16-byte values
	// in base64. It is the last member both as encoded here and as
	// PostgreSQL's jsonb, which orders keys by length, gives it back (no
	// other key is as long): UnmarshalSnapshot finds it without running
	// the JSON decoder over it.
	SettledPacked []byte `json:"settled_packed_base64"`
}

// settledKey is the member UnmarshalSnapshot looks for.
const settledKey = `"settled_packed_base64"`

// MarshalSnapshot encodes s as JSON for a snapshot of its stream.
func (s *Stock) MarshalSnapshot() ([]byte, error) {
	packed, others := s.settled.pack()
	return json.Marshal(stockSnapshot{
		SKU:           s.SKU,
		OnHand:        s.OnHand,
		Reserved:      s.Reserved,
		Reservations:  s.Reservations,
		SettledOther:  others,
		SettledPacked: packed,
	})
}

// UnmarshalSnapshot sets s to the state MarshalSnapshot encoded. The
// packed ids of a hot sku run to megabytes, which the JSON decoder reads
// at about 100 MB/s: when they are the last member, as they always are,
// they are cut out and decoded alone, and the JSON decoder reads the rest.
func (s *Stock) UnmarshalSnapshot(data []byte) error {
	var d stockSnapshot
	rest, packed, ok := cutPacked(data)
	if ok {
		if err := json.Unmarshal(rest, &d); err != nil {
			return err
		}
		buf := make([]byte, base64.StdEncoding.DecodedLen(len(packed)))
		n, err := base64.StdEncoding.Decode(buf, packed)
		if err != nil {
			return err
		}
		d.SettledPacked = buf[:n]
	} else if err := json.Unmarshal(data, &d); err != nil {
		return err
	}
	if len(d.SettledPacked)%uuidSize != 0 {
		return errors.New("stock snapshot: packed settled ids are not a whole number of UUIDs")
	}
	*s = Stock{SKU: d.SKU, OnHand: d.OnHand, Reserved: d.Reserved, Reservations: d.Reservations}
	if len(d.SettledPacked) > 0 {
		s.settled.packed = d.SettledPacked
	}
	for _, id := range d.SettledOther {
		s.settled.add(id)
	}
	return nil
}

// cutPacked splits data, a JSON object whose last member is settledKey
// with a string value, into the object without that member and the
// string's content. ok is false when data is not of that shape; the caller
// then decodes it whole.
func cutPacked(data []byte) (rest, packed []byte, ok bool) {
	i := bytes.LastIndex(data, []byte(settledKey))
	if i < 0 {
		return nil, nil, false
	}
	// A base64 string holds no quote, so the last occurrence of the key
	// is the member itself unless it is not last (then the checks fail).
	after := bytes.TrimLeft(data[i+len(settledKey):], " \t\r\n")
	if len(after) == 0 || after[0] != ':' {
		return nil, nil, false
	}
	after = bytes.TrimLeft(after[1:], " \t\r\n")
	if len(after) == 0 || after[0] != '"' {
		return nil, nil, false
	}
	end := bytes.IndexByte(after[1:], '"')
	if end < 0 {
		return nil, nil, false
	}
	packed = after[1 : 1+end]
	if bytes.IndexByte(packed, '\\') >= 0 {
		return nil, nil, false
	}
	if tail := bytes.TrimSpace(after[2+end:]); !bytes.Equal(tail, []byte("}")) {
		return nil, nil, false
	}
	head := bytes.TrimRight(data[:i], " \t\r\n")
	switch {
	case bytes.HasSuffix(head, []byte(",")):
		head = head[:len(head)-1]
	case !bytes.HasSuffix(head, []byte("{")):
		return nil, nil, false
	}
	rest = append(append(make([]byte, 0, len(head)+1), head...), '}')
	return rest, packed, true
}
