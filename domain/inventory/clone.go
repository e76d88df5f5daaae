package inventory

import "maps"

// Clone returns a copy of s that shares no memory with it, so that events
// can be applied to the copy while s stays as it is (the command layer
// decides a queue of commands on a copy and keeps the original until the
// copy's events are stored).
func (s *Stock) Clone() *Stock {
	c := *s
	c.Reservations = maps.Clone(s.Reservations)
	c.settled = maps.Clone(s.settled)
	return &c
}
