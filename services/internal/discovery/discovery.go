// Package discovery makes every orderflow process a NATS micro service and
// lets the gateway find the HTTP address of its upstreams through them.
//
// Register announces a process as the micro service "orderflow-<service>"
// with its version, a description, its HTTP base URL in the metadata and two
// endpoints that really answer over NATS: "status" (the process's readiness,
// from the same checks as GET /readyz) and "info" (which process this is).
// The standard tooling reads that registry: `nats micro ls`, `nats micro
// info orderflow-orders` and `nats micro stats` show the services, their
// instances, endpoints and request counts.
//
// Watch keeps, for each named service, the HTTP base URLs of the instances
// that answer micro's PING, asked every period. An instance that stops
// answering (stopped, crashed, cut off from NATS) is gone after one round;
// a new one is there after one round. Registration costs the service a few
// subscriptions and nothing on its request path.
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/orderflow/orderflow/services/internal/httpx"
	"net"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// NamePrefix starts the micro name of every orderflow service, so that the
// project's services stand together in `nats micro ls` and cannot be taken
// for another system's services on a shared NATS.
const NamePrefix = "orderflow-"

// Metadata keys of a registered service, read by `nats micro info` and by
// the Resolver.
const (
	// MetaService is the short service name, e.g. "orders".
	MetaService = "service"
	// MetaHTTP is the HTTP base URL the instance serves on.
	MetaHTTP = "http"
	// MetaBuild is the binary's version as built (e.g. "dev", "v1.2.0"),
	// which the micro version carries only in SemVer form.
	MetaBuild = "build"
)

// DefaultCheckTimeout bounds the readiness checks of one status request,
// the same budget GET /readyz gives them.
const DefaultCheckTimeout = 2 * time.Second

// Status values of a status reply.
const (
	StatusReady    = "ready"
	StatusNotReady = "not_ready"
)

// ErrInvalidInfo is wrapped by Info.Validate errors.
var ErrInvalidInfo = errors.New("discovery: invalid info")

// Check is one readiness check the status endpoint runs: the same checks
// as the service's GET /readyz.
type Check = httpx.Check

// Info describes the process Register announces.
type Info struct {
	// Service is the short name: orders, inventory, shipping, sagas or
	// gateway. The micro name is NamePrefix + Service.
	Service string
	// Version is the binary's version; empty means BuildVersion().
	Version string
	// HTTPURL is the absolute base URL other processes reach this one at,
	// e.g. http://10.0.0.7:8081. A listener's unspecified address
	// (0.0.0.0, [::]) is refused: nobody else can dial it.
	HTTPURL string
	// Description is shown by `nats micro info`; empty means a default.
	Description string
	// Checks are run by the status endpoint, usually the /readyz checks.
	Checks []Check
	// CheckTimeout bounds the checks of one status request; 0 means
	// DefaultCheckTimeout.
	CheckTimeout time.Duration
}

// namePattern is micro's rule for service names, narrowed to what a NATS
// subject token may hold so the name can also name the endpoints' subjects.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Validate reports an Info that Register cannot announce.
func (i Info) Validate() error {
	if !namePattern.MatchString(i.Service) {
		return fmt.Errorf("%w: service %q must be letters, digits, '-' or '_'", ErrInvalidInfo, i.Service)
	}
	if err := validateHTTPURL(i.HTTPURL); err != nil {
		return err
	}
	if i.CheckTimeout < 0 {
		return fmt.Errorf("%w: negative check timeout", ErrInvalidInfo)
	}
	for _, c := range i.Checks {
		if c.Name == "" || c.Probe == nil {
			return fmt.Errorf("%w: a check needs a name and a probe", ErrInvalidInfo)
		}
	}
	return nil
}

func validateHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: http url: %w", ErrInvalidInfo, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: http url %q: scheme must be http or https", ErrInvalidInfo, raw)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%w: http url %q has no host", ErrInvalidInfo, raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		// Request paths are appended to a base URL; a query, fragment or
		// credentials in it would be lost or leaked.
		return fmt.Errorf("%w: http url %q: want scheme://host[:port][/path] only", ErrInvalidInfo, raw)
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("%w: http url %q: %s is a listen address, not one to dial; advertise a reachable host", ErrInvalidInfo, raw, u.Hostname())
	}
	return nil
}

// LocalURL is the base URL of an HTTP listener for processes on the same
// machine: an unspecified listen address (":8081", "[::]:8081") becomes
// 127.0.0.1. Instances that processes on other machines must reach
// advertise a URL with a reachable host instead (given by configuration),
// since a process cannot know which of its names the others can dial.
func LocalURL(tls bool, addr net.Addr) string {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return scheme + "://" + addr.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		// Go's wildcard listener ("[::]" on a dual-stack machine) takes
		// IPv4 too, and 127.0.0.1 exists where IPv6 is switched off.
		host = "127.0.0.1"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// MicroName is the micro service name of a short service name.
func MicroName(service string) string { return NamePrefix + service }

// BuildVersion is the version of the running binary: the main module's
// version as the Go toolchain stamped it, or "dev" for a build from a work
// tree without one.
func BuildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" || bi.Main.Version == "(devel)" {
		return "dev"
	}
	return bi.Main.Version
}

// semVer is the pattern semver.org suggests; micro refuses a service whose
// version does not match it.
var semVer = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// SemVer turns a build version into the SemVer string micro requires:
// Go's "v1.2.3" and pseudo-versions lose their "v"; anything else (such as
// "dev") becomes a pre-release of 0.0.0, and what cannot be one becomes
// "0.0.0-unknown". The build version itself is kept in MetaBuild.
func SemVer(build string) string {
	if v := strings.TrimPrefix(build, "v"); semVer.MatchString(v) {
		return v
	}
	if v := "0.0.0-" + build; semVer.MatchString(v) {
		return v
	}
	return "0.0.0-unknown"
}

