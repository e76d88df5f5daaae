// Package viewtest holds the integration tests of the read models
// (projections/orderview, stockview and shipmentview) against real
// PostgreSQL: what each event does to a row, and the Get and List queries
// with their filters, keyset pagination and input validation.
package viewtest
