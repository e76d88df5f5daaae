package domain

import (
	"strings"
	"testing"
)

func TestValidExternalID(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"SKU-1", true},
		{"c-42", true},
		{"a.b_c-D9", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("x", 65), false},
		{"", false},
		{"has space", false},
		{"slash/", false},
		{"ünïcode", false},
		{"semi;colon", false},
		{".", false},
		{"..", false},
		{"...", false},
		{strings.Repeat(".", 64), false},
		{".hidden", true},
		{"a..b", true},
		{"..-", true},
		{"v1.", true},
	}
	for _, tt := range tests {
		if got := ValidExternalID(tt.in); got != tt.want {
			t.Errorf("ValidExternalID(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestValidUUID(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"6ba7b810-9dad-11d1-80b4-00c04fd430c8", true},
		{"6BA7B810-9DAD-11D1-80B4-00C04FD430C8", true},
		{"6ba7b810-9dad-11d1-80b4-00c04fd430c", false},
		{"6ba7b8109dad-11d1-80b4-00c04fd430c8x", false},
		{"6ba7b810-9dad-11d1-80b4-00c04fd430cg", false},
		{"{6ba7b810-9dad-11d1-80b4-00c04fd430c}", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := ValidUUID(tt.in); got != tt.want {
			t.Errorf("ValidUUID(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestValidCountry(t *testing.T) {
	if n := len(countries); n != 249 {
		t.Errorf("%d country codes, want the 249 officially assigned ones", n)
	}
	tests := []struct {
		in   string
		want bool
	}{
		{"US", true}, {"GB", true}, {"AX", true}, {"SS", true}, {"ZW", true}, {"BQ", true},
		{"us", false}, {"UK", false}, {"EU", false}, {"XK", false}, {"USA", false}, {"", false}, {"U", false},
	}
	for _, tt := range tests {
		if got := ValidCountry(tt.in); got != tt.want {
			t.Errorf("ValidCountry(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
