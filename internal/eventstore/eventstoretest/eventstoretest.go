// Package eventstoretest is the contract suite every event store adapter
// must pass. An adapter's test calls Run with a constructor; each subtest
// works on streams under its own random prefix and reads the global order
// through a Filter on that prefix, so the suite also runs against a server
// shared by many subtests (KurrentDB).
package eventstoretest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/domain"
	"github.com/orderflow/orderflow/internal/eventstore"
)

// Options tunes the suite for an adapter.
type Options struct {
	// Writers and EventsPerWriter size the gap-safety race. Defaults 16 and
	// 2000.
	Writers, EventsPerWriter int
}

// NewStore returns a store for one subtest; it may be fresh or shared.
type NewStore func(t *testing.T) eventstore.Store

// Run runs the contract suite.
func Run(t *testing.T, newStore NewStore, opts ...Options) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Writers == 0 {
		o.Writers = 16
	}
	if o.EventsPerWriter == 0 {
		o.EventsPerWriter = 2000
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s eventstore.Store, p string)
	}{
		{"AppendAndReadStream", testAppendAndRead},
		{"ExpectedVersionKinds", testExpectedVersions},
		{"ConflictWritesNothing", testConflictWritesNothing},
		{"ConcurrentCreateOneWins", testConcurrentCreate},
		{"IdempotentReappend", testIdempotentReappend},
		{"EventIDCase", testEventIDCase},
		{"ReadStreamPaging", testReadStreamPaging},
		{"EmptyAndMissingStreams", testEmptyAndMissing},
		{"InvalidAppends", testInvalidAppends},
		{"LargeEvent1MiB", testLargeEvent},
		{"ManyEventsInOneAppend", testManyEvents},
		{"Unicode", testUnicode},
		{"ReadAllOrderAndFilter", testReadAll},
		{"Head", testHead},
		{"FindEvents", testFind},
		{"SubscribeCatchUpAndLive", testSubscribe},
		{"GapSafetyRace", func(t *testing.T, s eventstore.Store, p string) { testGapSafety(t, s, p, o) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			tc.fn(t, s, prefix(t))
		})
	}
}

func prefix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b) + "_"
}

func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// events builds n events of type typ with small JSON payloads.
func events(n int, typ string) []domain.Envelope {
	out := make([]domain.Envelope, n)
	for i := range out {
		out[i] = domain.Envelope{
			ID:            newID(),
			Type:          typ,
			SchemaVersion: 1,
			Data:          json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)),
			Metadata:      domain.Metadata{CorrelationID: "corr-" + typ, CausationID: "cause", RequestID: "req"},
		}
	}
	return out
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustAppend(t *testing.T, s eventstore.Store, stream string, exp domain.ExpectedVersion, evs []domain.Envelope) domain.AppendResult {
	t.Helper()
	res, err := s.Append(ctxT(t), stream, exp, evs)
	if err != nil {
		t.Fatalf("append %s (expected %d): %v", stream, exp, err)
	}
	return res
}

func mustRead(t *testing.T, s eventstore.Store, stream string) []domain.Envelope {
	t.Helper()
	evs, err := s.ReadStream(ctxT(t), stream, 1, 0)
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	return evs
}

func testAppendAndRead(t *testing.T, s eventstore.Store, p string) {
	stream := p + "order-1"
	in := events(3, "Placed")
	before := time.Now().Add(-time.Minute)
	res := mustAppend(t, s, stream, domain.NoStream, in)
	if res.NextVersion != 3 {
		t.Fatalf("NextVersion = %d, want 3", res.NextVersion)
	}
	got := mustRead(t, s, stream)
	if len(got) != 3 {
		t.Fatalf("read %d events, want 3", len(got))
	}
	var lastPos uint64
	for i, e := range got {
		if e.ID != strings.ToLower(in[i].ID) || e.Type != "Placed" || e.Stream != stream || e.Version != int64(i+1) || e.SchemaVersion != 1 {
			t.Errorf("event %d = %+v, want id %s type Placed stream %s version %d schema 1", i, e, in[i].ID, stream, i+1)
		}
		if string(e.Data) != string(in[i].Data) {
			t.Errorf("event %d data = %s, want %s", i, e.Data, in[i].Data)
		}
		if e.Metadata != in[i].Metadata {
			t.Errorf("event %d metadata = %+v, want %+v", i, e.Metadata, in[i].Metadata)
		}
		if e.Position <= lastPos {
			t.Errorf("event %d position %d not after %d", i, e.Position, lastPos)
		}
		lastPos = e.Position
		if e.RecordedAt.Before(before) || e.RecordedAt.After(time.Now().Add(time.Minute)) || e.RecordedAt.Location() != time.UTC {
			t.Errorf("event %d recorded at %v, want a UTC time near now", i, e.RecordedAt)
		}
	}
	if res.Position != lastPos {
		t.Errorf("AppendResult.Position = %d, want %d (the last event's)", res.Position, lastPos)
	}
	next := mustAppend(t, s, stream, domain.ExactVersion(3), events(1, "Confirmed"))
	if next.NextVersion != 4 || next.Position <= lastPos {
		t.Errorf("second append = %+v, want version 4 and a position after %d", next, lastPos)
	}
}

