package auth_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/services/gateway/auth"
)

// devConfig points DevSecret at a fresh configuration directory, with
// ORDERFLOW_JWT_SECRET unset, and returns where the secret file goes.
func devConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv(auth.SecretEnv, "")
	os.Unsetenv(auth.SecretEnv) // t.Setenv restores it afterwards
	return filepath.Join(dir, "orderflow", "dev-jwt-secret")
}

func TestDevSecretIsCreatedOnceAndReused(t *testing.T) {
	path := devConfig(t)
	first, err := auth.DevSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(first) < auth.MinSecretLength {
		t.Fatalf("secret of %d bytes", len(first))
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v, want 0600", info.Mode().Perm())
	}
	dirInfo, err := os.Stat(filepath.Dir(path))
	if err != nil || dirInfo.Mode().Perm() != 0o700 {
		t.Fatalf("secret directory mode %v (%v), want 0700", dirInfo.Mode().Perm(), err)
	}
	second, err := auth.DevSecret()
	if err != nil || !bytes.Equal(first, second) {
		t.Fatalf("second call: %q (%v), want the first secret %q", second, err, first)
	}
	// The file holds the secret's text, so the variable can name it too.
	text, err := os.ReadFile(path)
	if err != nil || strings.TrimSpace(string(text)) != string(first) {
		t.Fatalf("file holds %q (%v), want %q", text, err, first)
	}
	t.Setenv(auth.SecretEnv, string(text))
	fromEnv, err := auth.DevSecret()
	if err != nil || !bytes.Equal(fromEnv, first) {
		t.Fatalf("ORDERFLOW_JWT_SECRET=$(cat file) gives %q (%v), want %q", fromEnv, err, first)
	}
	// A token signed with one verifies with the other.
	token, err := auth.Sign(first, auth.Principal{Subject: "admin", Role: auth.RoleAdmin}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewHS256(second)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Verify(t.Context(), token); err != nil || p.Role != auth.RoleAdmin {
		t.Fatalf("Verify = %+v, %v", p, err)
	}
}

// TestDevSecretConcurrentFirstUse: `orderflow dev` and `orderflow token`
// run for the first time together still agree on one secret.
func TestDevSecretConcurrentFirstUse(t *testing.T) {
	devConfig(t)
	const n = 8
	secrets := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { secrets[i], errs[i] = auth.DevSecret() })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || !bytes.Equal(secrets[i], secrets[0]) {
			t.Fatalf("caller %d got %q (%v), caller 0 %q", i, secrets[i], errs[i], secrets[0])
		}
	}
	entries, err := os.ReadDir(filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "orderflow"))
	if err != nil || len(entries) != 1 {
		t.Fatalf("config directory holds %v (%v), want the secret file alone", entries, err)
	}
}

func TestDevSecretFromEnv(t *testing.T) {
	path := devConfig(t)
	t.Setenv(auth.SecretEnv, "an environment secret of more than 32 bytes")
	got, err := auth.DevSecret()
	if err != nil || string(got) != "an environment secret of more than 32 bytes" {
		t.Fatalf("DevSecret = %q, %v", got, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a secret file was made although the variable is set (%v)", err)
	}
	t.Setenv(auth.SecretEnv, "short")
	if _, err := auth.DevSecret(); err == nil || !strings.Contains(err.Error(), auth.SecretEnv) {
		t.Fatalf("a short %s: %v", auth.SecretEnv, err)
	}
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	long := strings.Repeat("k", auth.MinSecretLength)
	tests := []struct {
		name string
		path string
		want string // "" for an error
	}{
		{"trailing newline", write("a", long+"\n"), long},
		{"no newline", write("b", long), long},
		{"too short", write("c", long[1:]+"\n"), ""},
		{"empty", write("d", ""), ""},
		{"missing", filepath.Join(dir, "none"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := auth.ReadSecretFile(tt.path)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("ReadSecretFile = %q, want an error", got)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("ReadSecretFile = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestSign(t *testing.T) {
	tests := []struct {
		name   string
		secret []byte
		p      auth.Principal
		ttl    time.Duration
		ok     bool
	}{
		{"admin", testSecret, auth.Principal{Subject: "admin", Role: auth.RoleAdmin}, time.Hour, true},
		{"customer", testSecret, auth.Principal{Subject: "c-42", Role: auth.RoleCustomer}, time.Hour, true},
		{"short secret", testSecret[:auth.MinSecretLength-1], auth.Principal{Subject: "admin", Role: auth.RoleAdmin}, time.Hour, false},
		{"unknown role", testSecret, auth.Principal{Subject: "x", Role: "root"}, time.Hour, false},
		{"no subject", testSecret, auth.Principal{Role: auth.RoleAdmin}, time.Hour, false},
		{"customer subject not a customer_id", testSecret, auth.Principal{Subject: "c/42", Role: auth.RoleCustomer}, time.Hour, false},
		{"zero lifetime", testSecret, auth.Principal{Subject: "admin", Role: auth.RoleAdmin}, 0, false},
	}
	v, err := auth.NewHS256(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, err := auth.Sign(tt.secret, tt.p, tt.ttl)
			if !tt.ok {
				if err == nil {
					t.Fatalf("Sign = %q, want an error", token)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p, err := v.Verify(t.Context(), token); err != nil || p != tt.p {
				t.Fatalf("Verify = %+v, %v; want %+v", p, err, tt.p)
			}
		})
	}
}
