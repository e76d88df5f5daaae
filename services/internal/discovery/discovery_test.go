package discovery_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/orderflow/orderflow/internal/testenv"
	"github.com/orderflow/orderflow/services/internal/discovery"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// connect opens a connection to url that the test closes when it ends.
func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// register announces info on nc and stops it when the test ends.
func register(t *testing.T, nc *nats.Conn, info discovery.Info) (stop func() error) {
	t.Helper()
	stop, err := discovery.Register(nc, info)
	if err != nil {
		t.Fatalf("Register(%s): %v", info.Service, err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop %s: %v", info.Service, err)
		}
	})
	return stop
}

// unique returns name with a random suffix: TEST_NATS_URL may point every
// test at one server, so each test uses service names of its own.
func unique(t *testing.T, name string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return name + "-" + hex.EncodeToString(b)
}

// waitFor polls cond until it holds or the deadline passes, then fails the
// test with what describe says about the state last seen.
func waitFor(t *testing.T, within time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, describe())
		}
		<-tick.C
	}
}

// gather sends one request to subject and collects answers until want of
// them have come or the deadline passes, as `nats micro ls` does with
// $SRV.INFO.
func gather(t *testing.T, nc *nats.Conn, subject string, want int, keep func(*nats.Msg) bool) []*nats.Msg {
	t.Helper()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []*nats.Msg
	for len(got) < want {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("%s: %d of %d answers: %v", subject, len(got), want, err)
		}
		if keep(msg) {
			got = append(got, msg)
		}
	}
	return got
}

func TestInfoValidate(t *testing.T) {
	probe := func(context.Context) error { return nil }
	tests := []struct {
		name string
		info discovery.Info
		ok   bool
	}{
		{"valid", discovery.Info{Service: "orders", HTTPURL: "http://127.0.0.1:8081"}, true},
		{"https with path", discovery.Info{Service: "gateway", HTTPURL: "https://gw.example:8443/base"}, true},
		{"with checks", discovery.Info{Service: "sagas", HTTPURL: "http://h:1", Checks: []discovery.Check{{Name: "db", Probe: probe}}}, true},
		{"empty service", discovery.Info{HTTPURL: "http://127.0.0.1:8081"}, false},
		{"dot in service", discovery.Info{Service: "orders.v2", HTTPURL: "http://127.0.0.1:8081"}, false},
		{"space in service", discovery.Info{Service: "or ders", HTTPURL: "http://127.0.0.1:8081"}, false},
		{"no url", discovery.Info{Service: "orders"}, false},
		{"relative url", discovery.Info{Service: "orders", HTTPURL: "/api"}, false},
		{"bare host port", discovery.Info{Service: "orders", HTTPURL: "127.0.0.1:8081"}, false},
		{"other scheme", discovery.Info{Service: "orders", HTTPURL: "nats://127.0.0.1:4222"}, false},
		{"unspecified v4", discovery.Info{Service: "orders", HTTPURL: "http://0.0.0.0:8081"}, false},
		{"unspecified v6", discovery.Info{Service: "orders", HTTPURL: "http://[::]:8081"}, false},
		{"query", discovery.Info{Service: "orders", HTTPURL: "http://h:1/?a=b"}, false},
		{"fragment", discovery.Info{Service: "orders", HTTPURL: "http://h:1/#x"}, false},
		{"credentials", discovery.Info{Service: "orders", HTTPURL: "http://u:p@h:1"}, false},
		{"negative timeout", discovery.Info{Service: "orders", HTTPURL: "http://h:1", CheckTimeout: -time.Second}, false},
		{"check without probe", discovery.Info{Service: "orders", HTTPURL: "http://h:1", Checks: []discovery.Check{{Name: "db"}}}, false},
		{"check without name", discovery.Info{Service: "orders", HTTPURL: "http://h:1", Checks: []discovery.Check{{Probe: probe}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.info.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, discovery.ErrInvalidInfo) {
				t.Fatalf("Validate() = %v, want ErrInvalidInfo", err)
			}
		})
	}
}

