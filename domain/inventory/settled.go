package inventory

import (
	"bytes"
	"encoding/hex"
	"maps"
	"slices"
	"sort"
)

// settledOrders is the set of orders whose reservation of a sku was
// released or consumed. A hot sku's set holds an id for nearly every order
// it ever served, so it is kept in two parts: packed holds the ids in
// canonical UUID form (lower-case, as the services write them) as sorted
// 16-byte values, read-only and shared by clones, which a snapshot restores
// in one copy instead of one map entry per order; added holds the ids
// settled since, and any id not in canonical form, which must keep its
// spelling. The zero value is the empty set.
type settledOrders struct {
	packed []byte
	added  map[string]bool
}

// uuidSize is the length of a packed id.
const uuidSize = 16

// canonical returns the 16 bytes of id when it is a UUID in canonical
// form (8-4-4-4-12 lower-case hex digits).
func canonical(id string) ([uuidSize]byte, bool) {
	var k [uuidSize]byte
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' {
		return k, false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; 'A' <= c && c <= 'F' {
			return k, false
		}
	}
	src := []byte(id[0:8] + id[9:13] + id[14:18] + id[19:23] + id[24:36])
	if _, err := hex.Decode(k[:], src); err != nil {
		return k, false
	}
	return k, true
}

func (s *settledOrders) has(id string) bool {
	if s.added[id] {
		return true
	}
	k, ok := canonical(id)
	if !ok {
		return false
	}
	n := len(s.packed) / uuidSize
	i := sort.Search(n, func(i int) bool { return bytes.Compare(s.packed[i*uuidSize:(i+1)*uuidSize], k[:]) >= 0 })
	return i < n && bytes.Equal(s.packed[i*uuidSize:(i+1)*uuidSize], k[:])
}

func (s *settledOrders) add(id string) {
	if s.added == nil {
		s.added = make(map[string]bool)
	}
	s.added[id] = true
}

// clone shares packed, which is never written to.
func (s settledOrders) clone() settledOrders {
	return settledOrders{packed: s.packed, added: maps.Clone(s.added)}
}

// pack returns every canonical id of the set as sorted 16-byte values,
// without repeats, and the other ids, sorted: the set's encoded form.
func (s settledOrders) pack() (packed []byte, others []string) {
	var keys [][uuidSize]byte
	for id := range s.added {
		if k, ok := canonical(id); ok {
			keys = append(keys, k)
		} else {
			others = append(others, id)
		}
	}
	slices.Sort(others)
	if len(keys) == 0 {
		return s.packed, others
	}
	slices.SortFunc(keys, func(a, b [uuidSize]byte) int { return bytes.Compare(a[:], b[:]) })
	packed = make([]byte, 0, len(s.packed)+len(keys)*uuidSize)
	old := s.packed
	for _, k := range keys {
		// Merge: the old ids before k, then k unless it is there.
		for len(old) > 0 && bytes.Compare(old[:uuidSize], k[:]) < 0 {
			packed, old = append(packed, old[:uuidSize]...), old[uuidSize:]
		}
		if len(old) > 0 && bytes.Equal(old[:uuidSize], k[:]) {
			continue
		}
		if n := len(packed); n > 0 && bytes.Equal(packed[n-uuidSize:], k[:]) {
			continue
		}
		packed = append(packed, k[:]...)
	}
	return append(packed, old...), others
}