func testExpectedVersions(t *testing.T, s eventstore.Store, p string) {
	existing := p + "existing"
	mustAppend(t, s, existing, domain.NoStream, events(2, "E"))
	tests := []struct {
		name     string
		stream   string
		expected domain.ExpectedVersion
		conflict bool
		want     int64
	}{
		{"no stream on a new stream", p + "new-a", domain.NoStream, false, 1},
		{"any on a new stream", p + "new-b", domain.AnyVersion, false, 1},
		{"exact 0 on a new stream", p + "new-c", domain.ExactVersion(0), false, 1},
		{"exact on a new stream", p + "new-d", domain.ExactVersion(1), true, 0},
		{"no stream on an existing stream", existing, domain.NoStream, true, 0},
		{"stale exact", existing, domain.ExactVersion(1), true, 0},
		{"exact ahead", existing, domain.ExactVersion(5), true, 0},
		{"current exact", existing, domain.ExactVersion(2), false, 3},
		{"any on an existing stream", existing, domain.AnyVersion, false, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.Append(ctxT(t), tc.stream, tc.expected, events(1, "E"))
			if tc.conflict {
				if !errors.Is(err, eventstore.ErrVersionConflict) {
					t.Fatalf("err = %v, want ErrVersionConflict", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if res.NextVersion != tc.want {
				t.Fatalf("NextVersion = %d, want %d", res.NextVersion, tc.want)
			}
		})
	}
}

func testConflictWritesNothing(t *testing.T, s eventstore.Store, p string) {
	stream := p + "stock-1"
	mustAppend(t, s, stream, domain.NoStream, events(2, "E"))
	_, err := s.Append(ctxT(t), stream, domain.ExactVersion(1), events(3, "Late"))
	if !errors.Is(err, eventstore.ErrVersionConflict) {
		t.Fatalf("err = %v, want ErrVersionConflict", err)
	}
	if got := mustRead(t, s, stream); len(got) != 2 {
		t.Fatalf("stream has %d events after a conflict, want 2", len(got))
	}
	all, err := s.ReadAll(ctxT(t), 0, 0, eventstore.Filter{StreamPrefixes: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range all {
		if e.Type == "Late" {
			t.Fatalf("conflicting event %s reached the global order", e.ID)
		}
	}
}

func testConcurrentCreate(t *testing.T, s eventstore.Store, p string) {
	stream := p + "race"
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Append(ctxT(t), stream, domain.NoStream, events(1, fmt.Sprintf("W%d", i)))
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, eventstore.ErrVersionConflict):
			t.Errorf("writer %d: err = %v, want nil or ErrVersionConflict", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d writers created the stream, want exactly 1", won)
	}
	if got := mustRead(t, s, stream); len(got) != 1 {
		t.Fatalf("stream has %d events, want 1", len(got))
	}
}

func testIdempotentReappend(t *testing.T, s eventstore.Store, p string) {
	stream := p + "order-2"
	first := events(2, "E")
	res := mustAppend(t, s, stream, domain.NoStream, first)
	again := mustAppend(t, s, stream, domain.NoStream, first)
	if again.NextVersion != res.NextVersion {
		t.Errorf("re-append NextVersion = %d, want %d", again.NextVersion, res.NextVersion)
	}
	anyAgain := mustAppend(t, s, stream, domain.AnyVersion, first)
	if anyAgain.NextVersion != res.NextVersion {
		t.Errorf("re-append with any NextVersion = %d, want %d", anyAgain.NextVersion, res.NextVersion)
	}
	if got := mustRead(t, s, stream); len(got) != 2 {
		t.Fatalf("stream has %d events after re-appends, want 2", len(got))
	}
	more := events(1, "F")
	mustAppend(t, s, stream, domain.ExactVersion(2), more)
	// A retry of an append that did land, made after a later append, is
	// still recognised as done and adds nothing.
	mustAppend(t, s, stream, domain.ExactVersion(2), more)
	if got := mustRead(t, s, stream); len(got) != 3 {
		t.Fatalf("stream has %d events, want 3", len(got))
	}
}

// testEventIDCase checks that event ids are UUIDs whatever their spelling:
// stored in lower case, and a retry spelling them otherwise is still the same
// append.
func testEventIDCase(t *testing.T, s eventstore.Store, p string) {
	stream := p + "case"
	e := events(1, "E")
	lower := e[0].ID
	e[0].ID = strings.ToUpper(lower)
	res := mustAppend(t, s, stream, domain.NoStream, e)
	e[0].ID = lower
	again := mustAppend(t, s, stream, domain.NoStream, e)
	if again != res {
		t.Errorf("retry in lower case = %+v, want %+v", again, res)
	}
	got := mustRead(t, s, stream)
	if len(got) != 1 || got[0].ID != lower {
		t.Fatalf("stream holds %v, want one event with id %s", got, lower)
	}
}

func testReadStreamPaging(t *testing.T, s eventstore.Store, p string) {
	stream := p + "paged"
	mustAppend(t, s, stream, domain.NoStream, events(10, "E"))
	tests := []struct {
		from     int64
		max      int
		versions []int64
	}{
		{1, 3, []int64{1, 2, 3}},
		{4, 3, []int64{4, 5, 6}},
		{9, 5, []int64{9, 10}},
		{11, 5, nil},
		{0, 2, []int64{1, 2}},
	}
	for _, tc := range tests {
		got, err := s.ReadStream(ctxT(t), stream, tc.from, tc.max)
		if err != nil {
			t.Fatal(err)
		}
		var vs []int64
		for _, e := range got {
			vs = append(vs, e.Version)
		}
		if fmt.Sprint(vs) != fmt.Sprint(tc.versions) {
			t.Errorf("ReadStream(from %d, max %d) versions = %v, want %v", tc.from, tc.max, vs, tc.versions)
		}
	}
}

func testEmptyAndMissing(t *testing.T, s eventstore.Store, p string) {
	got, err := s.ReadStream(ctxT(t), p+"missing", 1, 10)
	if err != nil || len(got) != 0 {
		t.Fatalf("ReadStream(missing) = %d events, %v; want none and no error", len(got), err)
	}
	all, err := s.ReadAll(ctxT(t), 0, 10, eventstore.Filter{StreamPrefixes: []string{p}})
	if err != nil || len(all) != 0 {
		t.Fatalf("ReadAll on an empty prefix = %d events, %v; want none", len(all), err)
	}
	_, err = s.Append(ctxT(t), p+"empty", domain.NoStream, nil)
	if !errors.Is(err, eventstore.ErrInvalidAppend) {
		t.Fatalf("append of no events: err = %v, want ErrInvalidAppend", err)
	}
	if got := mustRead(t, s, p+"empty"); len(got) != 0 {
		t.Fatalf("an empty append created %d events", len(got))
	}
}

func testInvalidAppends(t *testing.T, s eventstore.Store, p string) {
	good := events(1, "E")[0]
	noType := good
	noType.Type = ""
	badID := good
	badID.ID = "not-a-uuid"
	tests := []struct {
		name   string
		stream string
		evs    []domain.Envelope
	}{
		{"empty stream name", "", []domain.Envelope{good}},
		{"event id not a uuid", p + "x", []domain.Envelope{badID}},
		{"empty type", p + "x", []domain.Envelope{noType}},
		{"id repeated in one append", p + "x", []domain.Envelope{good, good}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Append(ctxT(t), tc.stream, domain.AnyVersion, tc.evs)
			if !errors.Is(err, eventstore.ErrInvalidAppend) {
				t.Fatalf("err = %v, want ErrInvalidAppend", err)
			}
		})
	}
	if got := mustRead(t, s, p+"x"); len(got) != 0 {
		t.Fatalf("invalid appends stored %d events", len(got))
	}
}

func testLargeEvent(t *testing.T, s eventstore.Store, p string) {
	stream := p + "big"
	blob := strings.Repeat("abcdefghijklmnop", (1<<20)/16)
	data, _ := json.Marshal(map[string]string{"blob": blob})
	e := events(1, "Big")
	e[0].Data = data
	mustAppend(t, s, stream, domain.NoStream, e)
	got := mustRead(t, s, stream)
	if len(got) != 1 || string(got[0].Data) != string(data) {
		t.Fatalf("1 MiB event did not round-trip (got %d events)", len(got))
	}
}

func testManyEvents(t *testing.T, s eventstore.Store, p string) {
	stream := p + "many-ünï"
	in := events(600, "Many")
	for i := range in {
		in[i].Metadata.TraceParent = fmt.Sprintf("00-%032x-%016x-01", i, i)
	}
	mustAppend(t, s, stream, domain.NoStream, in[:1])
	res := mustAppend(t, s, stream, domain.ExactVersion(1), in[1:])
	if res.NextVersion != 600 {
		t.Fatalf("NextVersion = %d, want 600", res.NextVersion)
	}
	got := mustRead(t, s, stream)
	if len(got) != len(in) {
		t.Fatalf("read %d events, want %d", len(got), len(in))
	}
	for i, e := range got {
		if e.ID != in[i].ID || e.Version != int64(i+1) || e.Type != "Many" || e.SchemaVersion != 1 ||
			string(e.Data) != string(in[i].Data) || e.Metadata != in[i].Metadata || e.Stream != stream {
			t.Fatalf("event %d = %+v, want %+v", i, e, in[i])
		}
		if i > 0 && e.Position <= got[i-1].Position {
			t.Fatalf("event %d: position %d after %d", i, e.Position, got[i-1].Position)
		}
	}
}

func testUnicode(t *testing.T, s eventstore.Store, p string) {
	stream := p + "order-ünïcødé-日本-🚚"
	e := events(1, "Placé")
	e[0].Data = json.RawMessage(`{"name":"Zoë Ångström","city":"東京","note":"📦 ok"}`)
	e[0].Metadata.RequestID = "req-ñ-Ω"
	mustAppend(t, s, stream, domain.NoStream, e)
	got := mustRead(t, s, stream)
	if len(got) != 1 {
		t.Fatalf("read %d events, want 1", len(got))
	}
	var want, have map[string]string
	if err := json.Unmarshal(e[0].Data, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got[0].Data, &have); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(want) != fmt.Sprint(have) || got[0].Type != "Placé" || got[0].Stream != stream || got[0].Metadata.RequestID != "req-ñ-Ω" {
		t.Fatalf("unicode event = %+v (data %s), want it unchanged", got[0], got[0].Data)
	}
}

func testReadAll(t *testing.T, s eventstore.Store, p string) {
	var want []string
	for i := range 5 {
		for _, st := range []string{"a-1", "b-1", "a-2"} {
			e := events(1, "E")
			mustAppend(t, s, p+st, domain.ExactVersion(int64(i)), e)
			want = append(want, p+st+"/"+e[0].ID)
		}
	}
	mustAppend(t, s, "other"+p, domain.NoStream, events(1, "Other"))
	all, err := s.ReadAll(ctxT(t), 0, 0, eventstore.Filter{StreamPrefixes: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var last uint64
	for _, e := range all {
		got = append(got, e.Stream+"/"+e.ID)
		if e.Position <= last {
			t.Errorf("position %d after %d: not increasing", e.Position, last)
		}
		last = e.Position
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("ReadAll order:\n got %v\nwant %v", got, want)
	}
	page, err := s.ReadAll(ctxT(t), all[4].Position, 3, eventstore.Filter{StreamPrefixes: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 3 || page[0].ID != all[5].ID || page[2].ID != all[7].ID {
		t.Fatalf("ReadAll(after event 5, max 3) returned %d events starting %v, want events 6..8", len(page), page)
	}
	only, err := s.ReadAll(ctxT(t), 0, 0, eventstore.Filter{StreamPrefixes: []string{p + "b-"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(only) != 5 {
		t.Fatalf("filter %sb- matched %d events, want 5", p, len(only))
	}
}

func testHead(t *testing.T, s eventstore.Store, p string) {
	r1 := mustAppend(t, s, p+"h", domain.NoStream, events(2, "E"))
	h1, err := s.Head(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if h1 < r1.Position {
		t.Fatalf("Head = %d, before the last append's position %d", h1, r1.Position)
	}
	r2 := mustAppend(t, s, p+"h", domain.ExactVersion(2), events(1, "E"))
	h2, err := s.Head(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if r2.Position <= r1.Position || h2 < r2.Position {
		t.Fatalf("Head = %d after append at %d (previous head %d)", h2, r2.Position, h1)
	}
}

func testSubscribe(t *testing.T, s eventstore.Store, p string) {
	ctx := ctxT(t)
	var want []string
	for i := range 10 {
		e := events(1, "E")
		mustAppend(t, s, fmt.Sprintf("%ss-%d", p, i%3), domain.AnyVersion, e)
		want = append(want, e[0].ID)
	}
	sub, err := s.Subscribe(ctx, 0, eventstore.Filter{StreamPrefixes: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	next := func() domain.Envelope {
		t.Helper()
		nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		e, err := sub.Next(nctx)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		return e
	}
	for i, id := range want {
		if e := next(); e.ID != id {
			t.Fatalf("catch-up event %d = %s, want %s", i, e.ID, id)
		}
	}
	for i := range 5 {
		e := events(1, "Live")
		start := time.Now()
		mustAppend(t, s, p+"live", domain.AnyVersion, e)
		got := next()
		if got.ID != e[0].ID {
			t.Fatalf("live event %d = %s, want %s", i, got.ID, e[0].ID)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("live event took %s to arrive", d)
		}
	}
	// An event waiting when the subscription closes is not delivered.
	mustAppend(t, s, p+"live", domain.AnyVersion, events(1, "AfterClose"))
	sub.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := sub.Next(cctx); err == nil {
		t.Fatal("Next after Close returned an event, want an error")
	}
}

// testGapSafety runs concurrent writers and a concurrent subscriber that
// must see every event exactly once, in strictly increasing position, with
// each stream's events in version order. Positions handed out at insert time
// and committed out of order make a subscriber skip events here.
func testGapSafety(t *testing.T, s eventstore.Store, p string, o Options) {
	ctx := ctxT(t)
	total := o.Writers * o.EventsPerWriter
	sub, err := s.Subscribe(ctx, 0, eventstore.Filter{StreamPrefixes: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	type seen struct {
		ids   map[string]int
		order []domain.Envelope
		err   error
	}
	got := make(chan seen, 1)
	go func() {
		r := seen{ids: make(map[string]int, total)}
		for len(r.order) < total {
			nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			e, err := sub.Next(nctx)
			cancel()
			if err != nil {
				r.err = fmt.Errorf("after %d of %d events: %w", len(r.order), total, err)
				break
			}
			r.ids[e.ID]++
			r.order = append(r.order, e)
		}
		got <- r
	}()

	appended := make(map[string]bool, total)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for w := range o.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range o.EventsPerWriter {
				// Writers share streams so that per-stream order is
				// exercised too.
				stream := fmt.Sprintf("%sg-%d", p, (w*7+i)%40)
				e := events(1, "G")
				if _, err := s.Append(ctx, stream, domain.AnyVersion, e); err != nil {
					t.Errorf("writer %d append %d: %v", w, i, err)
					return
				}
				mu.Lock()
				appended[strings.ToLower(e[0].ID)] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d writers appended %d events in %s", o.Writers, total, time.Since(start).Round(time.Millisecond))
	r := <-got
	if r.err != nil {
		t.Fatalf("subscriber: %v", r.err)
	}
	if len(r.order) != total {
		t.Fatalf("subscriber received %d events, want %d", len(r.order), total)
	}
	var last uint64
	versions := make(map[string]int64)
	for i, e := range r.order {
		if e.Position <= last {
			t.Fatalf("event %d at position %d after %d: global order broken", i, e.Position, last)
		}
		last = e.Position
		if e.Version != versions[e.Stream]+1 {
			t.Fatalf("stream %s: version %d after %d", e.Stream, e.Version, versions[e.Stream])
		}
		versions[e.Stream] = e.Version
	}
	for id, n := range r.ids {
		if n != 1 {
			t.Errorf("event %s delivered %d times", id, n)
		}
		if !appended[id] {
			t.Errorf("event %s delivered but not appended by this test", id)
		}
	}
	for id := range appended {
		if r.ids[id] == 0 {
			t.Errorf("event %s appended but never delivered", id)
		}
	}
}
