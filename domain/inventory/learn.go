package inventory

import "math"

// A Stock restored from a snapshot does not hold the orders settled before
// the snapshot: a hot sku's would make every load read a megabyte. The
// command layer asks the store about the orders a reservation names and
// tells the Stock what it found, before the Stock decides (see
// docs/adr/0159-settled-orders-looked-up-instead-of-snapshotted.md). The
// decisions themselves do not change.

// RestoredAt records that s was restored from a snapshot of its stream at
// version: the orders settled at versions up to it are not held until
// LearnSettled is told them. UnmarshalSnapshot marks the Stock incomplete
// up to an unknown version; RestoredAt narrows that to the snapshot's.
func (s *Stock) RestoredAt(version int64) { s.settledUnknownUpTo = version }

// SettledUnknownUpTo returns the version up to which s may not hold every
// settled order: 0 when it holds them all.
func (s *Stock) SettledUnknownUpTo() int64 { return s.settledUnknownUpTo }

// MustLearn returns those of keys, order ids about to reserve on s, whose
// settlement before SettledUnknownUpTo s cannot rule out: neither held
// nor known to be settled. Nil when s is complete. Restock, Release and
// Consume need nothing learnt.
func (s *Stock) MustLearn(keys []string) []string {
	if s.settledUnknownUpTo == 0 {
		return nil
	}
	var out []string
	for _, id := range keys {
		if _, ok := s.Reservations[id]; ok || s.settled.has(id) {
			continue
		}
		out = append(out, id)
	}
	return out
}

// Learn records facts read from the stream's history at versions up to
// SettledUnknownUpTo: the orders in settled had their reservation of the
// sku released or consumed. Like Apply it never validates.
func (s *Stock) Learn(settled []string) {
	for _, id := range settled {
		s.settled.add(id)
	}
}

// unknownUpToSnapshot marks a Stock decoded from a snapshot as incomplete
// before RestoredAt says up to which version.
const unknownUpToSnapshot = math.MaxInt64
