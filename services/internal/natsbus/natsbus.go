// Package natsbus is orderflow's side of NATS JetStream: the streams every
// service relies on (EVENTS for domain events, COMMANDS for saga commands),
// created or updated at start-up, a connection helper that reconnects
// forever, and the one message encoding the relays publish and the
// consumers decode (subjects, headers, body). Every message names its
// source and its position there, so that a relay can tell which of its
// events JetStream already holds.
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names and the subjects they capture.
const (
	EventsStream   = "EVENTS"
	CommandsStream = "COMMANDS"

	EventsSubjects   = "events.>"
	CommandsSubjects = "commands.>"
)

// Topology defaults.
const (
	DefaultReplicas        = 1
	DefaultMaxAge          = 7 * 24 * time.Hour
	DefaultDuplicateWindow = 2 * time.Minute

	// MaxReplicas is JetStream's own limit.
	MaxReplicas = 5
)

// ErrInvalidConfig is wrapped by TopologyConfig.Validate errors.
var ErrInvalidConfig = errors.New("natsbus: invalid topology config")

// TopologyConfig sizes the streams. Zero fields take the defaults.
type TopologyConfig struct {
	// Replicas of each stream (1..5); default 1. More than one needs a
	// clustered server.
	Replicas int
	// MaxAge is how long a message is kept; default 7 days. JetStream is a
	// transport here, the event store keeps every event forever, so a
	// bounded age only limits how far back a new consumer can start.
	MaxAge time.Duration
	// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id to drop
	// a republished message; default 2 minutes. It must not exceed MaxAge.
	DuplicateWindow time.Duration
}

// Validate reports settings JetStream would refuse or that make no sense.
func (c TopologyConfig) Validate() error {
	switch {
	case c.Replicas < 0 || c.Replicas > MaxReplicas:
		return fmt.Errorf("%w: replicas %d out of range 1..%d", ErrInvalidConfig, c.Replicas, MaxReplicas)
	case c.MaxAge < 0:
		return fmt.Errorf("%w: negative max age %s", ErrInvalidConfig, c.MaxAge)
	case c.DuplicateWindow < 0:
		return fmt.Errorf("%w: negative duplicate window %s", ErrInvalidConfig, c.DuplicateWindow)
	}
	d := c.withDefaults()
	if d.DuplicateWindow > d.MaxAge {
		return fmt.Errorf("%w: duplicate window %s exceeds max age %s", ErrInvalidConfig, d.DuplicateWindow, d.MaxAge)
	}
	return nil
}

func (c TopologyConfig) withDefaults() TopologyConfig {
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	return c
}

// StreamConfigs returns the stream definitions EnsureTopology applies, with
// cfg's defaults filled in.
func StreamConfigs(cfg TopologyConfig) []jetstream.StreamConfig {
	cfg = cfg.withDefaults()
	return []jetstream.StreamConfig{
		{
			Name:        EventsStream,
			Description: "orderflow domain events, published by each service's relay",
			Subjects:    []string{EventsSubjects},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			MaxAge:      cfg.MaxAge,
			Duplicates:  cfg.DuplicateWindow,
			Discard:     jetstream.DiscardOld,
		},
		{
			// A work queue: each command is taken by one consumer of its
			// subject and removed once acknowledged.
			Name:        CommandsStream,
			Description: "orderflow saga commands, published by the sagas relay",
			Subjects:    []string{CommandsSubjects},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			MaxAge:      cfg.MaxAge,
			Duplicates:  cfg.DuplicateWindow,
			Discard:     jetstream.DiscardOld,
		},
	}
}

// EnsureTopology creates the streams or brings existing ones to cfg. Every
// service calls it at start-up, possibly at the same time as the others, so
// a stream created by someone else in between is updated, not an error.
func EnsureTopology(ctx context.Context, js jetstream.JetStream, cfg TopologyConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	for _, sc := range StreamConfigs(cfg) {
		if err := ensureStream(ctx, js, sc); err != nil {
			return err
		}
	}
	return nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig) error {
	// CreateOrUpdateStream updates first and creates on "not found"; a
	// concurrent creator can slip in between, after which an update works.
	const attempts = 3
	var err error
	for range attempts {
		_, err = js.CreateOrUpdateStream(ctx, sc)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			break
		}
	}
	return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
}
