package shipping

import (
	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/shipmentview"
	"github.com/orderflow/orderflow/services/internal/serve/service"
)

// Module is the shipping service as `orderflow serve shipping` runs it.
var Module = service.Module{
	Name: "shipping",
	Port: 8083,
	ReadModels: []service.ReadModel{{
		Name:           shipmentview.Name,
		StreamPrefixes: shipmentview.StreamPrefixes,
		New:            func() projections.Projection { return shipmentview.New() },
	}},
	Wire: func(d service.Deps) (service.Parts, error) {
		cmds := commands.NewShipping(d.Store, d.Commands)
		parts := service.Parts{Routes: func(r chi.Router) {
			Routes(r, cmds)
			QueryRoutes(r, d.Pool)
		}}
		if d.JetStream != nil {
			// The commands sagas send travel on commands.shipping.> and run
			// on the same handlers as the routes.
			parts.Workers = append(parts.Workers, service.CommandConsumer(d, commands.NewShippingBus(cmds)))
		}
		return parts, nil
	},
}
