package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Retention (Trim) in two steps:
//
//  1. Find each stream's cut, the newest offset to delete. The count limit
//     is a scan of streams alone (last_offset - trimmed_upto is how many
//     messages a stream retains), the age limit a range of the ts index.
//  2. Delete up to the cuts in transactions of about trimStep messages,
//     each raising the streams' trimmed_upto with its delete, so that
//     Bounds stays exact and no transaction holds up Appends for long.
//
// A step locks the stream rows of its users first, in the byte order of
// their ids as Append does, so a step and an Append over the same users
// cannot deadlock; the lock also keeps an Append of those users waiting
// for the step (a few milliseconds), which is what makes trimmed_upto and
// the delete one atomic change. Several nodes may trim at once: a delete
// of rows another node deleted first deletes nothing, and trimmed_upto
// only grows.

// trimStep is about how many messages one retention transaction deletes.
const trimStep = 2000

// cut is the part of one stream to delete: offsets lo+1 .. hi.
type cut struct{ lo, hi int64 }

// Trim applies retention: per user it keeps at most keep newest messages
// (keep <= 0: no count limit) and drops the messages whose Time is before
// before (zero: no age limit) along with the user's older offsets. It
// returns how many messages it deleted, also when it fails part way.
func (s *Store) Trim(ctx context.Context, keep int, before time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	if keep <= 0 && before.IsZero() {
		return 0, nil
	}
	cuts := make(map[string]cut)
	add := func(user string, lo, hi int64) {
		if hi <= lo {
			return
		}
		c, ok := cuts[user]
		if !ok {
			c.lo = lo
		}
		c.lo, c.hi = min(c.lo, lo), max(c.hi, hi)
		cuts[user] = c
	}
	scan := func(ctx context.Context, sql string, arg any) error {
		rows, err := s.pool.Query(ctx, sql, arg)
		if err != nil {
			return err
		}
		var (
			user   string
			lo, hi int64
		)
		_, err = pgx.ForEachRow(rows, []any{&user, &lo, &hi}, func() error {
			add(user, lo, hi)
			return nil
		})
		return err
	}
	err := s.retried(ctx, "trim", func(ctx context.Context) error {
		clear(cuts)
		if keep > 0 {
			if err := scan(ctx, `SELECT user_id, trimmed_upto, last_offset - $1 FROM streams
				WHERE last_offset - trimmed_upto > $1`, int64(keep)); err != nil {
				return err
			}
		}
		if !before.IsZero() {
			if err := scan(ctx, `SELECT m.user_id, s.trimmed_upto, max(m."offset")
				FROM messages m JOIN streams s USING (user_id)
				WHERE m.ts < $1 GROUP BY m.user_id, s.trimmed_upto`, before.UnixNano()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}

	deleted := 0
	var (
		users    []string
		los, his []int64
		rows     int64
	)
	flush := func() error {
		if len(users) == 0 {
			return nil
		}
		var n int64
		err := s.retried(ctx, "trim", func(ctx context.Context) error {
			var err error
			n, err = s.trimStep(ctx, users, los, his)
			return err
		})
		users, los, his, rows = users[:0], los[:0], his[:0], 0
		deleted += int(n)
		return err
	}
	for user, c := range cuts {
		// A long cut goes in steps, oldest first.
		for done := c.lo; done < c.hi; {
			upTo := min(c.hi, done+trimStep-rows)
			users, los, his = append(users, user), append(los, done), append(his, upTo)
			rows += upTo - done
			done = upTo
			if rows >= trimStep {
				if err := flush(); err != nil {
					return deleted, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return deleted, err
	}
	return deleted, nil
}

// trimStep deletes, for each i, the messages of users[i] with offsets in
// (los[i], his[i]] and raises its trimmed_upto to his[i], in one
// transaction (one batch is one implicit transaction), and returns how many
// messages it deleted.
func (s *Store) trimStep(ctx context.Context, users []string, los, his []int64) (int64, error) {
	b := &pgx.Batch{}
	b.Queue(`SELECT 1 FROM streams WHERE user_id = ANY($1) ORDER BY user_id COLLATE "C" FOR UPDATE`, users)
	b.Queue(`DELETE FROM messages m USING unnest($1::text[], $2::bigint[], $3::bigint[]) AS c(user_id, lo, hi)
		WHERE m.user_id = c.user_id AND m."offset" > c.lo AND m."offset" <= c.hi`, users, los, his)
	b.Queue(`UPDATE streams s SET trimmed_upto = GREATEST(s.trimmed_upto, c.hi)
		FROM unnest($1::text[], $2::bigint[]) AS c(user_id, hi) WHERE s.user_id = c.user_id`, users, his)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return 0, fmt.Errorf("lock streams: %w", err)
	}
	tag, err := br.Exec()
	if err != nil {
		return 0, fmt.Errorf("delete: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return 0, fmt.Errorf("record trimmed offsets: %w", err)
	}
	return tag.RowsAffected(), br.Close()
}
