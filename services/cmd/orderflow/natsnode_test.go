package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/natsembed"
)

func TestNATSNodeConfig(t *testing.T) {
	tests := []struct {
		name string
		opts natsNodeOptions
		want natsembed.Config // checked when wantErr is false
		// wantErr is set for a usage error, whose message holds errHas.
		wantErr bool
		errHas  string
	}{
		{
			name: "a node of three",
			opts: natsNodeOptions{name: "nats-1", addr: "127.0.0.1:4222", clusterAddr: "127.0.0.1:6222",
				routes: "nats://127.0.0.1:6223, nats://127.0.0.1:6224,", clusterName: "c", storeDir: "/s"},
			want: natsembed.Config{Host: "127.0.0.1", Port: 4222, StoreDir: "/s", Log: true, Cluster: natsembed.ClusterConfig{
				Name: "c", ServerName: "nats-1", Host: "127.0.0.1", Port: 6222,
				Routes: []string{"nats://127.0.0.1:6223", "nats://127.0.0.1:6224"}}},
		},
		{name: "no name", opts: natsNodeOptions{routes: "nats://127.0.0.1:3", addr: "127.0.0.1:1", clusterAddr: "127.0.0.1:2", clusterName: "c", storeDir: "/s"}, wantErr: true, errHas: "--name"},
		{name: "no store", opts: natsNodeOptions{routes: "nats://127.0.0.1:3", name: "n", addr: "127.0.0.1:1", clusterAddr: "127.0.0.1:2", clusterName: "c"}, wantErr: true, errHas: "--store-dir"},
		{name: "no cluster name", opts: natsNodeOptions{routes: "nats://127.0.0.1:3", name: "n", addr: "127.0.0.1:1", clusterAddr: "127.0.0.1:2", storeDir: "/s"}, wantErr: true, errHas: "without a cluster name"},
		{name: "addr without port", opts: natsNodeOptions{routes: "nats://127.0.0.1:3", name: "n", addr: "127.0.0.1", clusterAddr: "127.0.0.1:2", clusterName: "c", storeDir: "/s"}, wantErr: true, errHas: "--addr"},
		{name: "no routes", opts: natsNodeOptions{name: "n", addr: "127.0.0.1:1", clusterAddr: "127.0.0.1:2", clusterName: "c", storeDir: "/s"}, wantErr: true, errHas: "needs routes"},
		{name: "cluster port 0", opts: natsNodeOptions{routes: "nats://127.0.0.1:3", name: "n", addr: "127.0.0.1:1", clusterAddr: "127.0.0.1:0", clusterName: "c", storeDir: "/s"}, wantErr: true, errHas: "--cluster-addr"},
		{name: "bad route", opts: natsNodeOptions{name: "n", addr: "127.0.0.1:1", clusterAddr: "127.0.0.1:2", routes: "127.0.0.1:3", clusterName: "c", storeDir: "/s"}, wantErr: true, errHas: "is not nats://host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opts.config()
			if tt.wantErr {
				var ue usageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("config() = %+v, %v; want a usage error about %q", got, err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("config() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

var natsNodeReadyRE = regexp.MustCompile(regexp.QuoteMeta(natsNodeReady) + `: n1 clients (nats://127\.0\.0\.1:\d+) cluster nats://127\.0\.0\.1:(\d+) store (\S+)`)

// The command serves NATS clients on its ports, says so in one line, and
// stops cleanly on SIGTERM, keeping its store. Its one peer never comes:
// clients get in all the same, though JetStream waits for a quorum.
func TestNATSNodeRunsUntilSIGTERM(t *testing.T) {
	ports, err := freePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(t.TempDir(), "n1")
	out := &syncBuffer{}
	cmd := exec.Command(binary(t), "nats-node", "--name", "n1",
		"--addr", "127.0.0.1:"+strconv.Itoa(ports[0]), "--cluster-addr", "127.0.0.1:"+strconv.Itoa(ports[1]),
		"--cluster-name", "solo", "--store-dir", store, "--routes", "nats://127.0.0.1:"+strconv.Itoa(ports[2]))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("nats-node output:\n%s", out.String())
		}
	})

	deadline := time.After(time.Minute)
	var m []string
	for m = natsNodeReadyRE.FindStringSubmatch(out.String()); m == nil; m = natsNodeReadyRE.FindStringSubmatch(out.String()) {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("nats-node exited (%v) before its ready line", err)
		case <-deadline:
			t.Fatal("no ready line within a minute")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if want := "nats://127.0.0.1:" + strconv.Itoa(ports[0]); m[1] != want {
		t.Errorf("clients on %s, want %s", m[1], want)
	}
	if m[2] != strconv.Itoa(ports[1]) || m[3] != store {
		t.Errorf("cluster port %s store %s, want %d %s", m[2], m[3], ports[1], store)
	}
	if err := natsProbe(m[1])(t.Context()); err != nil {
		t.Fatalf("no NATS client gets in: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("nats-node after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("nats-node still runs 30s after SIGTERM")
	}
	if !portFree(ports[0]) || !portFree(ports[1]) {
		t.Errorf("ports %v still bound after exit", ports)
	}
	if _, err := os.Stat(filepath.Join(store, "jetstream")); err != nil {
		t.Errorf("the store is not kept: %v", err)
	}
}
