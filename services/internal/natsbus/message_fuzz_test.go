package natsbus_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/services/internal/natsbus"
)

// fuzzMsg is a received message as Decode sees it.
type fuzzMsg struct {
	data []byte
	h    nats.Header
}

func (m fuzzMsg) Data() []byte         { return m.data }
func (m fuzzMsg) Headers() nats.Header { return m.h }

const fuzzEnvelope = `{"id":"0b5c1b8e-1c1e-4a47-9c53-9f7c9d3e2a10","stream":"order-7c9e6679-7425-40de-944b-e07fc1f90ae7","version":1,"position":42,"type":"OrderPlaced","schema_version":1,"data":{"order_id":"7c9e6679-7425-40de-944b-e07fc1f90ae7"},"metadata":{"correlation_id":"saga-1","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},"recorded_at":"2026-01-02T03:04:05.123456Z"}`

// FuzzDecode: Decode never panics; it fails only with ErrMalformed; what
// it accepts has an id, type, stream and position that no header
// contradicts; and an accepted envelope that Encode can route travels
// through Encode and Decode again unchanged.
func FuzzDecode(f *testing.F) {
	for _, s := range []struct{ body, id, typ, stream, pos string }{
		{fuzzEnvelope, "", "", "", ""},
		{fuzzEnvelope, "0b5c1b8e-1c1e-4a47-9c53-9f7c9d3e2a10", "OrderPlaced", "order-7c9e6679-7425-40de-944b-e07fc1f90ae7", "42"},
		{fuzzEnvelope, "other", "", "", ""},
		{fuzzEnvelope, "", "", "", "042"},
		{`{"id":"e","stream":"saga-1","position":1,"type":"CommandIssued","schema_version":1,"data":{"context":"inventory","name":"reserve_stock","version":1,"command_id":"c","payload":{}}}`, "", "", "", ""},
		{`{"id":"e","stream":"s","position":0,"type":"T"}`, "", "", "", ""},
		{`{"id":"e","stream":"s","position":-1,"type":"T"}`, "", "", "", ""},
		{`{"id":"e","stream":"s","position":18446744073709551616,"type":"T"}`, "", "", "", ""},
		{`{"id":"e","stream":"s","position":1,"type":"T","recorded_at":"not a time"}`, "", "", "", ""},
		{`{"id":"e","stream":"s","position":1,"type":"T","data":nul}`, "", "", "", ""},
		{`{"id":"e","ID":"f","stream":"s","position":1,"type":"T"}`, "", "", "", ""},
		{`{"id":"\ud800","stream":"s","position":1,"type":"T"}`, "", "", "", ""},
		{"{\"id\":\"\xff\",\"stream\":\"s\",\"position\":1,\"type\":\"T\"}", "", "", "", ""},
		{``, "", "", "", ""}, {`null`, "", "", "", ""}, {`[]`, "", "", "", ""}, {`{}`, "", "", "", ""},
	} {
		f.Add([]byte(s.body), s.id, s.typ, s.stream, s.pos)
	}
	f.Fuzz(func(t *testing.T, body []byte, id, typ, stream, pos string) {
		h := nats.Header{}
		for _, kv := range [][2]string{{natsbus.HeaderMsgID, id}, {natsbus.HeaderType, typ}, {natsbus.HeaderStream, stream}, {natsbus.HeaderPosition, pos}} {
			if kv[1] != "" {
				h.Set(kv[0], kv[1])
			}
		}
		e, err := natsbus.Decode(fuzzMsg{data: body, h: h})
		if err != nil {
			if !errors.Is(err, natsbus.ErrMalformed) {
				t.Fatalf("Decode(%q): error %v does not wrap ErrMalformed", body, err)
			}
			if !reflect.DeepEqual(e, domain.Envelope{}) {
				t.Fatalf("Decode(%q) failed but returned %+v", body, e)
			}
			return
		}
		switch {
		case e.ID == "" || e.Type == "" || e.Stream == "" || e.Position == 0:
			t.Fatalf("Decode(%q) accepted an incomplete envelope %+v", body, e)
		case id != "" && id != e.ID, typ != "" && typ != e.Type, stream != "" && stream != e.Stream,
			pos != "" && pos != strconv.FormatUint(e.Position, 10):
			t.Fatalf("Decode(%q) accepted headers %v that contradict %+v", body, h, e)
		}
		m, err := natsbus.Encode("orders", e)
		if err != nil {
			if !errors.Is(err, natsbus.ErrUnroutable) && !errors.Is(err, natsbus.ErrUnencodable) {
				t.Fatalf("Encode of decoded %+v: %v wraps neither ErrUnroutable nor ErrUnencodable", e, err)
			}
			return
		}
		back, err := natsbus.Decode(fuzzMsg{data: m.Data, h: m.Header})
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", e, err)
		}
		if !envelopesAgree(e, back) {
			t.Fatalf("Decode(Encode(e)) = %+v, e = %+v", back, e)
		}
	})
}

