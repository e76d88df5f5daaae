package postgres

import "testing"

// TestBroadcastOncePerHead checks that a commit announced both directly and
// through its own NOTIFY wakes subscribers once, while a new head, or an
// announcement without one, always wakes them.
func TestBroadcastOncePerHead(t *testing.T) {
	s := &Store{changed: make(chan struct{})}
	steps := []struct {
		head uint64
		wake bool
	}{
		{5, true},  // a commit up to 5
		{5, false}, // the same commit's NOTIFY
		{3, false}, // an older commit by another process, already visible
		{7, true},  // a newer one
		{0, true},  // the listener reconnected: anything may have changed
		{7, false},
	}
	for i, st := range steps {
		before, _ := s.waitChan()
		s.broadcast(st.head)
		select {
		case <-before:
			if !st.wake {
				t.Errorf("step %d: head %d woke subscribers, want no wake-up", i, st.head)
			}
		default:
			if st.wake {
				t.Errorf("step %d: head %d did not wake subscribers", i, st.head)
			}
		}
	}
}
