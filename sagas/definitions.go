package sagas

import (
	"fmt"
	"maps"
	"slices"
	"sort"
)

// Definitions is the catalogue of saga definitions by (name, version).
// Register everything before first use; after that it is safe for
// concurrent reads.
type Definitions struct {
	byKey map[defKey]*Definition
}

type defKey struct {
	name    string
	version int
}

// NewDefinitions returns an empty catalogue.
func NewDefinitions() *Definitions {
	return &Definitions{byKey: make(map[defKey]*Definition)}
}

// Register adds def after checking it. Errors wrap ErrInvalidDefinition.
func (c *Definitions) Register(def *Definition) error {
	if def == nil {
		return fmt.Errorf("register saga definition: nil: %w", ErrInvalidDefinition)
	}
	if err := def.validate(); err != nil {
		return fmt.Errorf("register saga definition %s v%d: %v: %w", def.Name, def.Version, err, ErrInvalidDefinition)
	}
	k := defKey{def.Name, def.Version}
	if _, ok := c.byKey[k]; ok {
		return fmt.Errorf("register saga definition %s v%d: already registered: %w", def.Name, def.Version, ErrInvalidDefinition)
	}
	c.byKey[k] = def
	return nil
}

// Lookup returns the definition registered under name and version.
// Errors wrap ErrUnknownDefinition.
func (c *Definitions) Lookup(name string, version int) (*Definition, error) {
	if d, ok := c.byKey[defKey{name, version}]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("saga definition %s v%d: %w", name, version, ErrUnknownDefinition)
}

// For returns the definition a started saga is pinned to.
func (c *Definitions) For(s *State) (*Definition, error) {
	if !s.Started() {
		return nil, fmt.Errorf("definition of a saga: %w", ErrNotStarted)
	}
	return c.Lookup(s.definition, s.definitionVersion)
}

// Latest returns the highest version registered under name: the one new
// sagas of that type start with.
func (c *Definitions) Latest(name string) (*Definition, error) {
	var best *Definition
	for k, d := range c.byKey {
		if k.name == name && (best == nil || d.Version > best.Version) {
			best = d
		}
	}
	if best == nil {
		return nil, fmt.Errorf("saga definition %s: %w", name, ErrUnknownDefinition)
	}
	return best, nil
}

// StartedBy returns, for each saga type, the latest definition whose
// trigger is eventType, ordered by name: the sagas an event of that type
// starts.
func (c *Definitions) StartedBy(eventType string) []*Definition {
	var out []*Definition
	for _, d := range c.All() {
		if d.Trigger == nil || d.Trigger.Event != eventType {
			continue
		}
		if latest, _ := c.Latest(d.Name); latest == d {
			out = append(out, d)
		}
	}
	return out
}

// All returns every registered definition ordered by name, then version.
func (c *Definitions) All() []*Definition {
	out := make([]*Definition, 0, len(c.byKey))
	for _, d := range c.byKey {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Version < out[j].Version
	})
	return out
}

// Consumes returns, sorted, every event type a saga of some registered
// definition starts on or reacts to: triggers, replies, AbortOn events and
// the events steps wait for. The coordinator subscribes to these (the
// events.<context>.<Type> subjects) and nothing else.
func (c *Definitions) Consumes() []string {
	set := make(map[string]bool)
	add := func(types ...string) {
		for _, t := range types {
			set[t] = true
		}
	}
	action := func(a *Action) {
		if a != nil {
			add(a.Done...)
			add(slices.Collect(maps.Keys(a.Failure))...)
		}
	}
	for _, d := range c.byKey {
		if d.Trigger != nil {
			add(d.Trigger.Event)
		}
		for _, s := range d.Steps {
			add(s.Success...)
			add(slices.Collect(maps.Keys(s.Failure))...)
			if s.After != "" {
				add(s.After)
			}
			action(s.Compensation)
		}
		action(d.Closing)
		for _, a := range d.AbortOn {
			add(a.Event)
		}
	}
	return slices.Sorted(maps.Keys(set))
}
