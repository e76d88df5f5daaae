package service

import (
	"strings"
	"testing"

	"github.com/orderflow/orderflow/projections"
)

func TestModuleValidate(t *testing.T) {
	wire := func(Deps) (Parts, error) { return Parts{}, nil }
	rm := ReadModel{Name: "things", StreamPrefixes: []string{"thing-"}, New: func() projections.Projection { return nil }}
	tests := []struct {
		name string
		m    Module
		want []string // in the error; none: valid
	}{
		{"valid", Module{Name: "things", Port: 8089, ReadModels: []ReadModel{rm}, Wire: wire}, nil},
		{"no read models", Module{Name: "things", Port: 8089, Wire: wire}, nil},
		{"nothing", Module{}, []string{"no name", "port 0", "no Wire"}},
		{"port too big", Module{Name: "things", Port: 70000, Wire: wire}, []string{"port 70000"}},
		{"read model twice", Module{Name: "things", Port: 8089, ReadModels: []ReadModel{rm, rm}, Wire: wire}, []string{"things listed twice"}},
		{"read model without New", Module{Name: "things", Port: 8089, ReadModels: []ReadModel{{Name: "x", StreamPrefixes: []string{"x-"}}}, Wire: wire},
			[]string{`read model "x": a name and New are required`}},
		{"read model without prefixes", Module{Name: "things", Port: 8089, ReadModels: []ReadModel{{Name: "x", New: rm.New}}, Wire: wire},
			[]string{"no stream prefixes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.m.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to contain %q", err, w)
				}
			}
		})
	}
}
