// Package registry is the seed's connection registry: the PostgreSQL table
// that maps API Gateway connection ids to the user who opened them. The
// three Lambdas share it — $connect adds a row, $disconnect removes it, the
// notification function lists a user's rows and removes those API Gateway
// reports gone.
//
// A Lambda process lives for many invocations but runs one at a time, so
// the registry holds a single pgx connection, opened at cold start and
// reused by every invocation, instead of a pool: one process, one
// connection, which is also what a database behind many concurrent Lambda
// processes can afford. The connection is re-opened when it breaks — a
// database restart or an idle timeout while the process was frozen — and
// because every operation here is idempotent, the one that met the broken
// connection is simply run again on the new one.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"
)

// Schema is the registry's table, the same text as examples/seed/schema.sql
// (a test keeps the two identical). Every statement is IF NOT EXISTS, so
// applying it again is harmless.
const Schema = `-- The connection registry of the seed's Lambdas: which API Gateway
-- connection ids belong to which user. $connect adds a row, $disconnect
-- removes it, the notification function reads a user's rows and removes
-- those API Gateway reports gone.
CREATE TABLE IF NOT EXISTS connections (
    connection_id text        PRIMARY KEY,
    user_id       bigint      NOT NULL,
    connected_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS connections_user_id ON connections (user_id);
`

// migrateLock is the transaction-level advisory lock Migrate holds while it
// creates the schema. CREATE TABLE IF NOT EXISTS is not safe against itself:
// two cold starts at once can both find the table missing and one then fails
// on a duplicate catalog entry. Any constant works; this one is "seed" in
// ASCII.
const migrateLock = 0x73656564

// SecretsAPI is the one Secrets Manager call the registry makes;
// *secretsmanager.Client is one.
type SecretsAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// Source says where the database's DSN comes from.
type Source struct {
	// DatabaseURL is the DSN itself (DATABASE_URL). It wins when set.
	DatabaseURL string
	// SecretARN names a Secrets Manager secret whose SecretString is
	// {"dsn": "postgres://..."} (DATABASE_SECRET_ARN) — how the DSN, with
	// its password, reaches a Lambda on AWS without sitting in its
	// environment.
	SecretARN string
	// Secrets reads the secret. Nil means a client made from
	// config.LoadDefaultConfig, which on Lambda uses the function's role.
	Secrets SecretsAPI
}

// SourceFromEnv reads DATABASE_URL and DATABASE_SECRET_ARN.
func SourceFromEnv(getenv func(string) string) Source {
	return Source{DatabaseURL: getenv("DATABASE_URL"), SecretARN: getenv("DATABASE_SECRET_ARN")}
}

// DSN returns the DSN: DatabaseURL, or the secret's "dsn" field. The
// secret is read once per call, and the registry calls it once per process.
func (s Source) DSN(ctx context.Context) (string, error) {
	if s.DatabaseURL != "" {
		return s.DatabaseURL, nil
	}
	if s.SecretARN == "" {
		return "", errors.New("registry: set DATABASE_URL, or DATABASE_SECRET_ARN to a Secrets Manager secret holding {\"dsn\": ...}")
	}
	sm := s.Secrets
	if sm == nil {
		cfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return "", fmt.Errorf("registry: AWS config for Secrets Manager: %w", err)
		}
		sm = secretsmanager.NewFromConfig(cfg)
	}
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(s.SecretARN)})
	if err != nil {
		return "", fmt.Errorf("registry: read secret %s: %w", s.SecretARN, err)
	}
	var v struct {
		DSN string `json:"dsn"`
	}
	// The error names neither the secret's text nor where decoding stopped
	// in it: either could show the password in a log.
	if out.SecretString == nil || json.Unmarshal([]byte(*out.SecretString), &v) != nil || v.DSN == "" {
		return "", fmt.Errorf("registry: secret %s: SecretString is not JSON with a non-empty \"dsn\"", s.SecretARN)
	}
	return v.DSN, nil
}

