package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/herald-gw/herald"
)

// ErrClosed is returned by every method but Epoch and Close once Close has
// been called. It carries herald.EUnavailable, so an API handler reports
// 503 (shutting down).
var ErrClosed error = herald.Errorf(herald.EUnavailable, "message store is closed")

// errKind says what an error from the server or the driver means for the
// operation that got it.
type errKind uint8

const (
	// kindOther: the statement failed for a reason of its own (bad data,
	// a bug); running it again fails again.
	kindOther errKind = iota
	// kindConn: the server is unreachable, restarting or refusing
	// connections, or the connection broke. Whatever was not committed
	// was rolled back; a new connection may work.
	kindConn
	// kindRetry: the transaction lost a race (deadlock, serialization
	// failure) and was rolled back; running it again is expected to work.
	kindRetry
)

// classify tells what err means. It looks at the driver's own errors, the
// network's and PostgreSQL's SQLSTATE classes:
// https://www.postgresql.org/docs/current/errcodes-appendix.html
func classify(err error) errKind {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "53"), // insufficient resources: too many connections, out of memory, disk full
			pe.Code == "57P01",               // admin_shutdown: the backend was terminated, or the server is stopping
			pe.Code == "57P02",               // crash_shutdown
			pe.Code == "57P03",               // cannot_connect_now: starting up or in recovery
			pe.Code == "57P05",               // idle_session_timeout
			pe.Code == "25006":               // read_only_sql_transaction: a standby, e.g. right after a failover
			return kindConn
		case pe.Code == "40001", pe.Code == "40P01", pe.Code == "55P03":
			return kindRetry
		}
		return kindOther
	}
	var (
		ce *pgconn.ConnectError
		ne net.Error
	)
	switch {
	case errors.As(err, &ce), errors.As(err, &ne), pgconn.Timeout(err), pgconn.SafeToRetry(err),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return kindConn
	}
	return kindOther
}

// unavailable wraps err, which classify found to be kindConn, as the error
// the API answers 503 with. The message is for clients and says nothing of
// the cause, which stays in the chain for logs.
func unavailable(op string, err error) error {
	return &herald.Error{Code: herald.EUnavailable, Message: "message store unreachable", Err: fmt.Errorf("postgres: %s: %w", op, err)}
}

// wrap turns an error of operation op, called with ctx, into the error the
// Store returns: the caller's own ctx ending stays what it is, a pool closed
// by Close is ErrClosed, an unreachable server an EUnavailable error, and
// anything else a plain wrapped error (500).
func (s *Store) wrap(ctx context.Context, op string, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		return fmt.Errorf("postgres: %s: %w (%w)", op, ctx.Err(), err)
	case ctx.Err() != nil:
		return fmt.Errorf("postgres: %s: %w", op, err)
	case s.isClosed():
		// Close closed the pool under the call (it sets closed first).
		return ErrClosed
	case classify(err) == kindConn:
		s.connLost(op, err)
		return unavailable(op, err)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}
