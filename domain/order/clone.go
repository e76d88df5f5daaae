package order

import "slices"

// Clone returns a copy of o that shares no memory with it, so that events
// can be applied to the copy while o stays as it is (the command layer
// decides a queue of commands on a copy and keeps the original until the
// copy's events are stored).
func (o *Order) Clone() *Order {
	c := *o
	c.Items = slices.Clone(o.Items)
	return &c
}
