package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/orderflow/orderflow/services/gateway/auth"
)

// TestTokenCommand runs `orderflow token` and checks that what it prints
// verifies with the secret the dev stack's gateway would use.
func TestTokenCommand(t *testing.T) {
	config := t.TempDir()
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(strings.Repeat("s", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The dev secret is made by the first run, in config: the test's
	// DevSecret reads that one.
	t.Setenv("XDG_CONFIG_HOME", config)
	t.Setenv(auth.SecretEnv, "")

	tests := []struct {
		name   string
		args   []string
		secret func(t *testing.T) []byte
		want   auth.Principal
		ttl    time.Duration
	}{
		{"customer", []string{"--role", "customer", "--sub", "c-42"}, devSecret,
			auth.Principal{Subject: "c-42", Role: auth.RoleCustomer}, 24 * time.Hour},
		{"admin", []string{"--role", "admin"}, devSecret,
			auth.Principal{Subject: "admin", Role: auth.RoleAdmin}, 24 * time.Hour},
		{"admin with a subject and lifetime", []string{"--role", "admin", "--sub", "ops@example.test", "--ttl", "90m"}, devSecret,
			auth.Principal{Subject: "ops@example.test", Role: auth.RoleAdmin}, 90 * time.Minute},
		{"secret file", []string{"--role", "customer", "--sub", "c-7", "--secret-file", secretFile},
			func(t *testing.T) []byte { return []byte(strings.Repeat("s", 40)) },
			auth.Principal{Subject: "c-7", Role: auth.RoleCustomer}, 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary(t), append([]string{"token"}, tt.args...)...)
			cmd.Env = append(envWithout(os.Environ(), "XDG_CONFIG_HOME", auth.SecretEnv), "XDG_CONFIG_HOME="+config)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("orderflow token %v: %v\n%s", tt.args, err, stderr.String())
			}
			token := strings.TrimSuffix(stdout.String(), "\n")
			if token == "" || strings.ContainsAny(token, " \n") {
				t.Fatalf("printed %q, want one token on one line", stdout.String())
			}
			v, err := auth.NewHS256(tt.secret(t))
			if err != nil {
				t.Fatal(err)
			}
			p, err := v.Verify(t.Context(), token)
			if err != nil || p != tt.want {
				t.Fatalf("Verify = %+v, %v; want %+v", p, err, tt.want)
			}
			var c jwt.RegisteredClaims
			if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil || c.ExpiresAt == nil {
				t.Fatalf("claims %+v (%v)", c, err)
			}
			if left := time.Until(c.ExpiresAt.Time); left > tt.ttl || left < tt.ttl-time.Minute {
				t.Fatalf("token expires in %s, want about %s", left, tt.ttl)
			}
		})
	}
}

// devSecret is the dev stack's secret for the test's configuration
// directory.
func devSecret(t *testing.T) []byte {
	t.Helper()
	secret, err := auth.DevSecret()
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

func TestTokenUsage(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv(auth.SecretEnv, "")
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("too short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"-h"}, 0, ""},
		{"no role", nil, 2, "--role is required"},
		{"unknown role", []string{"--role", "root"}, 2, `unknown --role "root"`},
		{"customer without sub", []string{"--role", "customer"}, 2, "--role customer needs --sub"},
		{"customer sub with a space", []string{"--role", "customer", "--sub", "c 42"}, 2, `--sub "c 42" is not a customer_id`},
		{"customer sub only dots", []string{"--role", "customer", "--sub", ".."}, 2, "is not a customer_id"},
		{"customer sub too long", []string{"--role", "customer", "--sub", strings.Repeat("c", 65)}, 2, "is not a customer_id"},
		{"admin sub not printable", []string{"--role", "admin", "--sub", "a\tb"}, 2, "printable ASCII"},
		{"zero ttl", []string{"--role", "admin", "--ttl", "0s"}, 2, "--ttl 0s must be positive"},
		{"negative ttl", []string{"--role", "admin", "--ttl", "-1h"}, 2, "must be positive"},
		{"bad ttl", []string{"--role", "admin", "--ttl", "tomorrow"}, 2, "invalid value"},
		{"unknown flag", []string{"--role", "admin", "--scope", "x"}, 2, "flag provided but not defined"},
		{"extra argument", []string{"--role", "admin", "now"}, 2, "unexpected arguments"},
		{"missing secret file", []string{"--role", "admin", "--secret-file", filepath.Join(dir, "none")}, 1, "no such file"},
		{"short secret file", []string{"--role", "admin", "--secret-file", short}, 1, "want at least 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := tokenCommand(tt.args, &stdout, &stderr)
			if got := exitCode(err, &stderr); got != tt.code {
				t.Fatalf("exit code %d, want %d (%s)", got, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("stderr %q lacks %q", stderr.String(), tt.want)
			}
			if stdout.Len() != 0 {
				t.Fatalf("printed %q on a refused command line", stdout.String())
			}
		})
	}
	if entries, err := os.ReadDir(filepath.Join(dir, "orderflow")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused command line made a dev secret: %v %v", entries, err)
	}
}

// TestTokenIsACommand: the token command is reachable from the command
// line's top level and listed in the usage.
func TestTokenIsACommand(t *testing.T) {
	var stderr bytes.Buffer
	if code := exitCode(run(context.Background(), []string{"token", "--role", "nobody"}), &stderr); code != 2 ||
		!strings.Contains(stderr.String(), `unknown --role "nobody"`) {
		t.Fatalf("orderflow token: exit %d, %s", code, stderr.String())
	}
	var usage bytes.Buffer
	printUsage(&usage)
	if !strings.Contains(usage.String(), "token ") {
		t.Fatalf("usage does not list token:\n%s", usage.String())
	}
}
