package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/orderflow/orderflow/services/internal/coordinator/coordinatortest"
	"github.com/orderflow/orderflow/services/internal/discovery"
)

var (
	// tlsBannerRE finds the HTTPS gateway and the CA to trust in the
	// banner of dev --tls.
	tlsBannerRE = regexp.MustCompile(`gateway\s+(https://localhost:\d+)\s[\s\S]*?export CURL_CA_BUNDLE=(\S+)`)
	// natsURLRE finds the embedded NATS server's URL in the banner.
	natsURLRE = regexp.MustCompile(`(?m)^\s+NATS\s+(nats://\S+)\s*$`)
)

// TestDevTLSAndRegistry: dev --tls serves the gateway over HTTPS with a
// certificate that a client trusting the banner's CA file accepts (and
// one without it refuses), and every process of the stack is registered
// on the stack's NATS as a micro service, which `nats micro ls` lists.
func TestDevTLSAndRegistry(t *testing.T) {
	r := startDev(t, "--tls")
	out := r.out.String()
	m := tlsBannerRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the banner of dev --tls names no https gateway and CA file:\n%s", out)
	}
	gw, caFile := m[1], m[2]
	if want := fmt.Sprintf("https://localhost:%d", r.base); gw != want {
		t.Errorf("gateway %s, want %s", gw, want)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	trusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	for _, path := range []string{"/healthz", "/api/orders"} {
		resp, err := trusting.Get(gw + path)
		if err != nil {
			t.Fatalf("GET %s%s trusting the dev CA: %v", gw, path, err)
		}
		resp.Body.Close()
		if want := map[string]int{"/healthz": http.StatusOK, "/api/orders": http.StatusUnauthorized}[path]; resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	strict := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x509.NewCertPool()}}}
	if resp, err := strict.Get(gw + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("a client without the dev CA accepted the gateway's certificate")
	}
	if resp, err := httpClient.Get(strings.Replace(gw, "https://", "http://", 1) + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("the TLS gateway answered plain HTTP")
		}
	}

	n := natsURLRE.FindStringSubmatch(out)
	if n == nil {
		t.Fatalf("the banner names no NATS URL:\n%s", out)
	}
	nc, err := nats.Connect(n[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	all := append([]string{gatewayName}, services...)
	resolver := discovery.Watch(ctx, nc, all, 200*time.Millisecond)
	coordinatortest.Eventually(t, time.Minute, "every process in the NATS micro registry", func() (bool, string) {
		var missing []string
		for _, svc := range all {
			if len(resolver.Instances(svc)) != 1 {
				missing = append(missing, svc)
			}
		}
		return len(missing) == 0, fmt.Sprintf("missing %v", missing)
	})
	if got := resolver.Instances(gatewayName); !slices.Equal(got, []string{fmt.Sprintf("https://127.0.0.1:%d", r.base)}) {
		t.Errorf("the gateway registered as %v, want its https URL", got)
	}
	if got, want := resolver.Instances("orders"), fmt.Sprintf("http://127.0.0.1:%d", r.base+1); !slices.Equal(got, []string{want}) {
		t.Errorf("orders registered as %v, want %s", got, want)
	}
}
