package kurrentdbfake

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"
	"github.com/kurrent-io/KurrentDB-Client-Go/protos/kurrentdb/protocols/v1/shared"
	api "github.com/kurrent-io/KurrentDB-Client-Go/protos/kurrentdb/protocols/v1/streams"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Start serves srv over gRPC on a loopback port until the test ends and
// returns a connection string for it (kurrentdb://127.0.0.1:PORT?tls=false).
func Start(t testing.TB, srv *Server) string {
	t.Helper()
	addr, stop, err := Serve(srv, "127.0.0.1:0")
	if err != nil {
		t.Fatalf("kurrentdbfake: %v", err)
	}
	t.Cleanup(stop)
	return "kurrentdb://" + addr + "?tls=false"
}

// Serve serves srv over the streams service of KurrentDB's gRPC protocol on
// addr until stop is called, and returns the address it listens on. Serving
// the same Server again on the same address after stop is a server restart
// that kept its data.
func Serve(srv *Server, addr string) (listening string, stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	g := grpc.NewServer()
	api.RegisterStreamsServer(g, &grpcServer{srv: srv})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(lis)
	}()
	var once sync.Once
	return lis.Addr().String(), func() {
		once.Do(func() {
			g.Stop()
			<-done
		})
	}, nil
}

// grpcServer translates the protocol to Server's calls.
type grpcServer struct {
	api.UnimplementedStreamsServer
	srv *Server
}

func (g *grpcServer) Append(stream grpc.ClientStreamingServer[api.AppendReq, api.AppendResp]) error {
	head, err := stream.Recv()
	if err != nil {
		return err
	}
	opts := head.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "append: options first")
	}
	name := string(opts.GetStreamIdentifier().GetStreamName())
	var state kurrentdb.StreamState
	switch o := opts.GetExpectedStreamRevision().(type) {
	case *api.AppendReq_Options_Any:
		state = kurrentdb.Any{}
	case *api.AppendReq_Options_NoStream:
		state = kurrentdb.NoStream{}
	case *api.AppendReq_Options_Revision:
		state = kurrentdb.StreamRevision{Value: o.Revision}
	default:
		return status.Error(codes.Unimplemented, "append: unsupported expected revision")
	}
	var events []kurrentdb.EventData
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		msg := req.GetProposedMessage()
		id, err := uuidFromProto(msg.GetId())
		if err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		ct := kurrentdb.ContentTypeBinary
		if msg.GetMetadata()["content-type"] == "application/json" {
			ct = kurrentdb.ContentTypeJson
		}
		events = append(events, kurrentdb.EventData{
			EventID: id, EventType: msg.GetMetadata()["type"], ContentType: ct,
			Data: msg.GetData(), Metadata: msg.GetCustomMetadata(),
		})
	}
	rev, commit, err := g.srv.Append(stream.Context(), name, state, events)
	if errors.Is(err, ErrWrongVersion) {
		return stream.SendAndClose(&api.AppendResp{Result: &api.AppendResp_WrongExpectedVersion_{
			WrongExpectedVersion: &api.AppendResp_WrongExpectedVersion{
				CurrentRevisionOption:  &api.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}},
				ExpectedRevisionOption: &api.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: &shared.Empty{}},
			},
		}})
	}
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	success := &api.AppendResp_Success{
		CurrentRevisionOption: &api.AppendResp_Success_CurrentRevision{CurrentRevision: rev},
		PositionOption:        &api.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}},
	}
	if commit != 0 {
		success.PositionOption = &api.AppendResp_Success_Position{Position: &api.AppendResp_Position{CommitPosition: commit, PreparePosition: commit}}
	}
	return stream.SendAndClose(&api.AppendResp{Result: &api.AppendResp_Success_{Success: success}})
}

func (g *grpcServer) Read(req *api.ReadReq, stream grpc.ServerStreamingServer[api.ReadResp]) error {
	opts := req.GetOptions()
	backwards := opts.GetReadDirection() == api.ReadReq_Options_Backwards
	if sub := opts.GetSubscription(); sub != nil {
		return g.subscribe(opts, stream)
	}
	count := opts.GetCount()
	var recs []kurrentdb.RecordedEvent
	var err error
	switch so := opts.GetStreamOption().(type) {
	case *api.ReadReq_Options_Stream:
		name := string(so.Stream.GetStreamIdentifier().GetStreamName())
		if !g.srv.StreamExists(name) {
			return stream.Send(&api.ReadResp{Content: &api.ReadResp_StreamNotFound_{StreamNotFound: &api.ReadResp_StreamNotFound{
				StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)},
			}}})
		}
		var from kurrentdb.StreamPosition
		switch r := so.Stream.GetRevisionOption().(type) {
		case *api.ReadReq_Options_StreamOptions_Start:
			from = kurrentdb.Start{}
		case *api.ReadReq_Options_StreamOptions_End:
			from = kurrentdb.End{}
		case *api.ReadReq_Options_StreamOptions_Revision:
			from = kurrentdb.StreamRevision{Value: r.Revision}
		}
		recs, err = g.srv.ReadStream(stream.Context(), name, from, backwards, count)
	case *api.ReadReq_Options_All:
		recs, err = g.srv.ReadAll(stream.Context(), allFromProto(so.All), backwards, count)
	default:
		return status.Error(codes.Unimplemented, "read: unsupported stream option")
	}
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	for _, rec := range recs {
		if err := stream.Send(readEvent(rec)); err != nil {
			return err
		}
	}
	return nil
}

