package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations returns the schema migrations in order: migrations()[i] moves a
// database from PRAGMA user_version i to i+1. Append new steps; never edit a
// released one, since databases in the field have already run it. (A
// function rather than a package variable so nothing can mutate the list.)
func migrations() []string {
	return []string{
		// 0 → 1: the initial schema.
		//
		// meta holds store-wide values, today only the history "epoch".
		//
		// streams records each user's last assigned offset. It is kept apart
		// from MAX(offset) over messages so that deleting old messages (a
		// retention policy) can never make offsets restart and collide with
		// ones clients already saw.
		//
		// messages is WITHOUT ROWID, clustered on (user, offset): a replay
		// (Since) is one contiguous range scan of the primary key, and there
		// is no separate rowid b-tree to maintain on every insert.
		`CREATE TABLE meta (
			key   TEXT PRIMARY KEY,
			value TEXT NOT NULL
		);
		CREATE TABLE streams (
			user        TEXT PRIMARY KEY,
			last_offset INTEGER NOT NULL
		);
		CREATE TABLE messages (
			user     TEXT NOT NULL,
			"offset" INTEGER NOT NULL,
			id       TEXT NOT NULL,
			ts       INTEGER NOT NULL, -- unix nanoseconds
			data     BLOB,
			PRIMARY KEY (user, "offset")
		) WITHOUT ROWID;`,

		// 1 → 2: an append-only messages table, and inbox flags.
		//
		// Version 1 clustered messages on (user, offset), so a commit of n
		// messages for n different users dirtied n table pages (and, through
		// the per-batch streams upsert, up to n streams pages): group commit
		// could not amortise the WAL writes, and throughput with many users
		// stayed near 11k messages/s. Now a message is a row keyed by seq,
		// a plain INTEGER PRIMARY KEY that only grows, so a batch's rows
		// fill the rightmost table pages together; per user only a compact
		// index entry lands on a page of its own.
		//
		// messages_stream (user, offset, flags) serves Since, Bounds,
		// Inbox and Counts: each is a range of one user's entries, in
		// offset order either way, and flags in the entry lets Inbox filter
		// and Counts count without reading the rows (offsets are unique per
		// user by construction: one writer assigns them).
		// messages_id serves Mark by id; messages_ts the age retention.
		// Both grow at their right edge (ids and times increase), so they
		// add about one dirty page per commit, not one per message.
		//
		// flags holds the inbox state as bits: 1 seen, 2 read, 4 archived.
		//
		// streams is no longer written on every Append: a user's last
		// offset is max(streams.last_offset, MAX(messages.offset)), and
		// the writer keeps it in memory. streams is written only when
		// retention deletes a user's newest message, so that offsets still
		// never go back. Version 1's rows are exact, so they stay valid.
		`CREATE TABLE messages_v2 (
			seq      INTEGER PRIMARY KEY,
			user     TEXT NOT NULL,
			"offset" INTEGER NOT NULL,
			id       TEXT NOT NULL,
			ts       INTEGER NOT NULL, -- unix nanoseconds
			flags    INTEGER NOT NULL DEFAULT 0,
			data     BLOB
		);
		INSERT INTO messages_v2 (user, "offset", id, ts, data)
			SELECT user, "offset", id, ts, data FROM messages;
		DROP TABLE messages;
		ALTER TABLE messages_v2 RENAME TO messages;
		CREATE INDEX messages_stream ON messages (user, "offset", flags);
		CREATE INDEX messages_id ON messages (id);
		CREATE INDEX messages_ts ON messages (ts);`,
	}
}

