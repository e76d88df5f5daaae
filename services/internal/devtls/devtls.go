// Package devtls makes the throw-away certificate authority and server
// certificate of `orderflow dev --tls`: a CA that exists only for one run
// of the dev stack, and a certificate it signs for the names the stack
// listens on (localhost, 127.0.0.1, ::1). Nothing here is meant for
// production, where certificates come from the operator.
package devtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files are the PEM files Generate writes.
type Files struct {
	// CA is the certificate clients trust (curl --cacert CA).
	CA string
	// Cert and Key are the server's certificate chain and private key
	// (serve --tls-cert Cert --tls-key Key).
	Cert, Key string
}

// Validity is how long the generated certificates are valid: long enough
// for a dev session, short enough that a leaked one soon means nothing.
const Validity = 7 * 24 * time.Hour

// Generate creates a new CA and a server certificate for localhost,
// 127.0.0.1 and ::1 (plus any extra host names or IPs in hosts), and
// writes them to dir (created if needed; the key is readable only by its
// owner).
func Generate(dir string, hosts ...string) (Files, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("devtls: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, fmt.Errorf("devtls: CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"orderflow dev"}, CommonName: "orderflow dev CA " + now.UTC().Format(time.RFC3339)},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return Files{}, fmt.Errorf("devtls: CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return Files{}, fmt.Errorf("devtls: CA certificate: %w", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, fmt.Errorf("devtls: server key: %w", err)
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"orderflow dev"}, CommonName: "localhost"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			leaf.IPAddresses = append(leaf.IPAddresses, ip)
		} else if h != "" {
			leaf.DNSNames = append(leaf.DNSNames, h)
		}
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return Files{}, fmt.Errorf("devtls: server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Files{}, fmt.Errorf("devtls: server key: %w", err)
	}

	f := Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}
	err = errors.Join(
		writePEM(f.CA, 0o644, pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		writePEM(f.Cert, 0o644, pem.Block{Type: "CERTIFICATE", Bytes: leafDER}, pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		writePEM(f.Key, 0o600, pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	)
	if err != nil {
		return Files{}, fmt.Errorf("devtls: %w", err)
	}
	return f, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

func writePEM(path string, mode os.FileMode, blocks ...pem.Block) error {
	var out []byte
	for _, b := range blocks {
		out = append(out, pem.EncodeToMemory(&b)...)
	}
	return os.WriteFile(path, out, mode)
}
