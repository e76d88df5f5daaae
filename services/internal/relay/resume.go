package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderflow/orderflow/services/internal/natsbus"
)

// Exact resume (docs/adr/0054-exact-resume.md). A relay's checkpoint can lag
// what JetStream holds: a crash after JetStream acknowledged events and
// before the checkpoint that covers them was committed. Republishing those
// events is harmless inside JetStream's duplicate window and a duplicate
// after it, so before it publishes a session reads what JetStream already
// holds of its own messages beyond the checkpoint and skips exactly those
// events. Exactly, not "everything up to the last one": an event JetStream
// refused while later ones were accepted (ADR 0050), or one that was being
// parked when the relay died, is missing below the last message and must
// still go out.
//
// To keep that search short, every checkpoint is saved with a resume point:
// for each stream, a sequence at or below which none of the relay's
// messages beyond the checkpoint can be. The search reads only the relay's
// subjects (natsbus.RelaySubjects) from there on.

// scanBatch is how many messages one fetch of the search asks for.
const scanBatch = 1000

// streamMark is the saved resume point in one JetStream stream.
type streamMark struct {
	// Seq: none of the relay's messages beyond the checkpoint is at or
	// below this sequence.
	Seq uint64 `json:"seq"`
	// Created tells the stream instance: a stream deleted and created
	// again starts its sequences over, and is searched from its start.
	Created time.Time `json:"created"`
}

// resumePoint is saved with a checkpoint, in relay_checkpoints.resume.
type resumePoint struct {
	// Position is the checkpoint the marks are true for.
	Position uint64                `json:"position"`
	Streams  map[string]streamMark `json:"streams"`
}

// heldKey identifies one event: its position in the store and its id. The
// id guards against a store that was reset under the same relay name: a
// message of the old store at the same position is not this event.
type heldKey struct {
	pos uint64
	id  string
}

// heldMsg is a message of this relay beyond its checkpoint that JetStream
// held when the session began.
type heldMsg struct {
	pos uint64
	seq uint64
}

// streamState is what a session knows of one JetStream stream.
type streamState struct {
	created time.Time
	// base: every message this session publishes to the stream lands above
	// it. It starts as the stream's last sequence when the search began and
	// rises with the acks (a message sent after an acknowledged one is
	// stored after it).
	base uint64
	// held are the relay's messages beyond the checkpoint found by the
	// search, by position, and minSeq[i] the lowest sequence among
	// held[i:].
	held   []heldMsg
	minSeq []uint64
}

// held is what JetStream holds of a relay's messages beyond its
// checkpoint. The reader only reads keys; the loop alone calls acked and
// marks.
type held struct {
	keys    map[heldKey]struct{}
	streams map[string]*streamState
	// filters are the subjects searched (natsbus.RelaySubjects).
	filters []string
}

// covers reports whether a message on subject would be found by the
// search. The filters are subjects or prefixes ending in ">".
func (h *held) covers(subject string) bool {
	for _, f := range h.filters {
		if prefix, wild := strings.CutSuffix(f, ">"); wild && strings.HasPrefix(subject, prefix) || f == subject {
			return true
		}
	}
	return false
}

// has reports whether JetStream already holds the event at pos with id.
func (h *held) has(pos uint64, id string) bool {
	_, ok := h.keys[heldKey{pos, id}]
	return ok
}

// acked records the ack of a message stored in stream at seq.
func (h *held) acked(stream string, seq uint64) {
	if st, ok := h.streams[stream]; ok {
		st.base = max(st.base, seq)
		return
	}
	// A stream outside the search (created since, or not among the
	// relay's subjects): the ack is the only thing known of it.
	h.streams[stream] = &streamState{base: seq}
}

// marks returns the resume point for checkpoint pos.
func (h *held) marks(pos uint64) resumePoint {
	rp := resumePoint{Position: pos, Streams: make(map[string]streamMark, len(h.streams))}
	for name, st := range h.streams {
		seq := st.base
		// Messages found beyond pos are still ahead: the next search must
		// reach them.
		i := sort.Search(len(st.held), func(i int) bool { return st.held[i].pos > pos })
		if i < len(st.held) {
			seq = min(seq, st.minSeq[i]-1)
		}
		rp.Streams[name] = streamMark{Seq: seq, Created: st.created}
	}
	return rp
}

