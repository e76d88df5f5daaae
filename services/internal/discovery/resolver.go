package discovery

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// DefaultPeriod is how often Watch asks for the live instances when given
// no period.
const DefaultPeriod = 2 * time.Second

// ErrNoInstances is returned by Next when no live instance of the service
// is known.
var ErrNoInstances = errors.New("discovery: no live instance")

// Instance is one live instance of a service as its PING answer told.
type Instance struct {
	ID      string
	HTTPURL string
	Version string
}

// Resolver holds the live instances of a set of services, refreshed by a
// goroutine that Watch starts and its context ends.
type Resolver struct {
	nc       *nats.Conn
	services []string
	every    time.Duration
	// window is how long a round collects PING answers. Half a period
	// leaves the other half between rounds, so a round never overlaps the
	// next and a vanished instance is gone within one period of the round
	// that last saw it.
	window time.Duration
	log    *slog.Logger

	mu        sync.RWMutex
	instances map[string][]Instance // by service, sorted by HTTPURL

	rr map[string]*atomic.Uint64 // round-robin cursor by service; fixed keys
	// applied and skipped count the rounds, for Stats.
	applied, skipped atomic.Uint64
	ready            chan struct{}
	done             chan struct{}
}

// Watch starts resolving services (short names such as "orders") on nc:
// every period (DefaultPeriod when every <= 0) it sends micro's PING to
// each service's $SRV.PING.orderflow-<service> subject and keeps the HTTP
// URLs of the instances that answer within half a period. The first round
// runs at once; Ready is closed when it has ended. The goroutine stops when
// ctx is done; Done is closed then.
//
// A round in which nc is not connected, or the request cannot be sent,
// keeps the instances of the last good round: the resolver being cut off
// from NATS says nothing about the upstreams, which the gateway still
// reaches over HTTP.
func Watch(ctx context.Context, nc *nats.Conn, services []string, every time.Duration) *Resolver {
	if every <= 0 {
		every = DefaultPeriod
	}
	log := slog.Default().With("component", "discovery")
	// A name Register would refuse has no instance, and its PING subject
	// could be malformed and fail every round's publish.
	valid := slices.DeleteFunc(slices.Clone(services), func(s string) bool {
		if !namePattern.MatchString(s) {
			log.Warn("not a service name; not resolved", "service", s)
			return true
		}
		return false
	})
	r := &Resolver{
		nc:        nc,
		services:  slices.Compact(slices.Sorted(slices.Values(valid))),
		every:     every,
		window:    every / 2,
		log:       log,
		instances: make(map[string][]Instance),
		rr:        make(map[string]*atomic.Uint64),
		ready:     make(chan struct{}),
		done:      make(chan struct{}),
	}
	for _, s := range r.services {
		r.rr[s] = new(atomic.Uint64)
	}
	go r.run(ctx)
	return r
}

// Instances returns the HTTP base URLs of the live instances of service,
// sorted, without duplicates; nil when none is known.
func (r *Resolver) Instances(service string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var urls []string
	for _, in := range r.instances[service] {
		if len(urls) == 0 || urls[len(urls)-1] != in.HTTPURL {
			urls = append(urls, in.HTTPURL)
		}
	}
	return urls
}

// Live returns the live instances of service with their ids and versions,
// sorted by HTTP URL.
func (r *Resolver) Live(service string) []Instance {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.instances[service])
}

// Next returns the HTTP base URL of one live instance of service, taking
// them in turn, or an error wrapping ErrNoInstances.
func (r *Resolver) Next(service string) (string, error) {
	urls := r.Instances(service)
	cursor, ok := r.rr[service]
	if len(urls) == 0 || !ok {
		return "", fmt.Errorf("%w of %s", ErrNoInstances, service)
	}
	n := cursor.Add(1) - 1
	return urls[n%uint64(len(urls))], nil
}

// Stats counts the resolver's rounds since Watch.
type Stats struct {
	// Applied rounds replaced the instances with their answers.
	Applied uint64
	// Skipped rounds kept the last instances because the resolver could
	// not ask (not connected, a publish failed) or was stopped mid-round.
	Skipped uint64
}

// Stats returns the round counts; a gateway can export them as metrics,
// and a growing Skipped says the instances served are getting stale.
func (r *Resolver) Stats() Stats {
	return Stats{Applied: r.applied.Load(), Skipped: r.skipped.Load()}
}

