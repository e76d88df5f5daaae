package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Reconnection pacing. A cluster client moves to another node at once; the
// wait only applies to cycling through servers that all refused, and the
// jitter keeps a fleet of services from reconnecting in lockstep.
const (
	reconnectWait   = time.Second
	reconnectJitter = 500 * time.Millisecond
	// publishAckTimeout fails an async publish whose ack never comes, so
	// that no caller waits on a future forever.
	publishAckTimeout = 30 * time.Second
)

// ErrClosed is returned by WaitConnected when the connection was closed.
var ErrClosed = errors.New("natsbus: connection closed")

// Connect opens a connection named name (shown by the server's monitoring)
// that reconnects forever and logs its state changes through slog.Default.
// It waits until the first connection succeeds or ctx is done; a server
// that is down at start-up is retried, not an error.
func Connect(ctx context.Context, serverURL, name string) (*nats.Conn, jetstream.JetStream, error) {
	log := slog.Default().With("nats_client", name)
	shown := redact(serverURL)
	nc, err := nats.Connect(serverURL,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(reconnectWait),
		nats.ReconnectJitter(reconnectJitter, reconnectJitter),
		nats.ConnectHandler(func(c *nats.Conn) {
			log.Info("nats connected", "server", c.ConnectedUrlRedacted())
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			} else {
				log.Info("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", "server", c.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(*nats.Conn) { log.Info("nats connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("nats asynchronous error", "subject", subject, "error", err)
		}),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("nats connect %s: %w", shown, err)
	}
	if err := WaitConnected(ctx, nc); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("nats connect %s: %w", shown, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishAckTimeout))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream on %s: %w", shown, err)
	}
	return nc, js, nil
}

// WaitConnected blocks until nc is connected, ctx is done or nc is closed.
func WaitConnected(ctx context.Context, nc *nats.Conn) error {
	ch := nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer nc.RemoveStatusListener(ch)
	// Checked after registering, so a change in between is not missed.
	for {
		switch {
		case nc.IsConnected():
			return nil
		case nc.IsClosed():
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// redact hides passwords and tokens in a server URL list for messages.
func redact(serverURL string) string {
	parts := strings.Split(serverURL, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			continue
		}
		if _, hasPassword := u.User.Password(); !hasPassword {
			// A lone user part is a token.
			u.User = url.User("redacted")
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ",")
}