// migrate brings the schema on conn up to date and returns the store's epoch,
// creating it if the database is new. It runs in one IMMEDIATE transaction so
// that two processes opening a new file at once cannot both create the
// schema or pick different epochs: the second waits (busy_timeout) and then
// sees the first one's work.
func migrate(ctx context.Context, conn *sql.Conn, newEpoch string) (epoch string, err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return "", fmt.Errorf("begin migration: %w", err)
	}
	defer func() {
		if err != nil {
			// The error being reported matters more than a failed rollback,
			// and closing the connection discards the transaction anyway.
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()

	var version int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return "", fmt.Errorf("read schema version: %w", err)
	}
	var appID int64
	if err := conn.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return "", fmt.Errorf("read application id: %w", err)
	}
	if err := checkOwner(ctx, conn, appID, version); err != nil {
		return "", err
	}
	steps := migrations()
	if version > len(steps) {
		return "", fmt.Errorf("database schema version %d is newer than this build supports (%d): "+
			"the file was written by a newer Herald; run that version, or restore a backup taken before the upgrade", version, len(steps))
	}
	for i := version; i < len(steps); i++ {
		if _, err := conn.ExecContext(ctx, steps[i]); err != nil {
			return "", fmt.Errorf("migrate schema %d→%d: %w", i, i+1, err)
		}
	}
	if version < len(steps) {
		// PRAGMA takes no bound parameters; the value is our own integer.
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(steps))); err != nil {
			return "", fmt.Errorf("set schema version: %w", err)
		}
	}
	if appID != applicationID {
		// New files, and those of Herald versions before the mark.
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA application_id = %d", applicationID)); err != nil {
			return "", fmt.Errorf("set application id: %w", err)
		}
	}

	// The epoch is created once, with the database, and then kept: it changes
	// only when history is lost, which for a file means a new file.
	if _, err := conn.ExecContext(ctx, "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)", newEpoch); err != nil {
		return "", fmt.Errorf("create epoch: %w", err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'epoch'").Scan(&epoch); err != nil {
		return "", fmt.Errorf("read epoch: %w", err)
	}

	if epoch == "" {
		return "", fmt.Errorf("%w: its history epoch (table meta) is empty", ErrNotDatabase)
	}

	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return "", fmt.Errorf("commit migration: %w", err)
	}
	return epoch, nil
}

// applicationID marks a file as Herald's in its header (PRAGMA
// application_id, the 32-bit field SQLite reserves at offset 68 for this):
// "HRLD". It lets Open refuse another program's SQLite file instead of
// adding Herald's tables to it, or mistaking its user_version for a Herald
// schema version.
const applicationID = 0x48524c44

// checkOwner refuses a file that is not Herald's, going by its application
// id and, for files without one (new files, and those written before
// Herald set it), by its tables.
func checkOwner(ctx context.Context, conn *sql.Conn, appID int64, version int) error {
	switch {
	case appID == applicationID:
		return nil
	case appID != 0:
		return fmt.Errorf("%w: it belongs to another application (application_id %#x); point HERALD_DB at Herald's file", ErrNotDatabase, appID)
	}
	var tables, ours int
	err := conn.QueryRowContext(ctx, `SELECT count(*), count(name IN ('meta', 'streams', 'messages') OR NULL)
		FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`).Scan(&tables, &ours)
	if err != nil {
		return fmt.Errorf("read schema: %w", err)
	}
	switch {
	case version == 0 && ours == 3:
		// What the sqlite3 shell's .dump makes of a Herald file: the
		// tables without the header fields. Which schema version the
		// tables are is not knowable from here; the operator knows which
		// Herald wrote the file.
		return fmt.Errorf("%w: it has Herald's tables but no schema version, as a file rebuilt with the sqlite3 shell's .dump has; "+
			"if this Herald version wrote it, mark it with `sqlite3 FILE \"PRAGMA user_version = %d; PRAGMA application_id = %d\"`",
			ErrNotDatabase, len(migrations()), applicationID)
	case version == 0 && tables > 0:
		return fmt.Errorf("%w: it is an SQLite database with tables of its own (%d) and no Herald schema; point HERALD_DB at Herald's file or a new one", ErrNotDatabase, tables)
	case version > 0 && ours < 3:
		return fmt.Errorf("%w: its schema version is %d but it lacks Herald's tables; point HERALD_DB at Herald's file or a new one", ErrNotDatabase, version)
	}
	return nil
}
