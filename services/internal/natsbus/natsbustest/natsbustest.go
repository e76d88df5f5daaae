// Package natsbustest gives tests of the JetStream topology and of its
// publishers a server of their own and a way to read back what a stream
// holds.
package natsbustest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/internal/natsembed"
)

// Server returns the URL of an embedded NATS server with JetStream for
// this test alone, shut down when it ends. The topology uses fixed stream
// names and subjects, so even when TEST_NATS_URL names a shared server
// these tests do not use it: they would see each other's messages.
func Server(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := natsembed.Start(ctx, natsembed.Config{})
	if err != nil {
		t.Fatalf("natsbustest: start embedded NATS: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s.URL()
}

// Msg is one stored message of a stream.
type Msg struct {
	Seq     uint64
	Subject string
	Header  nats.Header
	Body    []byte
}

// Data and Headers make a Msg decodable with natsbus.Decode.
func (m Msg) Data() []byte         { return m.Body }
func (m Msg) Headers() nats.Header { return m.Header }

// Messages returns every message stream holds, in stream order. It reads
// by sequence, which works for work-queue streams too and consumes
// nothing.
func Messages(t testing.TB, js jetstream.JetStream, stream string) []Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("natsbustest: stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("natsbustest: stream %s info: %v", stream, err)
	}
	st := info.State
	out := make([]Msg, 0, st.Msgs)
	if st.Msgs == 0 {
		return out
	}
	for seq := st.FirstSeq; seq <= st.LastSeq; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted or consumed from a work queue
		}
		if err != nil {
			t.Fatalf("natsbustest: stream %s message %d: %v", stream, seq, err)
		}
		out = append(out, Msg{Seq: raw.Sequence, Subject: raw.Subject, Header: raw.Header, Body: raw.Data})
	}
	return out
}
