package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orderflow/orderflow/services/internal/httpx"
)

// Defaults of the live updates (GET /admin/updates).
const (
	defaultUpdatesInterval = time.Second
	defaultUpdatesPing     = 15 * time.Second
)

// streams tracks the GET /admin/updates streams: how many are open (the
// orderflow_gateway_update_streams gauge; a stream whose client left
// must not keep polling), and the end of them all when the server shuts
// down (http.Server.Shutdown waits for no stream, which never ends by
// itself).
type streams struct {
	open atomic.Int64
	once sync.Once
	done chan struct{}
}

func newStreams() *streams { return &streams{done: make(chan struct{})} }

// end ends every stream, now and later.
func (s *streams) end() { s.once.Do(func() { close(s.done) }) }

// updates answers GET /admin/updates: server-sent events for the
// operator console. It polls the upstreams about once a second and
// sends an event only for what changed since it last sent one of that
// kind (and everything at once on connect):
//
//	event: sagas        the JSON of GET /admin/sagas/stats
//	event: projections  the JSON of GET /admin/projections (merged)
//	event: saga         {"saga_id", "status", "version"} of a saga that
//	                    changed (see changedSagas)
//
// and a ": ping" comment every 15 s, so that proxies and the
// client see the stream alive. It ends when the client goes away or the
// gateway closes. An upstream that does not answer sends nothing for that
// round; the page keeps what it has.
func (g *Gateway) updates(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// The server's write timeout bounds ordinary answers; a stream
	// lives as long as its client.
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !isUnsupported(err) {
		httpx.WriteError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", httpx.CacheNoStore)
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	g.streams.open.Add(1)
	defer g.streams.open.Add(-1)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		// Shutdown and Close end the streams too.
		select {
		case <-g.streams.done:
			cancel()
		case <-ctx.Done():
		}
	}()

	last := map[string][]byte{}
	send := func(event string, data []byte) error {
		// The figures are sent when they change; a saga event is
		// itself a change.
		if event != "saga" && bytes.Equal(last[event], data) {
			return nil
		}
		last[event] = data
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data); err != nil {
			return err
		}
		return rc.Flush()
	}
	poll := time.NewTicker(defaultUpdatesInterval)
	defer poll.Stop()
	ping := time.NewTicker(defaultUpdatesPing)
	defer ping.Stop()
	var watch sagaWatch
	for {
		for _, u := range g.pollUpdates(ctx, &watch) {
			if err := send(u.event, u.data); err != nil {
				return // the client went away
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
			// Wait for the next poll.
			select {
			case <-ctx.Done():
				return
			case <-poll.C:
			}
		case <-poll.C:
		}
	}
}

type update struct {
	event string
	data  []byte
}

// pollUpdates asks the upstreams for the console's figures, within five
// seconds (a service that hangs costs one slow round, not a stuck
// stream), and returns what answered, compacted so that equal figures compare equal.
func (g *Gateway) pollUpdates(ctx context.Context, watch *sagaWatch) []update {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var (
		out   []update
		stats json.RawMessage
	)
	if err := g.getJSON(ctx, Sagas, "/admin/sagas/stats", &stats); err == nil {
		if b, err := compact(stats); err == nil {
			out = append(out, update{"sagas", b})
		}
	}
	if lists, err := g.projectionLists(ctx); err == nil {
		items := []json.RawMessage{}
		for _, l := range lists {
			items = append(items, l...)
		}
		if b, err := json.Marshal(struct {
			Items []json.RawMessage `json:"items"`
		}{items}); err == nil {
			if b, err := compact(b); err == nil {
				out = append(out, update{"projections", b})
			}
		}
	}
	return append(out, g.changedSagas(ctx, watch)...)
}

