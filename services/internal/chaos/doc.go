// Package chaos is the load, the fault injection and the judgement of
// `orderflow chaos`: it places orders through the gateway from many
// concurrent clients (retrying every write under one Idempotency-Key until
// it has a final answer), kills processes of a running stack on a schedule
// that meets minimums per kind, and, once the stack is quiet, checks the
// system's invariants against what the clients were told.
//
// The package knows the stack only through its HTTP API (a gateway base
// URL and tokens) and through the Target values it is handed; starting
// and supervising the processes is the caller's business. The invariant
// checks are a pure function of a World (what was asked and acknowledged,
// and what the read models show), so that each can be shown to fail on
// planted data.
package chaos