// Ready is closed once the first round has ended, so a caller can wait for
// the first answers before routing.
func (r *Resolver) Ready() <-chan struct{} { return r.ready }

// Done is closed when the goroutine Watch started has returned.
func (r *Resolver) Done() <-chan struct{} { return r.done }

func (r *Resolver) run(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.every)
	defer t.Stop()
	first := true
	for {
		if r.refresh(ctx) {
			r.applied.Add(1)
		} else {
			r.skipped.Add(1)
		}
		if first {
			close(r.ready)
			first = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh runs one round: one PING per service, all answers collected on
// one inbox for the window, then every service's instances replaced at
// once. It reports whether it replaced them.
func (r *Resolver) refresh(ctx context.Context) bool {
	if ctx.Err() != nil || r.nc.Status() != nats.CONNECTED {
		return false
	}
	inbox := r.nc.NewInbox()
	sub, err := r.nc.SubscribeSync(inbox + ".*")
	if err != nil {
		r.log.Warn("discovery round skipped", "error", err)
		return false
	}
	defer func() { _ = sub.Unsubscribe() }()
	for i, s := range r.services {
		subj, err := micro.ControlSubject(micro.PingVerb, MicroName(s), "")
		if err == nil {
			err = r.nc.PublishRequest(subj, inbox+"."+strconv.Itoa(i), nil)
		}
		if err != nil {
			r.log.Warn("discovery round skipped", "error", err)
			return false
		}
	}

	found := make(map[string]map[string]Instance, len(r.services))
	wctx, cancel := context.WithTimeout(ctx, r.window)
	defer cancel()
	for {
		msg, err := sub.NextMsgWithContext(wctx)
		if errors.Is(err, nats.ErrNoResponders) {
			// The server's answer for a service with no instance at
			// all; the other services' answers still follow.
			continue
		}
		if err != nil {
			break
		}
		i, err := strconv.Atoi(msg.Subject[len(inbox)+1:])
		if err != nil || i < 0 || i >= len(r.services) {
			continue
		}
		service := r.services[i]
		in, ok := parsePing(service, msg.Data)
		if !ok {
			continue
		}
		if found[service] == nil {
			found[service] = make(map[string]Instance)
		}
		found[service][in.ID] = in
	}
	// A round cut short by ctx saw only part of the answers; it must not
	// drop instances that would have answered.
	if ctx.Err() != nil {
		return false
	}
	// The round is only as good as the connection it ran on: a
	// disconnect during the window would drop every instance.
	if r.nc.Status() != nats.CONNECTED {
		return false
	}
	r.replace(found)
	return true
}

// parsePing decodes a PING answer for service; an answer without a usable
// HTTP URL names no instance the gateway could route to.
func parsePing(service string, data []byte) (Instance, bool) {
	var p micro.Ping
	if err := json.Unmarshal(data, &p); err != nil {
		return Instance{}, false
	}
	if p.Type != micro.PingResponseType || p.Name != MicroName(service) || p.ID == "" {
		return Instance{}, false
	}
	u := p.Metadata[MetaHTTP]
	if validateHTTPURL(u) != nil {
		return Instance{}, false
	}
	return Instance{ID: p.ID, HTTPURL: u, Version: p.Version}, true
}

// replace installs a round's instances and logs what changed.
func (r *Resolver) replace(found map[string]map[string]Instance) {
	next := make(map[string][]Instance, len(found))
	for service, byID := range found {
		list := make([]Instance, 0, len(byID))
		for _, in := range byID {
			list = append(list, in)
		}
		slices.SortFunc(list, func(a, b Instance) int {
			if c := cmp.Compare(a.HTTPURL, b.HTTPURL); c != 0 {
				return c
			}
			return cmp.Compare(a.ID, b.ID)
		})
		next[service] = list
	}

	r.mu.Lock()
	prev := r.instances
	r.instances = next
	r.mu.Unlock()

	for _, service := range r.services {
		for _, in := range next[service] {
			if !slices.ContainsFunc(prev[service], func(p Instance) bool { return p.ID == in.ID }) {
				r.log.Info("upstream instance appeared", "service", service, "id", in.ID, "url", in.HTTPURL, "version", in.Version)
			}
		}
		for _, in := range prev[service] {
			if !slices.ContainsFunc(next[service], func(n Instance) bool { return n.ID == in.ID }) {
				r.log.Info("upstream instance gone", "service", service, "id", in.ID, "url", in.HTTPURL)
			}
		}
	}
}
