package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	sqlitedrv "modernc.org/sqlite"
)

// ErrCorrupt is wrapped by the error Open returns when the integrity check
// finds the database file damaged.
var ErrCorrupt = errors.New("database file is corrupt")

// ErrNotDatabase is wrapped by the error Open returns when the file is not
// a Herald database: not an SQLite file at all (or one whose header is
// destroyed), or another application's SQLite database.
var ErrNotDatabase = errors.New("file is not a Herald database")

// SQLite primary result codes (https://sqlite.org/rescode.html), stable
// across versions. Extended codes carry the primary one in their low byte.
const (
	sqliteReadOnly = 8
	sqliteCorrupt  = 11
	sqliteCantOpen = 14
	sqliteNotADB   = 26
)

// sqliteCode returns the primary SQLite result code in err's chain, or 0.
func sqliteCode(err error) int {
	var e *sqlitedrv.Error
	if errors.As(err, &e) {
		return e.Code() & 0xff
	}
	return 0
}

// sqliteMessage returns SQLite's own words for err, without the steps
// that wrapped it.
func sqliteMessage(err error) string {
	var e *sqlitedrv.Error
	if errors.As(err, &e) {
		return e.Error()
	}
	return err.Error()
}

// maxProblems is how many of quick_check's findings the error quotes: the
// first few say what is wrong; a long list only buries the advice.
const maxProblems = 5

// recoverAdvice is how to get a working file back, for the errors of a
// damaged one. docs/operations.md has the longer version.
func recoverAdvice(abs string) string {
	return fmt.Sprintf("restore the last backup of %[1]s, or salvage what is readable with "+
		"`sqlite3 %[1]s \".recover\" | sqlite3 recovered.db` (a sqlite3 without .recover, such as Debian 12's: "+
		"`sqlite3 %[1]s .dump | sqlite3 recovered.db`) and point HERALD_DB at recovered.db; "+
		"either way give the file a new epoch (docs/operations.md, \"Backup and restore\")", abs)
}

// explain turns the errors SQLite gives for a damaged, foreign or
// read-only file into ones that say what to do; others are returned as
// they are.
func explain(abs string, err error) error {
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotDatabase) {
		return err // explained already
	}
	switch sqliteCode(err) {
	case sqliteCorrupt:
		return fmt.Errorf("%w (%v): %s", ErrCorrupt, err, recoverAdvice(abs))
	case sqliteNotADB:
		return fmt.Errorf("%w: SQLite says %q; if it was Herald's database its header is destroyed: "+
			"restore the last backup, otherwise point HERALD_DB at the right file", ErrNotDatabase, sqliteMessage(err))
	case sqliteReadOnly:
		return fmt.Errorf("the file is read-only to this process (%w): Herald must write it and create its -wal "+
			"and -shm files next to it; check owner and permissions of the file and its directory, and that the volume is not mounted read-only", err)
	case sqliteCantOpen:
		return fmt.Errorf("cannot open the file or its -wal and -shm files (%w): check owner and permissions of the file and its directory", err)
	}
	return err
}

// quickCheck runs PRAGMA quick_check on conn, within timeout, and returns
// an ErrCorrupt error quoting its first findings if the file is damaged. A
// check cut short by the timeout is logged and not an error (see
// WithCheckTimeout). quick_check verifies the structure of every b-tree
// page, the free list and the record formats, which is what a torn or
// overwritten page breaks; it skips integrity_check's comparison of every
// index with its table, which is O(N log N) and mostly finds SQLite bugs.
func quickCheck(ctx context.Context, conn *sql.Conn, abs string, timeout time.Duration, log *slog.Logger) error {
	if timeout <= 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	problems, err := runQuickCheck(cctx, conn)
	if err != nil {
		if ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
			log.Warn("sqlite: integrity check did not finish in time; starting without it",
				"path", abs, "timeout", timeout, "hint", "raise the check timeout, or run `sqlite3 "+abs+" \"PRAGMA quick_check\"` offline")
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("integrity check: %w", ctx.Err())
		}
		if c := sqliteCode(err); c == sqliteCorrupt || c == sqliteNotADB {
			return explain(abs, err)
		}
		return fmt.Errorf("integrity check: %w", err)
	}
	if len(problems) == 1 && problems[0] == "ok" {
		log.Debug("sqlite: integrity check passed", "path", abs, "took", time.Since(start))
		return nil
	}
	quoted := make([]string, 0, maxProblems)
	for i, p := range problems {
		if i == maxProblems {
			break
		}
		quoted = append(quoted, fmt.Sprintf("%q", p))
	}
	more := ""
	if len(problems) > maxProblems {
		more = fmt.Sprintf(" and more (run `sqlite3 %s \"PRAGMA integrity_check\"` for the full list)", abs)
	}
	return fmt.Errorf("%w: PRAGMA quick_check found %s%s; %s", ErrCorrupt, strings.Join(quoted, ", "), more, recoverAdvice(abs))
}

// runQuickCheck returns quick_check's findings: just "ok" for a sound file.
// It asks for one more finding than it quotes, to know there are more.
func runQuickCheck(ctx context.Context, conn *sql.Conn) ([]string, error) {
	rows, err := conn.QueryContext(ctx, fmt.Sprintf("PRAGMA quick_check(%d)", maxProblems+1))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
