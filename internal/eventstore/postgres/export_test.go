package postgres

// SettledOrdersQuery is the statement SettledOrders runs, for the test
// that its plan uses the index of migration 0005.
const SettledOrdersQuery = settledOrdersQuery
