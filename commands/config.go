package commands

import (
	"errors"
	"fmt"

	"github.com/orderflow/orderflow/domain/shipping"
)

// DefaultMaxRetries is how often a command is retried after a version
// conflict when Config.MaxRetries is 0.
const DefaultMaxRetries = 5

// Config holds the options of the command handlers; the zero Config is valid
// and means the defaults.
type Config struct {
	// MaxRetries bounds the retries of a command after a version conflict
	// (0 means DefaultMaxRetries); a command is tried at most MaxRetries+1
	// times.
	MaxRetries int
	// ServedCountries are the ISO 3166-1 alpha-2 codes shipping delivers to
	// (default shipping.DefaultCountries()).
	ServedCountries []string
}

func (c Config) withDefaults() Config {
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.ServedCountries == nil {
		c.ServedCountries = shipping.DefaultCountries()
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
	if c.MaxRetries < 0 {
		errs = append(errs, fmt.Errorf("max retries %d, want >= 0", c.MaxRetries))
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
