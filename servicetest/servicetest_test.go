package servicetest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/herald-gw/herald/servicetest"
)

// TestPostgresSchema checks the DSN lands in its own schema: a table made
// through it is found there and nowhere else.
func TestPostgresSchema(t *testing.T) {
	dsn := servicetest.Postgres(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE TABLE probe (id int)"); err != nil {
		t.Fatal(err)
	}
	var schema string
	if err := c.QueryRow(ctx, "SELECT table_schema FROM information_schema.tables WHERE table_name = 'probe'").Scan(&schema); err != nil {
		t.Fatal(err)
	}
	if want := c.Config().RuntimeParams["search_path"]; schema != want {
		t.Fatalf("table made in schema %q, want %q", schema, want)
	}
}

func TestRedisAndNATSReachable(t *testing.T) {
	if url, prefix := servicetest.Redis(t); url == "" || prefix == "" {
		t.Fatal("no Redis URL or prefix")
	}
	if url, prefix := servicetest.NATS(t); url == "" || prefix == "" {
		t.Fatal("no NATS URL or prefix")
	}
}
