package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The schema is a list of numbered SQL files, embedded so that the binary
// carries the schema it needs. NNNN_name.sql moves the schema from version
// NNNN-1 to NNNN; the numbers run from 1 without a hole. Add a file for a
// change; never edit one that was released, since databases in the field
// have run it.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations reads the embedded files in version order.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration file %s is not named NNNN_name.sql", e.Name())
		}
		b, err := migrationFS.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %d (%s) follows %d: versions must run 1, 2, 3 ...", m.version, m.name, i)
		}
	}
	return out, nil
}

// lockClass is the first half of the advisory lock key Open migrates under:
// "HRLD". The second half is a hash of the schema's name, so that nodes
// sharing a schema take turns while Herald installations in other schemas
// of the same database (tests give each test one) do not wait for each
// other. A hash collision only makes two schemas migrate one after the
// other.
const lockClass = 0x48524c44

// ErrNotHerald is wrapped by the error Open returns when the schema holds
// tables with Herald's names that Herald did not create, or a schema
// version newer than this build knows.
var ErrNotHerald = errors.New("schema is not Herald's")

// migrate brings the schema of the connection's search_path up to date and
// returns the store's epoch, creating it if the schema is new.
//
// It runs on a connection of its own, opened and closed here, holding a
// session-level advisory lock: several nodes starting at once queue on the
// lock, and each after the first finds nothing left to do. Closing the
// connection releases the lock whatever happened, also if ctx ended while
// the lock was being granted. Each migration runs in a transaction with the
// row that records it in schema_migrations, so a failed one leaves no trace
// and the next start retries it.
func migrate(ctx context.Context, cc *pgx.ConnConfig, newEpoch string, log *slog.Logger) (epoch, schema string, err error) {
	steps, err := migrations()
	if err != nil {
		return "", "", err
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return "", "", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())

	var current *string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&current); err != nil {
		return "", "", fmt.Errorf("read current schema: %w", err)
	}
	if current == nil {
		var sp string
		_ = conn.QueryRow(ctx, "SHOW search_path").Scan(&sp)
		return "", "", fmt.Errorf("no schema of the search_path (%s) exists: create it (CREATE SCHEMA) or set search_path in the DSN", sp)
	}
	schema = *current
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, hashtext($2))", lockClass, schema); err != nil {
		return "", "", fmt.Errorf("take the migration lock: %w", err)
	}
	if err := checkOwner(ctx, conn, schema); err != nil {
		return "", "", err
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return "", "", fmt.Errorf("create schema_migrations: %w", err)
	}
	var version int
	if err := conn.QueryRow(ctx, "SELECT COALESCE(max(version), 0) FROM schema_migrations").Scan(&version); err != nil {
		return "", "", fmt.Errorf("read schema version: %w", err)
	}
	if version > len(steps) {
		return "", "", fmt.Errorf("%w: schema %s is at version %d, newer than this build knows (%d): "+
			"it was migrated by a newer Herald; run that version", ErrNotHerald, schema, version, len(steps))
	}
	for _, m := range steps[version:] {
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// No arguments: pgx sends the file with the simple protocol,
			// which runs several statements.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		}); err != nil {
			return "", "", fmt.Errorf("migration %d (%s) in schema %s: %w", m.version, m.name, schema, err)
		}
		log.Info("postgres: schema migrated", "schema", schema, "version", m.version, "name", m.name)
	}

	// The epoch is created once, with the schema, and then kept: it changes
	// only when history is lost, and a node that loses history here is a
	// new schema.
	if _, err := conn.Exec(ctx, "INSERT INTO meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO NOTHING", newEpoch); err != nil {
		return "", "", fmt.Errorf("create epoch: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT value FROM meta WHERE key = 'epoch'").Scan(&epoch); err != nil {
		return "", "", fmt.Errorf("read epoch: %w", err)
	}
	if epoch == "" {
		return "", "", fmt.Errorf("%w: the history epoch in %s.meta is empty", ErrNotHerald, schema)
	}
	return epoch, schema, nil
}

// checkOwner refuses a schema whose tables carry Herald's names but are not
// Herald's: another tool's schema_migrations (a common name), or an
// application's own messages table in the schema Herald was pointed at.
// Adding Herald's tables to them, or reading their rows as Herald's, would
// be worse than not starting.
func checkOwner(ctx context.Context, conn *pgx.Conn, schema string) error {
	rows, err := conn.Query(ctx, `SELECT table_name, string_agg(column_name, ',' ORDER BY column_name)
		FROM information_schema.columns
		WHERE table_schema = $1 AND table_name IN ('schema_migrations', 'meta', 'streams', 'messages')
		GROUP BY table_name`, schema)
	if err != nil {
		return fmt.Errorf("read schema: %w", err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var tc [2]string
		err := r.Scan(&tc[0], &tc[1])
		return tc, err
	})
	if err != nil {
		return fmt.Errorf("read schema: %w", err)
	}
	tables := map[string]string{}
	for _, tc := range cols {
		tables[tc[0]] = tc[1]
	}
	const ours = "applied_at,name,version"
	if c, ok := tables["schema_migrations"]; ok && c != ours {
		return fmt.Errorf("%w: schema %s has a schema_migrations table that Herald did not create (columns %s), "+
			"another migration tool's perhaps; give Herald a schema of its own (search_path in the DSN)", ErrNotHerald, schema, c)
	}
	if _, ok := tables["schema_migrations"]; !ok && len(tables) > 0 {
		return fmt.Errorf("%w: schema %s already has tables named like Herald's (meta, streams, messages) but no schema_migrations; "+
			"give Herald a schema of its own (search_path in the DSN)", ErrNotHerald, schema)
	}
	return nil
}
