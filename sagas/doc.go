// Package sagas will hold the saga engine (event-sourced state, durable
// deadlines, bounded retries, compensation) and the order_fulfillment
// definition that drives order -> inventory -> shipping.
package sagas
