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
		return service.Parts{Routes: func(r chi.Router) {
			Routes(r, cmds)
			QueryRoutes(r, d.Pool)
		}}, nil
	},
}