// Registry is the connections table over one database connection. Its
// methods may be called from several goroutines; they take turns.
type Registry struct {
	dsn string

	mu   sync.Mutex
	conn *pgx.Conn // nil or closed: opened again by the next call
}

// Open opens the registry named by the environment (see SourceFromEnv).
func Open(ctx context.Context) (*Registry, error) {
	return OpenSource(ctx, SourceFromEnv(os.Getenv))
}

// OpenSource resolves src's DSN and connects, so that a wrong DSN or an
// unreachable database fails the cold start rather than the first request.
func OpenSource(ctx context.Context, src Source) (*Registry, error) {
	dsn, err := src.DSN(ctx)
	if err != nil {
		return nil, err
	}
	r := &Registry{dsn: dsn}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, _, err := r.connect(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// connect returns the open connection, opening one when there is none.
// fresh reports whether it was opened just now. r.mu is held.
func (r *Registry) connect(ctx context.Context) (c *pgx.Conn, fresh bool, err error) {
	if r.conn != nil && !r.conn.IsClosed() {
		return r.conn, false, nil
	}
	c, err = pgx.Connect(ctx, r.dsn)
	if err != nil {
		// pgx's error names host, user and database, never the password.
		return nil, false, fmt.Errorf("registry: connect: %w", err)
	}
	r.conn = c
	return c, true, nil
}

// do runs op on the connection. When op fails because a reused connection
// had broken (pgx closes a connection on a network error), op runs once
// more on a new one; every op here is idempotent, so that is safe.
func (r *Registry) do(ctx context.Context, op func(*pgx.Conn) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, fresh, err := r.connect(ctx)
	if err != nil {
		return err
	}
	err = op(c)
	if err == nil || fresh || !c.IsClosed() || ctx.Err() != nil {
		return err
	}
	if c, _, err = r.connect(ctx); err != nil {
		return err
	}
	return op(c)
}

// Migrate creates the table and index when they are missing. The connect
// function calls it at every cold start, so a fresh database works.
func (r *Registry) Migrate(ctx context.Context) error {
	return r.do(ctx, func(c *pgx.Conn) error {
		err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrateLock)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, Schema) // no arguments: the simple protocol, which runs several statements
			return err
		})
		if err != nil {
			return fmt.Errorf("registry: migrate: %w", err)
		}
		return nil
	})
}

// Add records that connection id belongs to user. Adding an id again (a
// retried $connect) updates its row.
func (r *Registry) Add(ctx context.Context, id string, user int64) error {
	return r.do(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO connections (connection_id, user_id) VALUES ($1, $2)
			ON CONFLICT (connection_id) DO UPDATE SET user_id = EXCLUDED.user_id, connected_at = now()`, id, user)
		if err != nil {
			return fmt.Errorf("registry: add %s: %w", id, err)
		}
		return nil
	})
}

// Remove deletes connection id's row and reports whether there was one.
func (r *Registry) Remove(ctx context.Context, id string) (bool, error) {
	var n int64
	err := r.do(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, "DELETE FROM connections WHERE connection_id = $1", id)
		if err != nil {
			return fmt.Errorf("registry: remove %s: %w", id, err)
		}
		n = tag.RowsAffected()
		return nil
	})
	return n > 0, err
}

// List returns user's connection ids, oldest first.
func (r *Registry) List(ctx context.Context, user int64) ([]string, error) {
	var ids []string
	err := r.do(ctx, func(c *pgx.Conn) error {
		rows, _ := c.Query(ctx, "SELECT connection_id FROM connections WHERE user_id = $1 ORDER BY connected_at, connection_id", user)
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("registry: list user %d: %w", user, err)
		}
		ids = got
		return nil
	})
	return ids, err
}

// Close closes the connection. A Lambda never calls it — the process is
// frozen and later killed — but tests do.
func (r *Registry) Close(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn == nil {
		return nil
	}
	err := r.conn.Close(ctx)
	r.conn = nil
	return err
}