func TestRegisterRefusesInvalid(t *testing.T) {
	nc := connect(t, testenv.NATS(t))
	tests := []struct {
		name string
		nc   *nats.Conn
		info discovery.Info
	}{
		{"nil connection", nil, discovery.Info{Service: "orders", HTTPURL: "http://127.0.0.1:1"}},
		{"bad name", nc, discovery.Info{Service: "orders*", HTTPURL: "http://127.0.0.1:1"}},
		{"listen address", nc, discovery.Info{Service: "orders", HTTPURL: "http://0.0.0.0:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stop, err := discovery.Register(tt.nc, tt.info)
			if !errors.Is(err, discovery.ErrInvalidInfo) {
				t.Fatalf("Register() = %v, want ErrInvalidInfo", err)
			}
			if stop != nil {
				t.Fatal("Register returned a stop function with its error")
			}
		})
	}
}

func TestSemVer(t *testing.T) {
	tests := []struct{ build, want string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v0.0.0-20260102150405-abcdef123456", "0.0.0-20260102150405-abcdef123456"},
		{"v0.0.0-20260102150405-abcdef123456+dirty", "0.0.0-20260102150405-abcdef123456+dirty"},
		{"v2.0.0-rc.1", "2.0.0-rc.1"},
		{"dev", "0.0.0-dev"},
		{"(devel)", "0.0.0-unknown"},
		{"", "0.0.0-unknown"},
		{"v1.2", "0.0.0-v1.2"},
		{"v1.2.3 dirty", "0.0.0-unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.build, func(t *testing.T) {
			if got := discovery.SemVer(tt.build); got != tt.want {
				t.Fatalf("SemVer(%q) = %q, want %q", tt.build, got, tt.want)
			}
		})
	}
}

func TestLocalURL(t *testing.T) {
	tests := []struct {
		name string
		tls  bool
		addr net.Addr
		want string
	}{
		{"loopback", false, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8081}, "http://127.0.0.1:8081"},
		{"all v4 interfaces", false, &net.TCPAddr{IP: net.IPv4zero, Port: 8081}, "http://127.0.0.1:8081"},
		{"all interfaces, no ip", true, &net.TCPAddr{Port: 8443}, "https://127.0.0.1:8443"},
		{"all v6 interfaces", false, &net.TCPAddr{IP: net.IPv6unspecified, Port: 8081}, "http://127.0.0.1:8081"},
		{"given host", true, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 8443}, "https://10.0.0.7:8443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := discovery.LocalURL(tt.tls, tt.addr)
			if got != tt.want {
				t.Fatalf("LocalURL(%v) = %q, want %q", tt.addr, got, tt.want)
			}
			if err := (discovery.Info{Service: "orders", HTTPURL: got}).Validate(); err != nil {
				t.Fatalf("LocalURL gave a URL Register refuses: %v", err)
			}
		})
	}
	// A real listener on every interface, as ":0" gives.
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	got := discovery.LocalURL(false, ln.Addr())
	if got != "http://127.0.0.1:"+port {
		t.Fatalf("LocalURL(%v) = %q, want http://127.0.0.1:%s", ln.Addr(), got, port)
	}
	// And the URL reaches that listener.
	conn, err := net.Dial("tcp", strings.TrimPrefix(got, "http://"))
	if err != nil {
		t.Fatalf("dial %s: %v", got, err)
	}
	_ = conn.Close()
}

