package postgres

import (
	"context"
	"slices"
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
// did — so each answer still holds everything committed before its call.

// boundsReq is one Bounds call waiting for its answer.
type boundsReq struct {
	user        string
	done        chan struct{}
	first, last uint64
	err         error
}

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
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	req := &boundsReq{user: string(user), done: make(chan struct{})}
	s.bmu.Lock()
	s.bpending = append(s.bpending, req)
	if !s.bounding {
		s.bounding = true
		go s.boundsLoop()
	}
	s.bmu.Unlock()
	select {
	case <-req.done:
		return req.first, req.last, req.err
	case <-ctx.Done():
		return 0, 0, s.wrap(ctx, "bounds", ctx.Err())
	}
}

// boundsLoop answers the waiting calls, a batch per query, until none is
// left.
func (s *Store) boundsLoop() {
	for {
		s.bmu.Lock()
		batch := s.bpending
		s.bpending = nil
		if len(batch) == 0 {
			s.bounding = false
			s.bmu.Unlock()
			return
		}
		s.bmu.Unlock()
		users := make([]string, 0, len(batch))
		for _, r := range batch {
			users = append(users, r.user)
		}
		slices.Sort(users)
		users = slices.Compact(users)
		if s.beforeBounds != nil {
			s.beforeBounds()
		}
		got, err := s.queryBounds(users)
		for _, r := range batch {
			if r.err = err; err == nil {
				b := got[r.user]
				r.last = uint64(b.last)
				if b.last > b.trimmed {
					r.first = uint64(b.trimmed) + 1
				}
			}
			close(r.done)
		}
		s.boundsQueries.Add(1)
	}
}

type bounds struct{ trimmed, last int64 }

// queryBounds reads the streams rows of users; a user without one is
// absent (nothing was ever appended).
func (s *Store) queryBounds(users []string) (map[string]bounds, error) {
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
