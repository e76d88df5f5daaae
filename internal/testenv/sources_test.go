package testenv

import (
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// serveUnix answers HTTP on a unix socket with status for every request,
// as a Docker engine answers /_ping.
func serveUnix(t *testing.T, status int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "engine.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }),
		ReadHeaderTimeout: time.Second,
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return path
}

func TestPingDockerHost(t *testing.T) {
	tests := []struct {
		name string
		host func(t *testing.T) string
		want bool
	}{
		{"engine answers", func(t *testing.T) string { return "unix://" + serveUnix(t, http.StatusOK) }, true},
		{"engine errors", func(t *testing.T) string { return "unix://" + serveUnix(t, http.StatusInternalServerError) }, false},
		{"no socket", func(t *testing.T) string { return "unix://" + filepath.Join(t.TempDir(), "none.sock") }, false},
		{"nothing listening on tcp", func(t *testing.T) string {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			return "tcp://" + addr
		}, false},
		{"unsupported scheme", func(*testing.T) string { return "ssh://user@host" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			if got := pingDockerHost(tt.host(t)); got != tt.want {
				t.Errorf("pingDockerHost = %v, want %v", got, tt.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %s; detection must be quick", d)
			}
		})
	}
}