func TestBuildVersionIsAcceptedByMicro(t *testing.T) {
	v := discovery.BuildVersion()
	if v == "" || v == "(devel)" {
		t.Fatalf("BuildVersion() = %q, want a version or dev", v)
	}
	nc := connect(t, testenv.NATS(t))
	svc, err := micro.AddService(nc, micro.Config{Name: "probe", Version: discovery.SemVer(v)})
	if err != nil {
		t.Fatalf("micro refuses SemVer(%q) = %q: %v", v, discovery.SemVer(v), err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
}

// TestListingShowsEveryService reads the registry the way `nats micro ls`
// and `nats micro info` do: one $SRV.INFO request, every instance answers.
func TestListingShowsEveryService(t *testing.T) {
	url := testenv.NATS(t)
	suffix := unique(t, "")
	type reg struct{ service, httpURL string }
	regs := []reg{
		{"orders" + suffix, "http://127.0.0.1:8081"},
		{"orders" + suffix, "http://127.0.0.1:9081"},
		{"inventory" + suffix, "http://127.0.0.1:8082"},
		{"shipping" + suffix, "http://127.0.0.1:8083"},
		{"sagas" + suffix, "http://127.0.0.1:8084"},
		{"gateway" + suffix, "https://127.0.0.1:8080"},
	}
	ours := map[string]bool{}
	for _, r := range regs {
		// One connection per instance, as one process per instance has.
		register(t, connect(t, url), discovery.Info{Service: r.service, Version: "v1.4.0", HTTPURL: r.httpURL})
		ours[discovery.MicroName(r.service)] = true
	}
	nc := connect(t, url)
	isOurs := func(m *nats.Msg) bool {
		var id micro.ServiceIdentity
		return json.Unmarshal(m.Data, &id) == nil && ours[id.Name]
	}

	byURL := map[string]micro.Info{}
	for _, m := range gather(t, nc, "$SRV.INFO", len(regs), isOurs) {
		var info micro.Info
		if err := json.Unmarshal(m.Data, &info); err != nil {
			t.Fatalf("decode INFO answer: %v", err)
		}
		byURL[info.Metadata[discovery.MetaHTTP]] = info
	}
	for _, r := range regs {
		info, ok := byURL[r.httpURL]
		if !ok {
			t.Fatalf("no INFO answer from %s at %s; got %v", r.service, r.httpURL, byURL)
		}
		if info.Type != micro.InfoResponseType || info.Name != discovery.MicroName(r.service) || info.ID == "" {
			t.Errorf("%s: identity %+v, type %q", r.httpURL, info.ServiceIdentity, info.Type)
		}
		if info.Version != "1.4.0" || info.Metadata[discovery.MetaBuild] != "v1.4.0" {
			t.Errorf("%s: version %q build %q, want 1.4.0 and v1.4.0", r.httpURL, info.Version, info.Metadata[discovery.MetaBuild])
		}
		if info.Metadata[discovery.MetaService] != r.service {
			t.Errorf("%s: metadata service %q, want %q", r.httpURL, info.Metadata[discovery.MetaService], r.service)
		}
		if !strings.Contains(info.Description, r.service) {
			t.Errorf("%s: description %q does not name the service", r.httpURL, info.Description)
		}
		var eps []string
		for _, e := range info.Endpoints {
			eps = append(eps, e.Name+"="+e.Subject)
		}
		slices.Sort(eps)
		want := []string{"info=" + discovery.Subject(r.service, "info"), "status=" + discovery.Subject(r.service, "status")}
		if !slices.Equal(eps, want) {
			t.Errorf("%s: endpoints %v, want %v", r.httpURL, eps, want)
		}
	}

	// One status request reaches both orders instances (no queue group),
	// and each counts it in the stats `nats micro stats` shows.
	orders := regs[0].service
	if got := gather(t, nc, discovery.Subject(orders, "status"), 2, func(*nats.Msg) bool { return true }); len(got) != 2 {
		t.Fatalf("status answers = %d, want 2", len(got))
	}
	statsSubj, err := micro.ControlSubject(micro.StatsVerb, discovery.MicroName(orders), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range gather(t, nc, statsSubj, 2, func(*nats.Msg) bool { return true }) {
		var st micro.Stats
		if err := json.Unmarshal(m.Data, &st); err != nil {
			t.Fatalf("decode STATS answer: %v", err)
		}
		counts := map[string]int{}
		for _, e := range st.Endpoints {
			counts[e.Name] = e.NumRequests
		}
		if counts["status"] != 1 || counts["info"] != 0 {
			t.Errorf("instance %s: requests by endpoint %v, want status 1 info 0", st.ID, counts)
		}
	}
}

func TestStatusEndpoint(t *testing.T) {
	down := errors.New("connection refused")
	ok := func(context.Context) error { return nil }
	failing := func(context.Context) error { return down }
	// hangs stands for a dependency that never answers: only the check
	// timeout ends it.
	hangs := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	tests := []struct {
		name       string
		checks     []discovery.Check
		wantStatus string
		wantFailed []string
	}{
		{"no checks", nil, discovery.StatusReady, nil},
		{"all pass", []discovery.Check{{Name: "database", Probe: ok}, {Name: "nats", Probe: ok}}, discovery.StatusReady, nil},
		{"database down", []discovery.Check{{Name: "database", Probe: failing}, {Name: "nats", Probe: ok}}, discovery.StatusNotReady, []string{"database"}},
		{"both down", []discovery.Check{{Name: "database", Probe: failing}, {Name: "nats", Probe: failing}}, discovery.StatusNotReady, []string{"database", "nats"}},
		{"hanging check", []discovery.Check{{Name: "database", Probe: hangs}}, discovery.StatusNotReady, []string{"database"}},
	}
	nc := connect(t, testenv.NATS(t))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			service := unique(t, "orders")
			register(t, nc, discovery.Info{
				Service: service, Version: "dev", HTTPURL: "http://127.0.0.1:8081",
				Checks: tt.checks, CheckTimeout: 100 * time.Millisecond,
			})
			msg, err := nc.Request(discovery.Subject(service, "status"), nil, 10*time.Second)
			if err != nil {
				t.Fatalf("status request: %v", err)
			}
			var st discovery.Status
			if err := json.Unmarshal(msg.Data, &st); err != nil {
				t.Fatalf("decode %q: %v", msg.Data, err)
			}
			if st.Status != tt.wantStatus || !slices.Equal(st.Failed, tt.wantFailed) {
				t.Fatalf("status %q failed %v, want %q %v", st.Status, st.Failed, tt.wantStatus, tt.wantFailed)
			}
			if st.Service != service || st.ID == "" || st.Version != "dev" || st.HTTP != "http://127.0.0.1:8081" {
				t.Fatalf("identity %+v", st)
			}
			code := msg.Header.Get(micro.ErrorCodeHeader)
			if tt.wantStatus == discovery.StatusReady && code != "" {
				t.Fatalf("ready answer carries error code %q", code)
			}
			if tt.wantStatus == discovery.StatusNotReady && code != "503" {
				t.Fatalf("not-ready answer has error code %q, want 503", code)
			}
		})
	}
}

