package shipping

import "slices"

// Clone returns a copy of s that shares no memory with it, so that events
// can be applied to the copy while s stays as it is (the command layer
// decides a queue of commands on a copy and keeps the original until the
// copy's events are stored).
func (s *Shipment) Clone() *Shipment {
	c := *s
	c.Items = slices.Clone(s.Items)
	return &c
}
