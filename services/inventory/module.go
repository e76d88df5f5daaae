package inventory

import (
	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/stockview"
	"github.com/orderflow/orderflow/services/internal/serve/service"
)

// Module is the inventory service as `orderflow serve inventory` runs it.
var Module = service.Module{
	Name: "inventory",
	Port: 8082,
	ReadModels: []service.ReadModel{{
		Name:           stockview.Name,
		StreamPrefixes: stockview.StreamPrefixes,
		New:            func() projections.Projection { return stockview.New() },
	}},
	Wire: func(d service.Deps) (service.Parts, error) {
		cmds := commands.NewInventory(d.Store, d.Commands)
		parts := service.Parts{Routes: func(r chi.Router) {
			Routes(r, cmds)
			QueryRoutes(r, d.Pool)
		}}
		if d.JetStream != nil {
			// The commands sagas send travel on commands.inventory.> and run
			// on the same handlers as the routes.
			parts.Workers = append(parts.Workers, service.CommandConsumer(d, commands.NewInventoryBus(cmds)))
		}
		return parts, nil
	},
}