func TestInfoEndpoint(t *testing.T) {
	nc := connect(t, testenv.NATS(t))
	service := unique(t, "shipping")
	register(t, nc, discovery.Info{Service: service, Version: "v0.3.1", HTTPURL: "http://127.0.0.1:8083", Description: "ships orders"})
	msg, err := nc.Request(discovery.Subject(service, "info"), nil, 10*time.Second)
	if err != nil {
		t.Fatalf("info request: %v", err)
	}
	var a discovery.About
	if err := json.Unmarshal(msg.Data, &a); err != nil {
		t.Fatalf("decode %q: %v", msg.Data, err)
	}
	want := discovery.About{
		Service: service, ID: a.ID, Version: "0.3.1", Build: "v0.3.1",
		HTTP: "http://127.0.0.1:8083", Description: "ships orders",
		Host: a.Host, PID: os.Getpid(), GoVersion: a.GoVersion, Started: a.Started,
	}
	if a != want || a.ID == "" || a.GoVersion == "" || a.Started.IsZero() {
		t.Fatalf("info = %+v", a)
	}
}

// TestStopEndsRegistration checks that a stopped service no longer answers
// its endpoints nor micro's PING, and that stop can be called again.
func TestStopEndsRegistration(t *testing.T) {
	nc := connect(t, testenv.NATS(t))
	service := unique(t, "sagas")
	stop := register(t, nc, discovery.Info{Service: service, HTTPURL: "http://127.0.0.1:8084"})
	if _, err := nc.Request(discovery.Subject(service, "status"), nil, 10*time.Second); err != nil {
		t.Fatalf("status before stop: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	for _, subj := range []string{discovery.Subject(service, "status"), "$SRV.PING." + discovery.MicroName(service)} {
		if _, err := nc.Request(subj, nil, 10*time.Second); !errors.Is(err, nats.ErrNoResponders) {
			t.Errorf("%s after stop: %v, want no responders", subj, err)
		}
	}
}
