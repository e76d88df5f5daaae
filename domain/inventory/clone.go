package inventory

import (
	"maps"
	"slices"
)

// Clone returns a copy of s that shares no memory with it, so that events
// can be applied to the copy while s stays as it is (the command layer
// decides a queue of commands on a copy and keeps the original until the
// copy's events are stored).
func (s *Stock) Clone() *Stock {
	c := *s
	c.Reservations = maps.Clone(s.Reservations)
	c.settled = s.settled.clone()
	return &c
}

// Clone returns a copy of r that shares no memory with it.
func (r *Reservation) Clone() *Reservation {
	c := *r
	c.Lines = slices.Clone(r.Lines)
	if r.Rejection != nil {
		rej := *r.Rejection
		c.Rejection = &rej
	}
	return &c
}
