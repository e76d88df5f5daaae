package commands

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/orderflow/orderflow/domain/shipping"
)

// Defaults of Config.
const (
	// DefaultRetryBudget is how long a command keeps retrying after version
	// conflicts with writers in other processes when Config.RetryBudget is
	// 0. It is far above the few milliseconds a retry takes and well below
	// the HTTP request timeout, so a client sees a conflict only when the
	// stream is fought over for a long time.
	DefaultRetryBudget = 2 * time.Second
	// DefaultCacheStreams is how many idle streams keep their state in
	// memory when Config.CacheStreams is 0.
	DefaultCacheStreams = 10_000
	// DefaultCacheIDs is how many command ids the idle streams kept in
	// memory may remember together when Config.CacheIDs is 0 (about 40 MB).
	DefaultCacheIDs = 1 << 20
)

// Config holds the options of the command handlers; the zero Config is valid
// and means the defaults.
type Config struct {
	// RetryBudget bounds the time a command is retried, with exponential
	// backoff and jitter, after its append lost a race with another
	// process (0 means DefaultRetryBudget). When it is spent the command
	// fails with an error wrapping domain.ErrVersionConflict.
	RetryBudget time.Duration
	// CacheStreams bounds the idle streams whose state, version and
	// command ids stay in memory for the next command (0 means
	// DefaultCacheStreams); the least recently used ones are dropped
	// first. Streams with commands in progress are always kept.
	CacheStreams int
	// CacheIDs bounds the command ids (one per command that changed a
	// stream) that the idle cached streams remember together, so that a
	// few very long streams cannot fill the memory (0 means
	// DefaultCacheIDs).
	CacheIDs int
	// ServedCountries are the ISO 3166-1 alpha-2 codes shipping delivers to
	// (default shipping.DefaultCountries()).
	ServedCountries []string
	// Stats, when set, receives the handlers' counts; handlers given the
	// same Stats add up. Nil gives each handler its own.
	Stats *Stats
	// Hook, when set, wraps every command the handlers run (see Chain to
	// install several, and Counter for one that counts).
	Hook Hook
	// SnapshotEvery is how many events apart a stream's state is
	// snapshotted: after an append that takes the stream past a multiple
	// of it (0 means DefaultSnapshotEvery; negative turns snapshots off,
	// neither taken nor loaded). See snapshot.go.
	SnapshotEvery int
	// Snapshots keeps the snapshots; nil means the EventStore when it
	// implements SnapshotStore, and none otherwise.
	Snapshots SnapshotStore
	// Logger receives what the handlers skip rather than fail on (a
	// snapshot not saved); nil means slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.RetryBudget == 0 {
		c.RetryBudget = DefaultRetryBudget
	}
	if c.CacheStreams == 0 {
		c.CacheStreams = DefaultCacheStreams
	}
	if c.CacheIDs == 0 {
		c.CacheIDs = DefaultCacheIDs
	}
	if c.ServedCountries == nil {
		c.ServedCountries = shipping.DefaultCountries()
	}
	if c.Stats == nil {
		c.Stats = new(Stats)
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = DefaultSnapshotEvery
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports whether c, with its defaults filled in, can be used.
func (c Config) Validate() error {
	_, err := c.destinations()
	return err
}

func (c Config) destinations() (shipping.Destinations, error) {
	c = c.withDefaults()
	var errs []error
	if c.RetryBudget < 0 {
		errs = append(errs, fmt.Errorf("retry budget %s, want >= 0", c.RetryBudget))
	}
	if c.CacheStreams < 0 || c.CacheIDs < 0 {
		errs = append(errs, fmt.Errorf("cache bounds %d streams, %d ids, want >= 0", c.CacheStreams, c.CacheIDs))
	}
	if len(c.ServedCountries) == 0 {
		errs = append(errs, errors.New("served countries: empty list (leave it nil for the default)"))
	}
	d, err := shipping.NewDestinations(c.ServedCountries)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return shipping.Destinations{}, fmt.Errorf("commands config: %w", err)
	}
	return d, nil
}
