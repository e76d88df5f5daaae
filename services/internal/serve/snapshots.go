package serve

// The command handlers snapshot long streams in the event store when the
// store keeps snapshots (commands.SnapshotStore): the PostgreSQL store
// does, in the database that holds the events (the service's own, or the
// one --event-store names), whose migrations create es_snapshots; KurrentDB
// does not, and its streams load from their first event. So nothing needs
// wiring but where the handlers report a snapshot they skipped. See
// docs/adr/0150-snapshots-of-long-streams.md.

// snapshotDefaults fills the command handlers' snapshot settings; c.Logger
// is set.
func (c *Config) snapshotDefaults() {
	if c.Commands.Logger == nil {
		c.Commands.Logger = c.Logger.With("component", "commands")
	}
}
