package order

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/orderflow/orderflow/domain"
)

// Limits on an order's lines.
const (
	MaxItems          = 50
	MaxQuantity       = 1000
	MaxUnitPriceCents = 100_000_000
)

// Limits on an address's text fields, in characters.
const (
	MaxAddressField = 200
	MaxPostalCode   = 32
)

// ValidateItems adds to v an error for every invalid part of items, with
// paths under field (e.g. "items[1].sku"): 1 to MaxItems lines, distinct
// valid skus, quantity 1..MaxQuantity, unit price 0..MaxUnitPriceCents.
func ValidateItems(v *domain.ValidationError, field string, items []Item) {
	switch {
	case len(items) == 0:
		v.Add(field, "must hold at least 1 item")
	case len(items) > MaxItems:
		v.Add(field, fmt.Sprintf("must hold at most %d items", MaxItems))
	}
	first := make(map[string]int, len(items))
	for i, it := range items {
		p := fmt.Sprintf("%s[%d]", field, i)
		switch j, dup := first[it.SKU]; {
		case it.SKU == "":
			v.Add(p+".sku", "is required")
		case !domain.ValidExternalID(it.SKU):
			v.Add(p+".sku", domain.ExternalIDRule)
		case dup:
			v.Add(p+".sku", fmt.Sprintf("repeats the sku of %s[%d]", field, j))
		default:
			first[it.SKU] = i
		}
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			v.Add(p+".quantity", fmt.Sprintf("must be between 1 and %d", MaxQuantity))
		}
		if it.UnitPriceCents < 0 || it.UnitPriceCents > MaxUnitPriceCents {
			v.Add(p+".unit_price_cents", fmt.Sprintf("must be between 0 and %d", MaxUnitPriceCents))
		}
	}
}

// ValidateAddress adds to v an error for every invalid part of a, with paths
// under field (e.g. "shipping_address.country"): name, line1, city and
// postal_code are required, text is bounded and free of control characters,
// and country is an ISO 3166-1 alpha-2 code.
func ValidateAddress(v *domain.ValidationError, field string, a Address) {
	text(v, field+".name", a.Name, MaxAddressField, true)
	text(v, field+".line1", a.Line1, MaxAddressField, true)
	text(v, field+".line2", a.Line2, MaxAddressField, false)
	text(v, field+".city", a.City, MaxAddressField, true)
	text(v, field+".postal_code", a.PostalCode, MaxPostalCode, true)
	switch {
	case a.Country == "":
		v.Add(field+".country", "is required")
	case !domain.ValidCountry(a.Country):
		v.Add(field+".country", "must be an ISO 3166-1 alpha-2 country code in upper case, e.g. US")
	}
}

func text(v *domain.ValidationError, field, s string, max int, required bool) {
	switch {
	case strings.TrimSpace(s) == "":
		if required {
			v.Add(field, "is required")
		} else if s != "" {
			v.Add(field, "must not be only white space")
		}
	case !utf8.ValidString(s):
		v.Add(field, "must be valid UTF-8")
	case utf8.RuneCountInString(s) > max:
		v.Add(field, fmt.Sprintf("must be at most %d characters", max))
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		v.Add(field, "must not contain control characters")
	}
}

// ValidCurrency reports whether code has the form of an ISO 4217 currency
// code: three upper-case ASCII letters (e.g. "USD"). Which codes are in
// circulation changes over time and is the payment provider's to judge.
func ValidCurrency(code string) bool {
	if len(code) != 3 {
		return false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < 'A' || code[i] > 'Z' {
			return false
		}
	}
	return true
}
