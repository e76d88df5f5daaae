package inventory

import "maps"

// settledOrders is the set of orders whose reservation of a sku was
// released or consumed. A Stock restored from a snapshot holds only those
// settled after it and those the command layer looked up (see learn.go),
// so the set no longer grows with the whole stream. The zero value is the
// empty set.
type settledOrders struct {
	ids map[string]bool
}

func (s *settledOrders) has(id string) bool { return s.ids[id] }

func (s *settledOrders) add(id string) {
	if s.ids == nil {
		s.ids = make(map[string]bool)
	}
	s.ids[id] = true
}

func (s settledOrders) clone() settledOrders {
	return settledOrders{ids: maps.Clone(s.ids)}
}