// compact removes the insignificant white space of a JSON document: an
// event's data is one line.
func compact(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// isUnsupported reports whether err is the ResponseController's "not
// supported" (a test's recorder, say).
func isUnsupported(err error) bool { return errors.Is(err, http.ErrNotSupported) }

// Bounds of the per-saga updates.
const (
	// watchedSagas is how many of the newest sagas, and of the failed
	// ones, a stream compares from one poll to the next.
	watchedSagas = 50
	// maxSagaUpdates bounds the sagas one poll reports (each costs a read
	// of the saga for its version).
	maxSagaUpdates = 20
)

// sagaWatch is what one stream last saw of the sagas it watches: the
// newest ones and the failed ones (an operator's retry takes a saga out
// of those), each as its list item, so that any change of status or step
// shows.
type sagaWatch struct {
	seen   map[string]string // saga id -> its list item, compacted
	failed map[string]bool
	primed bool
}

// changedSagas reports, as saga events {"saga_id", "status", "version"},
// the watched sagas that are new or changed since the last poll, and the
// failed ones no longer failed. The first poll only primes the watch: on
// connect the page reads its lists itself.
func (g *Gateway) changedSagas(ctx context.Context, w *sagaWatch) []update {
	type page struct {
		Items []json.RawMessage `json:"items"`
	}
	var recent, failed page
	if g.getJSON(ctx, Sagas, fmt.Sprintf("/api/sagas?limit=%d", watchedSagas), &recent) != nil ||
		g.getJSON(ctx, Sagas, fmt.Sprintf("/api/sagas?status=failed&limit=%d", watchedSagas), &failed) != nil {
		return nil // next round
	}
	seen := make(map[string]string, len(recent.Items)+len(failed.Items))
	nowFailed := make(map[string]bool, len(failed.Items))
	for i, raw := range append(recent.Items, failed.Items...) {
		var it struct {
			SagaID string `json:"saga_id"`
		}
		b, err := compact(raw)
		if err != nil || json.Unmarshal(raw, &it) != nil || it.SagaID == "" {
			continue
		}
		seen[it.SagaID] = string(b)
		if i >= len(recent.Items) {
			nowFailed[it.SagaID] = true
		}
	}
	var changed []string
	for id, item := range seen {
		if w.seen[id] != item {
			changed = append(changed, id)
		}
	}
	for id := range w.failed {
		if !nowFailed[id] && !slices.Contains(changed, id) {
			changed = append(changed, id)
		}
	}
	primed := w.primed
	w.seen, w.failed, w.primed = seen, nowFailed, true
	if !primed || len(changed) == 0 {
		return nil
	}
	slices.Sort(changed)
	out := make([]update, 0, min(len(changed), maxSagaUpdates))
	for _, id := range changed[:min(len(changed), maxSagaUpdates)] {
		status, version, err := g.sagaVersion(ctx, id)
		if err != nil {
			delete(w.seen, id) // reported next round
			continue
		}
		b, err := json.Marshal(struct {
			SagaID  string `json:"saga_id"`
			Status  string `json:"status"`
			Version int64  `json:"version"`
		}{id, status, version})
		if err == nil {
			out = append(out, update{"saga", b})
		}
	}
	return out
}

// sagaVersion reads one saga's status and the version of its stream (its
// ETag).
func (g *Gateway) sagaVersion(ctx context.Context, id string) (string, int64, error) {
	up := g.upstreams[Sagas]
	h := http.Header{"Accept": {"application/json"}}
	if rid := httpx.RequestIDFrom(ctx); rid != "" {
		h.Set(httpx.RequestIDHeader, rid)
	}
	res, err := up.do(ctx, call{method: http.MethodGet, target: "/api/sagas/" + url.PathEscape(id), header: h})
	if err != nil {
		return "", 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("GET saga %s: %s", id, res.Status)
	}
	var v struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 4<<20)).Decode(&v); err != nil {
		return "", 0, fmt.Errorf("GET saga %s: %w", id, err)
	}
	version, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(res.Header.Get("ETag"), "W/"), `"`), 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("GET saga %s: ETag %q: %w", id, res.Header.Get("ETag"), err)
	}
	return v.Status, version, nil
}
