package commands

import "sync/atomic"

// Stats counts what the command handlers did since they were created, for
// metrics. The zero Stats is ready to use, and its methods are safe for
// concurrent use.
type Stats struct {
	conflicts atomic.Uint64
	retries   atomic.Uint64
	surfaced  atomic.Uint64
	appends   atomic.Uint64
	appended  atomic.Uint64
	queued    atomic.Int64
	cached    atomic.Int64

	snapshotsLoaded  atomic.Uint64
	snapshotsSaved   atomic.Uint64
	snapshotFailures atomic.Uint64
}

// StatsSnapshot is the value of a Stats at one moment.
type StatsSnapshot struct {
	// Conflicts counts appends that failed because another process had
	// appended to the stream since this one last read it. Commands of one
	// process never conflict with each other.
	Conflicts uint64
	// Retries counts the appends tried again after a conflict.
	Retries uint64
	// Surfaced counts the commands that failed with a version conflict
	// because their retry budget was spent.
	Surfaced uint64
	// Appends counts the successful appends; each carries the events of
	// one or more commands.
	Appends uint64
	// AppendedCommands counts the commands whose events those appends
	// stored; AppendedCommands/Appends is the mean batch size.
	AppendedCommands uint64
	// Queued is the number of commands waiting for their stream's writer
	// or being run by it.
	Queued int64
	// CachedStreams is the number of streams whose state is kept in
	// memory.
	CachedStreams int64
	// SnapshotsLoaded counts the streams loaded from a snapshot.
	SnapshotsLoaded uint64
	// SnapshotsSaved counts the snapshots written.
	SnapshotsSaved uint64
	// SnapshotFailures counts the snapshots not loaded, encoded or saved
	// because of an error, and those skipped while the store was busy
	// with others; each only costs speed.
	SnapshotFailures uint64
}

// Snapshot returns the current counts.
func (s *Stats) Snapshot() StatsSnapshot {
	return StatsSnapshot{
		Conflicts:        s.conflicts.Load(),
		Retries:          s.retries.Load(),
		Surfaced:         s.surfaced.Load(),
		Appends:          s.appends.Load(),
		AppendedCommands: s.appended.Load(),
		Queued:           s.queued.Load(),
		CachedStreams:    s.cached.Load(),
		SnapshotsLoaded:  s.snapshotsLoaded.Load(),
		SnapshotsSaved:   s.snapshotsSaved.Load(),
		SnapshotFailures: s.snapshotFailures.Load(),
	}
}
