package orders

import (
	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/projections"
	"github.com/orderflow/orderflow/projections/orderview"
	"github.com/orderflow/orderflow/services/internal/serve/service"
)

// Module is the orders service as `orderflow serve orders` runs it.
var Module = service.Module{
	Name: "orders",
	Port: 8081,
	ReadModels: []service.ReadModel{{
		Name:           orderview.Name,
		StreamPrefixes: orderview.StreamPrefixes,
		New:            func() projections.Projection { return orderview.New() },
	}},
	Wire: func(d service.Deps) (service.Parts, error) {
		cmds := commands.NewOrders(d.Store, d.Commands)
		parts := service.Parts{Routes: func(r chi.Router) {
			Routes(r, cmds)
			QueryRoutes(r, d.Pool)
		}}
		if d.JetStream != nil {
			// The commands sagas send travel on commands.orders.> and run
			// on the same handlers as the routes.
			parts.Workers = append(parts.Workers, service.CommandConsumer(d, commands.NewOrdersBus(cmds)))
		}
		return parts, nil
	},
}
