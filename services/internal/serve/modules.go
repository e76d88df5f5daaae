package serve

import (
	"fmt"
	"slices"

	"github.com/orderflow/orderflow/services/internal/serve/service"
	"github.com/orderflow/orderflow/services/inventory"
	"github.com/orderflow/orderflow/services/orders"
	"github.com/orderflow/orderflow/services/sagas"
	"github.com/orderflow/orderflow/services/shipping"
)

// registry lists the services this binary runs, in the dev stack's start
// order. Adding a service is its package's Module and one line here.
var registry = []service.Module{
	orders.Module,
	inventory.Module,
	shipping.Module,
	sagas.Module,
}

// checkRegistry reports invalid modules and names, ports or read models
// two modules share; a test runs it on the registry.
func checkRegistry(mods []service.Module) error {
	names, ports, models := map[string]bool{}, map[int]string{}, map[string]string{}
	for _, m := range mods {
		if err := m.Validate(); err != nil {
			return fmt.Errorf("serve registry: %w", err)
		}
		if names[m.Name] {
			return fmt.Errorf("serve registry: service %s listed twice", m.Name)
		}
		names[m.Name] = true
		if other, ok := ports[m.Port]; ok {
			return fmt.Errorf("serve registry: services %s and %s share port %d", other, m.Name, m.Port)
		}
		ports[m.Port] = m.Name
		for _, rm := range m.ReadModels {
			if other, ok := models[rm.Name]; ok {
				return fmt.Errorf("serve registry: services %s and %s both have read model %s", other, m.Name, rm.Name)
			}
			models[rm.Name] = m.Name
		}
	}
	return nil
}

// Modules returns the services Run can run, in the dev stack's start
// order.
func Modules() []service.Module { return slices.Clone(registry) }

// Lookup returns the module of the service named name.
func Lookup(name string) (service.Module, bool) {
	i := slices.IndexFunc(registry, func(m service.Module) bool { return m.Name == name })
	if i < 0 {
		return service.Module{}, false
	}
	return registry[i], true
}

// Names lists the services Run can run, sorted.
func Names() []string {
	names := make([]string, len(registry))
	for i, m := range registry {
		names[i] = m.Name
	}
	slices.Sort(names)
	return names
}

// ReadModel is a read model fed from its service's own event store.
type ReadModel struct {
	service.ReadModel
	// Service owns the read model and the event store it is fed from.
	Service string
}

// ReadModels lists every service's read models; the services run them and
// the projections command rebuilds them.
func ReadModels() []ReadModel {
	var out []ReadModel
	for _, m := range registry {
		for _, rm := range m.ReadModels {
			out = append(out, ReadModel{ReadModel: rm, Service: m.Name})
		}
	}
	return out
}
