package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-gw/herald"
)

// Every new connection reads its user's stream position twice (Bounds:
// once before it joins the hub, once after), and after a lost broker
// subscription every connection of the node reads it again. One query per
// read made PostgreSQL round trips the larger part of a cluster node's
// connect, and a connect storm queued them on the pool. Concurrent Bounds
// calls therefore share one query: while one runs, the calls that arrive
// wait and are answered together by the next, which starts after they
// did — so each answer still holds everything committed before its call
// (package coalesce).

// boundsTimeout bounds one shared query; the callers wait with their own
// contexts.
const boundsTimeout = 5 * time.Second

// Bounds reports the oldest retained and the newest assigned offset of
// user's stream, as committed: one row of streams. Concurrent calls share
// a query (see above).
func (s *Store) Bounds(ctx context.Context, user herald.UserID) (first, last uint64, err error) {
	if !validText(string(user)) {
		return 0, 0, s.checkOpen()
	}
	got, err := s.bounds.Lookup(ctx, string(user))
	if err != nil {
		if ctx.Err() != nil {
			return 0, 0, s.wrap(ctx, "bounds", err)
		}
		return 0, 0, err
	}
	b := got[string(user)] // none: nothing was ever appended
	if b.last > b.trimmed {
		first = uint64(b.trimmed) + 1
	}
	return first, uint64(b.last), nil
}

type bounds struct{ trimmed, last int64 }

// queryBounds reads the streams rows of users, for the Batcher's waiting
// calls; a user without one is absent (nothing was ever appended).
func (s *Store) queryBounds(users []string) (map[string]bounds, error) {
	if s.beforeBounds != nil {
		s.beforeBounds()
	}
	s.boundsQueries.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), boundsTimeout)
	defer cancel()
	out := make(map[string]bounds, len(users))
	err := s.retried(ctx, "bounds", func(ctx context.Context) error {
		clear(out)
		rows, err := s.pool.Query(ctx, "SELECT user_id, trimmed_upto, last_offset FROM streams WHERE user_id = ANY($1::text[])", users)
		if err != nil {
			return err
		}
		var (
			user string
			b    bounds
		)
		_, err = pgx.ForEachRow(rows, []any{&user, &b.trimmed, &b.last}, func() error {
			out[user] = b
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
