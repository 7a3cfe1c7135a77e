// Package servicetest gives tests the real services they need — PostgreSQL
// today; Redis and NATS as the engines arrive — each in a namespace of its
// own that the test's cleanup removes, so concurrent runs never collide.
//
// A service that is not running makes the test skip with a message naming
// what was looked for, unless HERALD_REQUIRE_SERVICES=1 (set by .ci/run),
// which makes it fail: on CI a missing service is a broken machine, not a
// reason to pass.
package servicetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultPostgres is where tests look for PostgreSQL unless
// HERALD_TEST_POSTGRES names another server: trust auth, database test.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Required reports whether a missing service fails the test instead of
// skipping it (HERALD_REQUIRE_SERVICES=1).
func Required() bool { return os.Getenv("HERALD_REQUIRE_SERVICES") == "1" }

// Missing skips t with why, or fails it when services are required.
func Missing(t testing.TB, why string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s (HERALD_REQUIRE_SERVICES=1: a missing service fails the test)", why)
	}
	t.Skipf("SKIP: %s; set HERALD_REQUIRE_SERVICES=1 to make this a failure", why)
}

// Postgres returns the DSN of a fresh, empty schema on the test server,
// set as the connection's search_path, so that code under test creates
// its tables there without knowing it. The schema is dropped, with
// everything in it, when the test ends.
func Postgres(t testing.TB) string {
	t.Helper()
	base := os.Getenv("HERALD_TEST_POSTGRES")
	if base == "" {
		base = DefaultPostgres
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		Missing(t, fmt.Sprintf("PostgreSQL is not reachable at %s: %v", redact(base), err))
		return ""
	}
	defer admin.Close(context.Background())
	schema := "herald_test_" + randomHex(6)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("servicetest: create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("servicetest: drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("servicetest: drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("servicetest: HERALD_TEST_POSTGRES is not a URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema) // pgx sends unknown parameters as run-time settings
	u.RawQuery = q.Encode()
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// redact drops a password from a DSN before it is printed.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}
