package shipping

import (
	"fmt"

	"github.com/orderflow/orderflow/domain"
)

// DefaultCountries are the destination countries served unless configured
// otherwise.
func DefaultCountries() []string {
	return []string{"US", "CA", "MX", "GB", "IE", "FR", "DE", "NL", "BE", "ES", "IT", "PT",
		"AT", "CH", "SE", "NO", "DK", "FI", "PL", "CZ", "JP", "AU", "NZ"}
}

// Destinations is the set of countries the shipping service delivers to.
// The zero Destinations serves no country.
type Destinations struct {
	set map[string]bool
}

// NewDestinations returns the set of countries, each an ISO 3166-1 alpha-2
// code in upper case.
func NewDestinations(countries []string) (Destinations, error) {
	d := Destinations{set: make(map[string]bool, len(countries))}
	for _, c := range countries {
		if !domain.ValidCountry(c) {
			return Destinations{}, fmt.Errorf("served country %q: not an ISO 3166-1 alpha-2 code", c)
		}
		d.set[c] = true
	}
	return d, nil
}

// Serves reports whether country is in the set.
func (d Destinations) Serves(country string) bool { return d.set[country] }