func (g *grpcServer) subscribe(opts *api.ReadReq_Options, stream grpc.ServerStreamingServer[api.ReadResp]) error {
	all := opts.GetAll()
	if all == nil {
		return status.Error(codes.Unimplemented, "subscribe: only $all")
	}
	var filter *kurrentdb.SubscriptionFilter
	if f := opts.GetFilter(); f != nil {
		if e := f.GetStreamIdentifier(); e != nil {
			filter = &kurrentdb.SubscriptionFilter{Type: kurrentdb.StreamFilterType, Prefixes: e.GetPrefix(), Regex: e.GetRegex()}
		} else if e := f.GetEventType(); e != nil {
			filter = &kurrentdb.SubscriptionFilter{Type: kurrentdb.EventFilterType, Prefixes: e.GetPrefix(), Regex: e.GetRegex()}
		}
	}
	fd, err := g.srv.SubscribeAll(stream.Context(), allFromProto(all), filter)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	defer fd.Close()
	if err := stream.Send(&api.ReadResp{Content: &api.ReadResp_Confirmation{Confirmation: &api.ReadResp_SubscriptionConfirmation{SubscriptionId: uuid.NewString()}}}); err != nil {
		return err
	}
	for {
		ev := fd.Recv()
		var resp *api.ReadResp
		switch {
		case ev.SubscriptionDropped != nil:
			return status.FromContextError(ev.SubscriptionDropped.Error).Err()
		case ev.EventAppeared != nil:
			resp = readEvent(*ev.EventAppeared.Event)
		case ev.CheckPointReached != nil:
			resp = &api.ReadResp{Content: &api.ReadResp_Checkpoint_{Checkpoint: &api.ReadResp_Checkpoint{}}}
		default:
			continue
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func allFromProto(all *api.ReadReq_Options_AllOptions) kurrentdb.AllPosition {
	switch p := all.GetAllOption().(type) {
	case *api.ReadReq_Options_AllOptions_End:
		return kurrentdb.End{}
	case *api.ReadReq_Options_AllOptions_Position:
		return kurrentdb.Position{Commit: p.Position.GetCommitPosition(), Prepare: p.Position.GetPreparePosition()}
	default:
		return kurrentdb.Start{}
	}
}

// readEvent encodes a recorded event the way the server does: structured
// UUID, type, content type and creation time (in .NET ticks since the Unix
// epoch) in the system metadata, and the commit position twice.
func readEvent(rec kurrentdb.RecordedEvent) *api.ReadResp {
	most, least := kurrentdb.UUIDAsInt64(rec.EventID)
	return &api.ReadResp{Content: &api.ReadResp_Event{Event: &api.ReadResp_ReadEvent{
		Event: &api.ReadResp_ReadEvent_RecordedEvent{
			Id:               &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{MostSignificantBits: most, LeastSignificantBits: least}}},
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(rec.StreamID)},
			StreamRevision:   rec.EventNumber,
			CommitPosition:   rec.Position.Commit,
			PreparePosition:  rec.Position.Prepare,
			Metadata: map[string]string{
				"type":         rec.EventType,
				"content-type": rec.ContentType,
				"created":      strconv.FormatInt(rec.CreatedDate.UnixNano()/100, 10),
			},
			CustomMetadata: rec.UserMetadata,
			Data:           rec.Data,
		},
		Position: &api.ReadResp_ReadEvent_CommitPosition{CommitPosition: rec.Position.Commit},
	}}}
}

func uuidFromProto(id *shared.UUID) (uuid.UUID, error) {
	if s := id.GetStructured(); s != nil {
		return kurrentdb.ParseUUIDFromInt64(s.GetMostSignificantBits(), s.GetLeastSignificantBits())
	}
	return uuid.Parse(id.GetString_())
}
