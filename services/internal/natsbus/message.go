package natsbus

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/domain"
)

// Header names of every message the relays publish. The body is the whole
// envelope; the headers repeat what a consumer may want to filter or trace
// on without decoding it.
const (
	HeaderMsgID  = jetstream.MsgIDHeader // the event id; JetStream drops repeats within the duplicate window
	HeaderType   = "Orderflow-Type"
	HeaderStream = "Orderflow-Stream"
	// HeaderPosition is the event's global position in its source store.
	HeaderPosition = "Orderflow-Position"
	// HeaderSource names the store the message comes from: the name of the
	// relay that published it, which is the service's context ("orders",
	// "sagas", ...). Positions are only unique within one store, so the
	// pair (source, position) identifies a message; a relay resuming after
	// a crash looks for its own pairs to skip what is already there.
	HeaderSource      = "Orderflow-Source"
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// Errors of the encoding. A relay parks an event whose encoding fails
// (retrying cannot help: the encoding depends on the event alone); a
// consumer parks a message that does not decode.
var (
	ErrUnroutable  = errors.New("natsbus: event has no subject")
	ErrUnencodable = errors.New("natsbus: event cannot be encoded")
	ErrMalformed   = errors.New("natsbus: malformed message")
	// ErrInvalidSource is returned by Encode for a source name that is not
	// a subject token; relays check their name up front with ValidSource.
	ErrInvalidSource = errors.New("natsbus: invalid source name")
)

// ContextRoute ties the streams of one bounded context, recognised by their
// prefix, to the context's name in subjects.
type ContextRoute struct {
	Prefix  string
	Context string
}

// Context names used in subjects.
const (
	ContextOrders    = "orders"
	ContextInventory = "inventory"
	ContextShipping  = "shipping"
	ContextSagas     = "sagas"
)

// Contexts is the routing table from stream prefix to context. It is read
// only; a new aggregate kind adds its row here.
var Contexts = []ContextRoute{
	{Prefix: "order-", Context: ContextOrders},
	{Prefix: "stock-", Context: ContextInventory},
	// An order's reservation as a whole: the answers to a saga's stock
	// commands (domain/inventory.ReservationStreamPrefix).
	{Prefix: "reservation-", Context: ContextInventory},
	{Prefix: "shipment-", Context: ContextShipping},
	{Prefix: "saga-", Context: ContextSagas},
}

// ContextOf returns the context owning stream.
func ContextOf(stream string) (string, bool) {
	for _, r := range Contexts {
		if strings.HasPrefix(stream, r.Prefix) && len(stream) > len(r.Prefix) {
			return r.Context, true
		}
	}
	return "", false
}

func knownContext(name string) bool {
	for _, r := range Contexts {
		if r.Context == name {
			return true
		}
	}
	return false
}

// CommandIssued is the type of the saga event that records a decision to
// send a command; the relay publishes it on the commands subjects.
const CommandIssued = "CommandIssued"

// Command is the data of a CommandIssued event.
type Command struct {
	// Context is the receiving context, e.g. "inventory".
	Context string `json:"context"`
	// Name is the command, e.g. "reserve_stock".
	Name string `json:"name"`
	// Version is the schema version of the command's payload, as the
	// receiver's catalog registers it (commands.Kind).
	Version int `json:"version"`
	// CommandID identifies the command for the receiver's idempotency.
	CommandID string `json:"command_id"`
	// Payload is the command's JSON arguments.
	Payload json.RawMessage `json:"payload,omitempty"`
}

// ParseCommand reads the command recorded by a CommandIssued event. Errors
// wrap ErrUnroutable.
func ParseCommand(e domain.Envelope) (Command, error) {
	var c Command
	if e.Type != CommandIssued {
		return c, fmt.Errorf("event %s: type %q is not %s: %w", e.ID, e.Type, CommandIssued, ErrUnroutable)
	}
	if err := json.Unmarshal(e.Data, &c); err != nil {
		return c, fmt.Errorf("event %s: command: %v: %w", e.ID, err, ErrUnroutable)
	}
	switch {
	case !knownContext(c.Context):
		return c, fmt.Errorf("event %s: command context %q is not one of the routing table's: %w", e.ID, c.Context, ErrUnroutable)
	case !validToken(c.Name):
		return c, fmt.Errorf("event %s: command name %q is not a subject token: %w", e.ID, c.Name, ErrUnroutable)
	case c.CommandID == "":
		return c, fmt.Errorf("event %s: command without command_id: %w", e.ID, ErrUnroutable)
	}
	return c, nil
}

// Route returns the subject of e: commands.<context>.<name> for a
// CommandIssued event of a saga stream, events.<context>.<Type> otherwise.
// Errors wrap ErrUnroutable.
func Route(e domain.Envelope) (string, error) {
	ctx, ok := ContextOf(e.Stream)
	if !ok {
		return "", fmt.Errorf("event %s: stream %q has no context in the routing table: %w", e.ID, e.Stream, ErrUnroutable)
	}
	if ctx == ContextSagas && e.Type == CommandIssued {
		c, err := ParseCommand(e)
		if err != nil {
			return "", err
		}
		return "commands." + c.Context + "." + c.Name, nil
	}
	if !validToken(e.Type) {
		return "", fmt.Errorf("event %s: type %q is not a subject token: %w", e.ID, e.Type, ErrUnroutable)
	}
	return "events." + ctx + "." + e.Type, nil
}

// validToken accepts the characters we allow in a subject token; NATS
// itself forbids only separators, wildcards and whitespace, but names in
// subjects should stay readable and portable.
func validToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidSource reports whether name can be the source of messages (see
// HeaderSource): a subject token of letters, digits, '_' and '-'.
func ValidSource(name string) bool { return validToken(name) }

// RelaySubjects returns the subject filters a relay of source publishes
// on: events.<context>.> for a context of the routing table, plus
// commands.> for the sagas context, whose CommandIssued events are the
// only commands. For any other name (a relay whose store is not one
// context's, as in tests) it is every subject of the topology. A relay
// looks for its own messages only there, so the filters keep that search
// from reading the other contexts' messages.
func RelaySubjects(source string) []string {
	if !knownContext(source) {
		return []string{EventsSubjects, CommandsSubjects}
	}
	out := []string{"events." + source + ".>"}
	if source == ContextSagas {
		out = append(out, CommandsSubjects)
	}
	return out
}

// StreamOf returns the JetStream stream of the topology that captures
// subject (a subject or a filter): EventsStream for events.*,
// CommandsStream for commands.*.
func StreamOf(subject string) (string, bool) {
	switch {
	case strings.HasPrefix(subject, "events."):
		return EventsStream, true
	case strings.HasPrefix(subject, "commands."):
		return CommandsStream, true
	}
	return "", false
}

// Origin returns the source and position a message's headers name (see
// HeaderSource), and false when either is missing or malformed, as on a
// message that no relay published.
func Origin(h nats.Header) (source string, position uint64, ok bool) {
	source = h.Get(HeaderSource)
	position, err := strconv.ParseUint(h.Get(HeaderPosition), 10, 64)
	if source == "" || err != nil || position == 0 {
		return "", 0, false
	}
	return source, position, true
}

// Encode builds the message that source (the publishing relay's name,
// see HeaderSource) sends for e: its subject (Route), the JSON envelope as
// body and the headers. It also names the JetStream stream the message
// must land in, so that a misconfigured server rejects it rather than
// storing it elsewhere.
func Encode(source string, e domain.Envelope) (*nats.Msg, error) {
	if !ValidSource(source) {
		return nil, fmt.Errorf("%w: %q is not a subject token", ErrInvalidSource, source)
	}
	subject, err := Route(e)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("event %s: %v: %w", e.ID, err, ErrUnencodable)
	}
	m := nats.NewMsg(subject)
	m.Data = body
	m.Header.Set(HeaderMsgID, e.ID)
	m.Header.Set(HeaderType, e.Type)
	m.Header.Set(HeaderStream, e.Stream)
	m.Header.Set(HeaderPosition, strconv.FormatUint(e.Position, 10))
	m.Header.Set(HeaderSource, source)
	if e.Metadata.TraceParent != "" {
		m.Header.Set(HeaderTraceParent, e.Metadata.TraceParent)
		if e.Metadata.TraceState != "" {
			m.Header.Set(HeaderTraceState, e.Metadata.TraceState)
		}
	}
	stream, _ := StreamOf(subject) // Route makes only subjects it knows
	m.Header.Set(jetstream.ExpectedStreamHeader, stream)
	return m, nil
}

// Message is what Decode needs of a received message; jetstream.Msg has it.
type Message interface {
	Data() []byte
	Headers() nats.Header
}

// Decode returns the envelope carried by m. A body that is not an envelope,
// or headers that contradict it, wrap ErrMalformed. Headers that are
// missing are not an error: the body is authoritative.
func Decode(m Message) (domain.Envelope, error) {
	var e domain.Envelope
	if err := json.Unmarshal(m.Data(), &e); err != nil {
		return domain.Envelope{}, fmt.Errorf("decode: %v: %w", err, ErrMalformed)
	}
	switch {
	case e.ID == "":
		return domain.Envelope{}, fmt.Errorf("decode: envelope without id: %w", ErrMalformed)
	case e.Type == "":
		return domain.Envelope{}, fmt.Errorf("decode %s: envelope without type: %w", e.ID, ErrMalformed)
	case e.Stream == "":
		return domain.Envelope{}, fmt.Errorf("decode %s: envelope without stream: %w", e.ID, ErrMalformed)
	case e.Position == 0:
		return domain.Envelope{}, fmt.Errorf("decode %s: envelope without position: %w", e.ID, ErrMalformed)
	}
	h := m.Headers()
	for _, c := range []struct{ name, want string }{
		{HeaderMsgID, e.ID},
		{HeaderType, e.Type},
		{HeaderStream, e.Stream},
		{HeaderPosition, strconv.FormatUint(e.Position, 10)},
	} {
		if got := h.Get(c.name); got != "" && got != c.want {
			return domain.Envelope{}, fmt.Errorf("decode %s: header %s is %q, body says %q: %w", e.ID, c.name, got, c.want, ErrMalformed)
		}
	}
	return e, nil
}
