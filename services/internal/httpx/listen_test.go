package httpx_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/orderflow/orderflow/services/internal/devtls"
	"github.com/orderflow/orderflow/services/internal/httpx"
)

func TestListen(t *testing.T) {
	dir := t.TempDir()
	files, err := devtls.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []httpx.TLSFiles{
		{Cert: files.Cert},
		{Key: files.Key},
		{Cert: filepath.Join(dir, "missing.pem"), Key: files.Key},
		{Cert: files.Key, Key: files.Cert},
	} {
		if ln, err := httpx.Listen("127.0.0.1:0", bad); err == nil {
			ln.Close()
			t.Errorf("Listen with %+v: no error", bad)
		}
	}

	ln, err := httpx.Listen("127.0.0.1:0", httpx.TLSFiles{Cert: files.Cert, Key: files.Key})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(httpx.Healthz)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	ca, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
	resp, err := hc.Get("https://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatalf("HTTPS with the CA trusted: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Errorf("status %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}

	plain, err := httpx.Listen("127.0.0.1:0", httpx.TLSFiles{})
	if err != nil {
		t.Fatal(err)
	}
	plain.Close()
}
