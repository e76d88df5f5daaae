package httpx

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
)

// TLSFiles names a certificate chain and its private key, both PEM. The
// zero TLSFiles means plain HTTP.
type TLSFiles struct {
	Cert, Key string
}

// Enabled reports whether TLS is configured.
func (f TLSFiles) Enabled() bool { return f.Cert != "" || f.Key != "" }

// Validate reports a half-configured TLS (one file without the other).
func (f TLSFiles) Validate() error {
	if (f.Cert == "") != (f.Key == "") {
		return errors.New("TLS needs both a certificate and a key file")
	}
	return nil
}

// Listen listens on addr, serving TLS with f's certificate when f is
// enabled (the certificate is loaded once, here: a bad file fails the
// start, not the first handshake).
func Listen(addr string, f TLSFiles) (net.Listener, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	var cfg *tls.Config
	if f.Enabled() {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("load TLS certificate: %w", err)
		}
		cfg = &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			// http.Server.Serve on a TLS listener speaks HTTP/1.1 only;
			// offering h2 here would strand the clients that pick it.
			NextProtos: []string{"http/1.1"},
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	return ln, nil
}