// envelopesAgree compares envelopes as the codec must keep them: the
// instant of RecordedAt (not its *time.Location) and the payload up to
// insignificant white space (json.Marshal compacts a RawMessage). A body
// without data decodes to no payload, which Encode writes as null
// (testdata/fuzz/FuzzDecode/9ed964a110a7e31c): both say "no payload".
func envelopesAgree(a, b domain.Envelope) bool {
	if !a.RecordedAt.Equal(b.RecordedAt) {
		return false
	}
	for _, e := range []*domain.Envelope{&a, &b} {
		if len(e.Data) == 0 {
			e.Data = json.RawMessage("null")
		}
	}
	var ca, cb bytes.Buffer
	errA, errB := json.Compact(&ca, a.Data), json.Compact(&cb, b.Data)
	if (errA == nil) != (errB == nil) || !bytes.Equal(ca.Bytes(), cb.Bytes()) {
		return false
	}
	a.RecordedAt, a.Data, b.Data = b.RecordedAt, nil, nil
	return reflect.DeepEqual(a, b)
}

// subjectToken is what a command's subject tokens may be: readable and
// free of NATS separators, wildcards and white space.
var subjectToken = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// FuzzParseCommand: ParseCommand never panics and fails only with
// ErrUnroutable; a command it accepts names a context of the routing
// table, a name that is one subject token and a command id, and Route
// sends its CommandIssued event to commands.<context>.<name>, which lands
// in the commands stream.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []struct{ typ, data string }{
		{natsbus.CommandIssued, `{"context":"inventory","name":"reserve_stock","version":1,"command_id":"c-1","payload":{"order_id":"o","lines":[{"sku":"A","quantity":1}]}}`},
		{natsbus.CommandIssued, `{"context":"shipping","name":"cancel_shipment","version":1,"command_id":"c-2","payload":{"shipment_id":"s","reason":"r"},"step":"schedule_shipment"}`},
		{natsbus.CommandIssued, `{"context":"orders","name":"confirm_order","version":2,"command_id":"c-3"}`},
		{natsbus.CommandIssued, `{"context":"inventory","name":"reserve.stock","version":1,"command_id":"c"}`},
		{natsbus.CommandIssued, `{"context":"inventory","name":"*","version":1,"command_id":"c"}`},
		{natsbus.CommandIssued, `{"context":"inventory","name":">","version":1,"command_id":"c"}`},
		{natsbus.CommandIssued, `{"context":"inventory","name":"a b","version":1,"command_id":"c"}`},
		{natsbus.CommandIssued, `{"context":"payments","name":"charge","version":1,"command_id":"c"}`},
		{natsbus.CommandIssued, `{"context":"inventory","name":"reserve_stock","version":1}`},
		{natsbus.CommandIssued, `{"context":"inventory","name":"reserve_stock","version":"1","command_id":"c"}`},
		{natsbus.CommandIssued, `{"context":"inventory","name":"reserve_stock","version":1,"command_id":"c","payload":`},
		{natsbus.CommandIssued, `null`},
		{natsbus.CommandIssued, ``},
		{"OrderPlaced", `{"context":"orders","name":"confirm_order","version":1,"command_id":"c"}`},
	} {
		f.Add(s.typ, []byte(s.data))
	}
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		e := domain.Envelope{ID: "e-1", Stream: "saga-1", Position: 1, Type: typ, SchemaVersion: 1, Data: data}
		c, err := natsbus.ParseCommand(e)
		if err != nil {
			if !errors.Is(err, natsbus.ErrUnroutable) {
				t.Fatalf("ParseCommand(%q, %q): error %v does not wrap ErrUnroutable", typ, data, err)
			}
			if _, rerr := natsbus.Route(e); typ == natsbus.CommandIssued && !errors.Is(rerr, natsbus.ErrUnroutable) {
				t.Fatalf("Route routes %q, which ParseCommand refuses (%v): %v", data, err, rerr)
			}
			return
		}
		contexts := []string{natsbus.ContextOrders, natsbus.ContextInventory, natsbus.ContextShipping, natsbus.ContextSagas}
		switch {
		case typ != natsbus.CommandIssued:
			t.Fatalf("ParseCommand accepted an event of type %q", typ)
		case !slices.Contains(contexts, c.Context):
			t.Fatalf("ParseCommand(%q) accepted context %q", data, c.Context)
		case !subjectToken.MatchString(c.Name):
			t.Fatalf("ParseCommand(%q) accepted name %q, not one subject token", data, c.Name)
		case c.CommandID == "":
			t.Fatalf("ParseCommand(%q) accepted a command without id", data)
		}
		subject, err := natsbus.Route(e)
		if err != nil {
			t.Fatalf("Route of accepted command %q: %v", data, err)
		}
		if want := "commands." + c.Context + "." + c.Name; subject != want {
			t.Fatalf("Route = %q, want %q", subject, want)
		}
		if stream, ok := natsbus.StreamOf(subject); !ok || stream != natsbus.CommandsStream {
			t.Fatalf("subject %q lands in stream %q (%t), want %s", subject, stream, ok, natsbus.CommandsStream)
		}
	})
}