// search reads, in every stream the relay publishes to, its messages
// beyond checkpoint from that rp marks (or from the stream's start).
func (r *Relay) search(ctx context.Context, checkpoint uint64, rp resumePoint) (*held, error) {
	h := &held{
		keys:    make(map[heldKey]struct{}),
		streams: make(map[string]*streamState),
		filters: natsbus.RelaySubjects(r.cfg.Name),
	}
	filters := make(map[string][]string)
	var names []string
	for _, f := range h.filters {
		name, ok := natsbus.StreamOf(f)
		if !ok {
			continue
		}
		if _, seen := filters[name]; !seen {
			names = append(names, name)
		}
		filters[name] = append(filters[name], f)
	}
	for _, name := range names {
		st, err := r.searchStream(ctx, name, filters[name], checkpoint, rp.Streams[name], h)
		if err != nil {
			return nil, err
		}
		h.streams[name] = st
	}
	return h, nil
}

func (r *Relay) searchStream(ctx context.Context, name string, filters []string, checkpoint uint64, mark streamMark, h *held) (*streamState, error) {
	stream, err := r.pub.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// Nothing can be there; what this session publishes lands in a
		// stream created later, from sequence 1.
		return &streamState{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("search stream %s: %w", name, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("search stream %s: %w", name, err)
	}
	last := info.State.LastSeq
	from := uint64(1)
	if mark.Seq > 0 && mark.Created.Equal(info.Created) && mark.Seq <= last {
		from = mark.Seq + 1
	}
	st := &streamState{created: info.Created, base: last}
	visit := func(hdr nats.Header, seq uint64) {
		source, pos, ok := natsbus.Origin(hdr)
		if !ok || source != r.cfg.Name || pos <= checkpoint {
			return
		}
		h.keys[heldKey{pos, hdr.Get(natsbus.HeaderMsgID)}] = struct{}{}
		st.held = append(st.held, heldMsg{pos: pos, seq: seq})
	}
	if from <= last && info.State.Msgs > 0 {
		if info.Config.Retention == jetstream.LimitsPolicy {
			err = searchWithConsumer(ctx, stream, filters, from, last, visit)
		} else {
			// A work queue accepts no consumer that does not ack, nor one
			// overlapping its consumers' filters; it is read message by
			// message (it holds only what is not yet consumed).
			err = searchWithGet(ctx, stream, filters, from, last, visit)
		}
		if err != nil {
			return nil, fmt.Errorf("search stream %s from %d: %w", name, from, err)
		}
	}
	st.index()
	return st, nil
}

// index sorts held by position and fills minSeq, which marks relies on.
func (st *streamState) index() {
	slices.SortFunc(st.held, func(a, b heldMsg) int { return cmp.Compare(a.pos, b.pos) })
	st.minSeq = make([]uint64, len(st.held))
	for i := len(st.held) - 1; i >= 0; i-- {
		st.minSeq[i] = st.held[i].seq
		if i+1 < len(st.held) {
			st.minSeq[i] = min(st.minSeq[i], st.minSeq[i+1])
		}
	}
}

// searchWithConsumer reads the headers of the messages on filters from
// sequence from to last through an ephemeral consumer that acks nothing.
func searchWithConsumer(ctx context.Context, stream jetstream.Stream, filters []string, from, last uint64, visit func(nats.Header, uint64)) error {
	cfg := jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   from,
		AckPolicy:     jetstream.AckNonePolicy,
		HeadersOnly:   true,
		MemoryStorage: true,
		Replicas:      1,
		// Removed by the server if this process dies before deleting it.
		InactiveThreshold: time.Minute,
	}
	if len(filters) == 1 {
		cfg.FilterSubject = filters[0]
	} else {
		cfg.FilterSubjects = filters
	}
	cons, err := stream.CreateConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("create search consumer: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = stream.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	if cons.CachedInfo().NumPending == 0 {
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// NoWait: the batch ends with what the stream holds now instead
		// of waiting for more to arrive.
		batch, err := cons.FetchNoWait(scanBatch)
		if err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		n, done := 0, false
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("message metadata: %w", err)
			}
			visit(m.Headers(), md.Sequence.Stream)
			if md.Sequence.Stream >= last || md.NumPending == 0 {
				done = true
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("fetch: %w", err)
		}
		if done {
			return nil
		}
		if n == 0 {
			// The messages left expired or were deleted meanwhile; the
			// server says whether any remain.
			ci, err := cons.Info(ctx)
			if err != nil {
				return fmt.Errorf("search consumer info: %w", err)
			}
			if ci.NumPending == 0 {
				return nil
			}
		}
	}
}

// searchWithGet reads the messages on filters from sequence from to last
// one request at a time.
func searchWithGet(ctx context.Context, stream jetstream.Stream, filters []string, from, last uint64, visit func(nats.Header, uint64)) error {
	for _, f := range filters {
		for seq := from; seq <= last; {
			m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(f))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return fmt.Errorf("get message %d on %s: %w", seq, f, err)
			}
			if m.Sequence > last {
				break
			}
			visit(m.Header, m.Sequence)
			seq = m.Sequence + 1
		}
	}
	return nil
}
