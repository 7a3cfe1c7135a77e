package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"github.com/herald-gw/herald"
)

// Retention (Trim) in three steps, after the applier has moved everything
// appended before the Trim into the tables:
//
//  1. Find each stream's cut, the newest offset to delete, by reading on the
//     pool, so the writer is not held up. The age limit is a range of the
//     ts index: only the expired rows are read. The count limit needs a
//     stream's first and last offset (two index seeks), but only for the
//     streams that grew since the last Trim: the writer records which
//     users it appended to. The first Trim of a Store, or one with a
//     smaller keep than the last, scans the whole stream index instead.
//  2. Delete each stream's messages up to its cut, in writer transactions
//     of about trimStep messages, so Appends queued meanwhile wait for one
//     small transaction at most.
//  3. When a delete takes a stream's newest message, write its last offset
//     to streams in the same transaction, so offsets never go back.

// trimStep is about how many messages one retention transaction deletes.
const trimStep = 2000

// maxTracked bounds the set of users appended to since the last Trim. Past
// it, tracking stops and the next Trim scans every stream.
const maxTracked = 1 << 17

type trimState struct {
	run sync.Mutex // one Trim at a time

	mu      sync.Mutex
	full    bool                       // the next count trim must scan every stream
	touched map[herald.UserID]struct{} // users appended to since the last count trim (unless full)
	keep    int                        // keep of the last complete count trim
}

// touch records the users a committed batch appended to.
func (t *trimState) touch(users map[herald.UserID]uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.full {
		return
	}
	if t.touched == nil {
		t.touched = make(map[herald.UserID]struct{}, len(users))
	}
	for u := range users {
		t.touched[u] = struct{}{}
	}
	if len(t.touched) > maxTracked {
		t.full, t.touched = true, nil
	}
}

// take starts a count trim: it returns the users to check, or full when
// every stream must be, and starts tracking afresh.
func (t *trimState) take(keep int) (users map[herald.UserID]struct{}, full bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	full = t.full || keep < t.keep
	users = t.touched
	t.full, t.touched = false, nil
	return users, full
}

// finish records the outcome of a count trim begun with take: on success
// the next one can start from the users touched since; on failure they are
// still to be checked.
func (t *trimState) finish(keep int, users map[herald.UserID]struct{}, full bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err == nil:
		t.keep = keep
	case full || t.full:
		t.full, t.touched = true, nil
	default:
		if t.touched == nil {
			t.touched = make(map[herald.UserID]struct{}, len(users))
		}
		for u := range users {
			t.touched[u] = struct{}{}
		}
	}
}

// span is the part of one stream to delete: lo is (about) its first
// offset, hi the newest offset to delete.
type span struct{ lo, hi uint64 }

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
	s.trim.run.Lock()
	defer s.trim.run.Unlock()

	cuts := make(map[herald.UserID]span)
	var (
		users map[herald.UserID]struct{}
		full  bool
	)
	if keep > 0 {
		users, full = s.trim.take(keep)
	}
	// Retention reads the tables: apply the log first, so that what was
	// appended before this Trim is counted and aged too. After take, so
	// that every user it hands over has its Appends in the tables.
	n := 0
	err := s.do(ctx, func() error { return nil })
	if err == nil {
		err = s.trimCuts(ctx, cuts, keep, before, users, full)
	}
	if err == nil {
		n, err = s.trimDelete(ctx, cuts)
	}
	if keep > 0 {
		s.trim.finish(keep, users, full, err)
	}
	if err != nil {
		return n, fmt.Errorf("sqlite: trim: %w", err)
	}
	return n, nil
}

// trimCuts fills cuts from the pool's view of the streams.
func (s *Store) trimCuts(ctx context.Context, cuts map[herald.UserID]span, keep int, before time.Time, users map[herald.UserID]struct{}, full bool) error {
	add := func(user string, lo, hi int64) {
		c, ok := cuts[herald.UserID(user)]
		if !ok {
			c.lo = uint64(lo)
		}
		c.lo = min(c.lo, uint64(lo))
		c.hi = max(c.hi, uint64(hi))
		cuts[herald.UserID(user)] = c
	}
	// scan adds the (user, first, cut) rows of a trimAll or trimAge query;
	// for trimAll, whose third column is the newest offset, count is set.
	count := false
	scan := func(rows *sql.Rows, err error) error {
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				user         string
				first, newer int64
			)
			if err := rows.Scan(&user, &first, &newer); err != nil {
				return err
			}
			if count {
				newer -= int64(keep) // the newest offset beyond the keep newest
			}
			add(user, first, newer)
		}
		return rows.Err()
	}

	if keep > 0 {
		if full {
			count = true
			if err := scan(s.r.trimAll.QueryContext(ctx, keep)); err != nil {
				return err
			}
			count = false
		} else {
			for u := range users {
				var first, last sql.NullInt64
				if err := s.r.trimUser.QueryRowContext(ctx, string(u)).Scan(&first, &last); err != nil {
					return err
				}
				if first.Valid && last.Int64-first.Int64 >= int64(keep) {
					add(string(u), first.Int64, last.Int64-int64(keep))
				}
			}
		}
	}
	if !before.IsZero() {
		if err := scan(s.r.trimAge.QueryContext(ctx, before.UnixNano())); err != nil {
			return err
		}
	}
	return nil
}

// trimItem deletes user's messages up to offset upTo.
type trimItem struct {
	user herald.UserID
	upTo uint64
}

// trimDelete deletes the cuts in writer transactions of about trimStep
// messages each and returns how many messages were deleted.
func (s *Store) trimDelete(ctx context.Context, cuts map[herald.UserID]span) (int, error) {
	deleted := 0
	var (
		items []trimItem
		rows  uint64
	)
	flush := func() error {
		if len(items) == 0 {
			return nil
		}
		var n int
		err := s.do(ctx, s.trimOp(items, &n))
		items, rows = nil, 0
		if err != nil {
			return err
		}
		deleted += n
		return nil
	}
	for user, c := range cuts {
		// Large cuts go in steps, oldest first; each step's estimate is
		// exact while lo is the stream's first offset.
		for done := max(c.lo, 1) - 1; done < c.hi; {
			upTo := min(c.hi, done+trimStep-rows)
			items = append(items, trimItem{user, upTo})
			rows += upTo - done
			done = upTo
			if rows >= trimStep {
				if err := flush(); err != nil {
					return deleted, err
				}
			}
		}
	}
	return deleted, flush()
}

// trimOp returns the writer op that deletes items and counts the deleted
// messages into *deleted.
func (s *Store) trimOp(items []trimItem, deleted *int) func() error {
	return func() error {
		ctx := context.Background()
		n := 0
		for _, it := range items {
			// Read last before deleting: the delete may take the newest
			// message, whose offset then lives on only in streams.
			// The tables' last offset, not the appender's: a newer one
			// in the tail is not being deleted.
			var l int64
			if err := s.w.lastOffset.QueryRowContext(ctx, string(it.user)).Scan(&l); err != nil {
				return fmt.Errorf("read last offset of %q: %w", it.user, err)
			}
			last := uint64(l)
			res, err := s.w.deleteUpTo.ExecContext(ctx, string(it.user), int64(it.upTo))
			if err != nil {
				return fmt.Errorf("delete %q up to %d: %w", it.user, it.upTo, err)
			}
			k, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += int(k)
			if k > 0 && it.upTo >= last {
				if _, err := s.w.keepLast.ExecContext(ctx, string(it.user), int64(last)); err != nil {
					return fmt.Errorf("keep last offset of %q: %w", it.user, err)
				}
			}
		}
		*deleted = n
		return nil
	}
}
