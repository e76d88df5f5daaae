package testenv

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestMain(m *testing.M) { Main(m) }

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	var n int
	err := connect(t, PostgresAdminURL(t)).QueryRow(context.Background(),
		"SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// Tests running in parallel each get a database of their own: a table made
// in one is not visible in another.
func TestEachTestGetsItsOwnDatabase(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{}
	for _, name := range []string{"a", "b", "c", "d"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			conn := connect(t, Postgres(t))
			ctx := context.Background()
			var db string
			var super bool
			if err := conn.QueryRow(ctx, "SELECT current_database(), rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&db, &super); err != nil {
				t.Fatal(err)
			}
			if !super {
				t.Error("test database URL is not a superuser's")
			}
			mu.Lock()
			if other, dup := seen[db]; dup {
				t.Errorf("subtests %s and %s share database %s", other, name, db)
			}
			seen[db] = name
			mu.Unlock()

			var tables int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'marker'").Scan(&tables); err != nil {
				t.Fatal(err)
			}
			if tables != 0 {
				t.Errorf("database %s is not empty: it has another test's table", db)
			}
			if _, err := conn.Exec(ctx, "CREATE TABLE marker (v int)"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A database is dropped when its test ends, even with a connection left open.
func TestDatabaseDroppedAfterTest(t *testing.T) {
	var name string
	var leaked *pgx.Conn
	t.Run("inner", func(t *testing.T) {
		conn, err := pgx.Connect(context.Background(), Postgres(t))
		if err != nil {
			t.Fatal(err)
		}
		leaked = conn // deliberately not closed before the test ends
		if err := conn.QueryRow(context.Background(), "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		if !databaseExists(t, name) {
			t.Fatalf("database %s not listed while its test runs", name)
		}
	})
	defer leaked.Close(context.Background())
	if name == "" {
		t.Fatal("inner test did not report its database")
	}
	if databaseExists(t, name) {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestAdminURLIsSuperuser(t *testing.T) {
	var super bool
	err := connect(t, PostgresAdminURL(t)).QueryRow(context.Background(),
		"SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super)
	if err != nil {
		t.Fatal(err)
	}
	if !super {
		t.Error("admin URL does not log in as a superuser")
	}
}

// jetStream connects to NATS(t) for the test.
func jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestNATSRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js := jetStream(t)
	stream := "TESTENV_" + randomHex(4)
	subject := "testenv." + randomHex(4)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{subject}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), stream) })
	ack, err := js.Publish(ctx, subject, []byte("ping"))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if ack.Stream != stream {
		t.Errorf("acked by stream %q, want %q", ack.Stream, stream)
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetMsg(ctx, ack.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != "ping" {
		t.Errorf("stored %q, want ping", msg.Data)
	}
}

// Embedded servers are per test: a stream made in one test is absent in the
// next.
func TestNATSFreshPerTest(t *testing.T) {
	if os.Getenv(EnvNATSURL) != "" {
		t.Skip("TEST_NATS_URL is shared between tests by design")
	}
	for _, name := range []string{"first", "second"} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			js := jetStream(t)
			// Creating the same name with a different config fails on a
			// server that already has it.
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SAME", Subjects: []string{"same." + name}}); err != nil {
				t.Fatalf("stream from an earlier test is still there: %v", err)
			}
		})
	}
}

func TestWithDatabase(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"postgres://u:p@h:5432/postgres?sslmode=disable", "postgres://u:p@h:5432/t_x?sslmode=disable"},
		{"postgresql://u@h/", "postgresql://u@h/t_x"},
		{"postgres://u@h", "postgres://u@h/t_x"},
		{"postgres://u@h/a?dbname=a", "postgres://u@h/t_x?dbname=t_x"},
		{"host=h user=u dbname=postgres", "host=h user=u dbname=postgres dbname=t_x"},
	}
	for _, tt := range tests {
		got, err := withDatabase(tt.in, "t_x")
		if err != nil {
			t.Errorf("withDatabase(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("withDatabase(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
