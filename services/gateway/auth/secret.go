package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// SecretEnv names the environment variable that, when set, is the dev
// stack's HS256 secret (see DevSecret).
const SecretEnv = "ORDERFLOW_JWT_SECRET"

// devSecretFile is the dev secret's file under the user's configuration
// directory.
var devSecretFile = filepath.Join("orderflow", "dev-jwt-secret")

// Sign returns an HS256 token for p, valid from now for ttl, signed with
// secret (at least MinSecretLength bytes): what `orderflow token` prints
// and tests use. It carries sub, role, iat and exp.
func Sign(secret []byte, p Principal, ttl time.Duration) (string, error) {
	if len(secret) < MinSecretLength {
		return "", fmt.Errorf("auth: the HS256 secret has %d bytes, want at least %d", len(secret), MinSecretLength)
	}
	if err := p.Validate(); err != nil {
		var ae *Error
		if errors.As(err, &ae) {
			return "", fmt.Errorf("auth: no token for subject %q with role %q: %s", p.Subject, p.Role, ae.Reason)
		}
		return "", err
	}
	if ttl <= 0 {
		return "", fmt.Errorf("auth: token lifetime %s is not positive", ttl)
	}
	now := time.Now()
	c := claims{
		Role: p.Role,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   p.Subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: sign token: %w", err)
	}
	return token, nil
}

// DevSecret returns the dev stack's HS256 secret, so that `orderflow dev`
// and `orderflow token` agree without any configuration: the value of
// ORDERFLOW_JWT_SECRET if it is set and not empty (without surrounding
// white space), else the secret kept in
// $XDG_CONFIG_HOME/orderflow/dev-jwt-secret (~/.config/... when
// XDG_CONFIG_HOME is unset), which the first caller creates: 32 random
// bytes, written base64url-encoded with mode 0600. The secret is the
// bytes of that text (as for the variable), so
// ORDERFLOW_JWT_SECRET=$(cat that-file) names the same secret.
func DevSecret() ([]byte, error) {
	if v := os.Getenv(SecretEnv); v != "" {
		secret := bytes.TrimSpace([]byte(v))
		if len(secret) < MinSecretLength {
			return nil, fmt.Errorf("auth: %s has %d bytes, want at least %d", SecretEnv, len(secret), MinSecretLength)
		}
		return secret, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return nil, fmt.Errorf("auth: dev secret: %w", err)
	}
	path := filepath.Join(dir, devSecretFile)
	secret, err := ReadSecretFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return secret, err
	}
	if err := createSecretFile(path); err != nil {
		return nil, err
	}
	return ReadSecretFile(path)
}

// ReadSecretFile reads an HS256 secret from path: the file's text without
// surrounding white space (a trailing newline is not part of it), at
// least MinSecretLength bytes. A missing file is an error wrapping
// fs.ErrNotExist.
func ReadSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: read secret: %w", err)
	}
	secret := bytes.TrimSpace(b)
	if len(secret) < MinSecretLength {
		return nil, fmt.Errorf("auth: the secret in %s has %d bytes, want at least %d (delete a dev secret file to have a new one made)",
			path, len(secret), MinSecretLength)
	}
	return secret, nil
}

// createSecretFile writes a new random secret to path unless a file is
// there already. Two processes starting at once (`orderflow dev` and
// `orderflow token`) must end up with the same secret: each writes a
// whole file under a temporary name and links it into place, which fails
// for the second, who then reads the first one's.
func createSecretFile(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("auth: dev secret: %w", err)
	}
	raw := make([]byte, MinSecretLength)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Errorf("auth: dev secret: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".dev-jwt-secret-*")
	if err != nil {
		return fmt.Errorf("auth: dev secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600 already; say so for the reader.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("auth: dev secret: %w", err)
	}
	if _, err := tmp.WriteString(base64.RawURLEncoding.EncodeToString(raw) + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("auth: dev secret: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("auth: dev secret: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("auth: dev secret: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("auth: dev secret: %w", err)
	}
	return nil
}