// Status is the reply of the status endpoint. A not-ready instance answers
// with micro's error headers (code 503) and this body, so the endpoint's
// error count in `nats micro stats` counts the times it was found not
// ready.
type Status struct {
	Service string   `json:"service"`
	ID      string   `json:"id"`
	Version string   `json:"version"`
	HTTP    string   `json:"http"`
	Status  string   `json:"status"`
	Failed  []string `json:"failed,omitempty"`
}

// About is the reply of the info endpoint: which process this instance is,
// what $SRV.INFO does not say.
type About struct {
	Service     string    `json:"service"`
	ID          string    `json:"id"`
	Version     string    `json:"version"`
	Build       string    `json:"build"`
	HTTP        string    `json:"http"`
	Description string    `json:"description"`
	Host        string    `json:"host"`
	PID         int       `json:"pid"`
	GoVersion   string    `json:"go_version"`
	Started     time.Time `json:"started"`
}

// Subject is the NATS subject of one of a service's endpoints ("status" or
// "info"), e.g. orderflow.orders.status. Every instance answers it, so a
// request with several replies allowed sees each instance's answer.
func Subject(service, endpoint string) string {
	return "orderflow." + service + "." + endpoint
}

// Register announces the process on nc until the returned stop is called or
// nc is closed (a closed connection stops the service, as the process's
// death would). The connection's closed and error handlers must be set
// before Register: micro chains the ones it finds and a later setter would
// replace its own. stop is safe to call more than once.
func Register(nc *nats.Conn, info Info) (stop func() error, err error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil NATS connection", ErrInvalidInfo)
	}
	if err := info.Validate(); err != nil {
		return nil, err
	}
	build := info.Version
	if build == "" {
		build = BuildVersion()
	}
	if info.Description == "" {
		info.Description = "orderflow " + info.Service + " service (HTTP at " + info.HTTPURL + ")"
	}
	if info.CheckTimeout == 0 {
		info.CheckTimeout = DefaultCheckTimeout
	}

	svc, err := micro.AddService(nc, micro.Config{
		Name:        MicroName(info.Service),
		Version:     SemVer(build),
		Description: info.Description,
		Metadata: map[string]string{
			MetaService: info.Service,
			MetaHTTP:    info.HTTPURL,
			MetaBuild:   build,
		},
		// Both endpoints describe the instance that answers, so every
		// instance answers rather than one picked from a queue group.
		QueueGroupDisabled: true,
	})
	if err != nil {
		return nil, fmt.Errorf("discovery: register %s: %w", MicroName(info.Service), err)
	}

	// ctx ends the probes of a status request still running at stop.
	ctx, cancel := context.WithCancel(context.Background())
	stop = func() error {
		cancel()
		if err := svc.Stop(); err != nil {
			return fmt.Errorf("discovery: stop %s: %w", MicroName(info.Service), err)
		}
		return nil
	}

	id := svc.Info().ID
	base := Status{Service: info.Service, ID: id, Version: build, HTTP: info.HTTPURL}
	host, _ := os.Hostname()
	about := About{
		Service: info.Service, ID: id, Version: SemVer(build), Build: build,
		HTTP: info.HTTPURL, Description: info.Description, Host: host,
		PID: os.Getpid(), GoVersion: runtime.Version(), Started: time.Now().UTC(),
	}

	endpoints := []struct {
		name    string
		handler micro.Handler
		meta    map[string]string
	}{
		{"status", statusHandler(ctx, base, info.Checks, info.CheckTimeout),
			map[string]string{"description": "readiness of this instance as JSON; micro error 503 when not ready"}},
		{"info", micro.HandlerFunc(func(req micro.Request) { _ = req.RespondJSON(about) }),
			map[string]string{"description": "which process this instance is, as JSON"}},
	}
	for _, e := range endpoints {
		err := svc.AddEndpoint(e.name, e.handler,
			micro.WithEndpointSubject(Subject(info.Service, e.name)),
			micro.WithEndpointMetadata(e.meta))
		if err != nil {
			cancel()
			return nil, errors.Join(
				fmt.Errorf("discovery: add endpoint %s of %s: %w", e.name, MicroName(info.Service), err),
				svc.Stop())
		}
	}
	// Once Register returns the instance answers discovery: the server
	// has the subscriptions (a request from another connection could
	// otherwise arrive before them). A connection that is away now is
	// not an error: the subscriptions go out when it is back.
	_ = nc.FlushTimeout(registerFlush)
	return stop, nil
}

// registerFlush bounds Register's wait for the server to have its
// subscriptions.
const registerFlush = 5 * time.Second

// statusHandler runs the checks one after another within timeout, as
// GET /readyz does, and answers with a Status.
func statusHandler(ctx context.Context, base Status, checks []Check, timeout time.Duration) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		st := base
		for _, c := range checks {
			if err := c.Probe(cctx); err != nil {
				st.Failed = append(st.Failed, c.Name)
			}
		}
		if len(st.Failed) == 0 {
			st.Status = StatusReady
			_ = req.RespondJSON(st)
			return
		}
		st.Status = StatusNotReady
		body, err := json.Marshal(st)
		if err != nil {
			body = nil
		}
		_ = req.Error("503", "not ready: "+strings.Join(st.Failed, ", ")+" unreachable", body)
	})
}
