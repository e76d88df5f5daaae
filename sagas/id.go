package sagas

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"

	"github.com/orderflow/orderflow/domain"
)

// The namespaces of the ids this package derives. They are fixed forever:
// changing one would give an order a second saga, and a saga's commands
// new ids that the receivers would run again.
var (
	sagaNamespace     = mustParseUUID("dc347e10-1d83-48d5-834f-771da7adbeee")
	commandNamespace  = mustParseUUID("0a6e9b7a-c564-40b4-922e-0646900d95b2")
	shipmentNamespace = mustParseUUID("559d804a-cc9d-4c31-bb2b-97fd58d942fc")
)

// SagaID is the id of the order_fulfillment saga of the order orderID: a
// UUID v5 of the order id in a fixed namespace. One order has exactly one
// saga, so whoever knows the order id (the orders service answering POST
// /api/orders, the coordinator receiving OrderPlaced, a service stamping a
// customer's cancel) derives the same saga id without asking anyone.
func SagaID(orderID string) string {
	return uuidV5(sagaNamespace, orderID)
}

// CommandID is the id of the command a saga sends for one attempt of one
// action: the forward command of step (compensation false) or its
// compensation (compensation true); the closing action of an aborted saga
// is named by its own name with compensation true. The id is derived, not
// drawn, so that a coordinator that crashed after recording a decision and
// decides again issues the very same command id, which the receiver
// recognises as a repeat.
func CommandID(sagaID, step string, attempt int, compensation bool) string {
	kind := "do"
	if compensation {
		kind = "undo"
	}
	return uuidV5(commandNamespace, sagaID+"/"+kind+"/"+step+"/"+strconv.Itoa(attempt))
}

// uuidV5 returns the name-based (SHA-1) UUID of name in namespace ns, in
// its canonical lower-case text form (RFC 9562 section 5.5).
func uuidV5(ns [16]byte, name string) string {
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC variant
	return formatUUID(u)
}

func formatUUID(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
	return string(b[:])
}

// mustParseUUID reads a canonical UUID constant of this package; a typo is
// a programming error that every test hits at init.
func mustParseUUID(s string) [16]byte {
	var u [16]byte
	if !domain.ValidUUID(s) {
		panic("sagas: malformed UUID constant " + s)
	}
	hexDigits := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(u[:], []byte(hexDigits)); err != nil {
		panic("sagas: malformed UUID constant " + s + ": " + err.Error())
	}
	return u
}
