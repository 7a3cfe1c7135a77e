// Package memory is a herald.Store that keeps every stream in process memory:
// for tests, and for running Herald without durable history. Nothing
// survives a restart, so each Store has a fresh random epoch, which tells a
// resuming client that offsets from a previous process mean nothing here.
//
// It implements the same semantics as package sqlite, retention and inbox
// included, and passes the same behaviour suite. One mutex orders
// everything: Appends commit one after another
// under it.
package memory

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/herald-gw/herald"
)

// MaxLimit is the most messages one Since call returns; a limit <= 0 or
// above it means MaxLimit.
const MaxLimit = herald.MaxHistoryPage

// ErrClosed is returned by every method but Epoch and Close once Close has
// been called. It carries herald.EUnavailable, so an API handler reports
// 503 (shutting down).
var ErrClosed error = herald.Errorf(herald.EUnavailable, "message store is closed")

// Store is an in-memory herald.Store. It is safe for concurrent use.
type Store struct {
	epoch string

	mu      sync.RWMutex
	closed  bool
	streams map[herald.UserID]*stream
}

// stream is one user's stream. Retention trims from the front only, so the
// retained messages have consecutive offsets: msgs[i].Offset ==
// msgs[0].Offset+i, and the newest is last unless all were trimmed.
type stream struct {
	msgs []entry
	last uint64 // newest offset ever assigned
}

type entry struct {
	herald.Message
	flags herald.InboxFlags
}

// index returns the position in s.msgs of the first message with Offset >
// after (len(s.msgs) if none).
func (s *stream) index(after uint64) int {
	if len(s.msgs) == 0 {
		return 0
	}
	first := s.msgs[0].Offset
	if after < first {
		return 0
	}
	return int(min(after-first+1, uint64(len(s.msgs))))
}

var _ herald.Store = (*Store)(nil)

// New returns an empty Store with a new random epoch.
func New() *Store {
	return &Store{
		epoch:   herald.NewEpoch(),
		streams: make(map[herald.UserID]*stream),
	}
}

// Epoch returns the epoch chosen when the Store was created.
func (s *Store) Epoch() string { return s.epoch }

// Append stores copies of msgs, assigning each the next Offset of its user's
// stream and the Store's Epoch, in slice order, and filling in Time and ID
// when they are zero. It is atomic: either all messages are stored or, on
// error, none. The payload bytes are copied, so the caller may reuse Data.
func (s *Store) Append(ctx context.Context, msgs []*herald.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := herald.CheckMessages(msgs); err != nil {
		return fmt.Errorf("memory: append: %w", err)
	}
	now := time.Now()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for _, m := range msgs {
		if m.Time.IsZero() {
			m.Time = now
		}
		if m.ID == "" {
			m.ID = herald.NewMessageID(m.Time)
		}
		st := s.streams[m.User]
		if st == nil {
			st = &stream{}
			s.streams[m.User] = st
		}
		st.last++
		m.Offset = st.last
		m.Epoch = s.epoch
		stored := *m
		stored.Data = bytes.Clone(m.Data)
		st.msgs = append(st.msgs, entry{Message: stored})
	}
	return nil
}

// rlock takes the read lock unless ctx has ended or the Store is closed; on
// success the caller must RUnlock.
func (s *Store) rlock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// Since returns up to limit messages of user with Offset > since, in offset
// order. The returned messages are copies; callers may modify them.
func (s *Store) Since(ctx context.Context, user herald.UserID, since uint64, limit int) ([]herald.Message, error) {
	if limit <= 0 || limit > MaxLimit {
		limit = MaxLimit
	}
	if err := s.rlock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	st := s.streams[user]
	if st == nil {
		return nil, nil
	}
	page := st.msgs[st.index(since):]
	if len(page) == 0 {
		return nil, nil
	}
	page = page[:min(len(page), limit)]
	out := make([]herald.Message, len(page))
	for i := range page {
		out[i] = page[i].Message
		// Copy the payload so a caller cannot corrupt the stored history.
		out[i].Data = bytes.Clone(page[i].Data)
	}
	return out, nil
}

// Bounds reports the oldest retained and the newest assigned offset of
// user's stream.
func (s *Store) Bounds(ctx context.Context, user herald.UserID) (first, last uint64, err error) {
	if err := s.rlock(ctx); err != nil {
		return 0, 0, err
	}
	defer s.mu.RUnlock()
	st := s.streams[user]
	if st == nil {
		return 0, 0, nil
	}
	if len(st.msgs) > 0 {
		first = st.msgs[0].Offset
	}
	return first, st.last, nil
}

// Trim applies retention to every stream (see herald.Store). It holds the
// lock for one pass over all retained messages.
func (s *Store) Trim(ctx context.Context, keep int, before time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if keep <= 0 && before.IsZero() {
		return 0, nil
	}
	byAge, cutoff := !before.IsZero(), before.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	deleted := 0
	for _, st := range s.streams {
		n := 0 // messages to drop from the front
		if keep > 0 && len(st.msgs) > keep {
			n = len(st.msgs) - keep
		}
		if byAge {
			// The newest message older than the cutoff takes every
			// earlier offset with it: retention trims from the front.
			for i := len(st.msgs) - 1; i >= n; i-- {
				if st.msgs[i].Time.UnixNano() < cutoff {
					n = i + 1
					break
				}
			}
		}
		if n == 0 {
			continue
		}
		clear(st.msgs[:n]) // let the payloads go
		st.msgs = st.msgs[n:]
		if cap(st.msgs) > 64 && len(st.msgs) < cap(st.msgs)/4 {
			st.msgs = slices.Clone(st.msgs) // release the trimmed array
		}
		deleted += n
	}
	return deleted, nil
}

// Inbox lists the user's retained messages with their flags, newest first.
func (s *Store) Inbox(ctx context.Context, q herald.InboxQuery) ([]herald.InboxItem, error) {
	mask, want, ok := q.Status.Filter()
	if !ok {
		return nil, herald.Errorf(herald.EInvalidRequest, "unknown inbox status %d", q.Status)
	}
	limit := q.PageSize()
	if err := s.rlock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	st := s.streams[q.User]
	if st == nil {
		return nil, nil
	}
	end := len(st.msgs)
	if q.Before != 0 {
		end = st.index(q.Before - 1) // offsets < Before
	}
	var out []herald.InboxItem
	for i := end - 1; i >= 0 && len(out) < limit; i-- {
		e := &st.msgs[i]
		if e.flags&mask != want {
			continue
		}
		it := e.flags.Item(e.Message)
		it.Data = bytes.Clone(e.Data)
		out = append(out, it)
	}
	return out, nil
}

// Mark sets mark on the user's messages with the given ids, or on all of
// them, and returns the ids whose flags changed.
func (s *Store) Mark(ctx context.Context, user herald.UserID, mark herald.Mark, ids []string, all bool) ([]string, error) {
	bits := mark.Flags()
	if bits == 0 {
		return nil, herald.Errorf(herald.EInvalidRequest, "unknown mark %d", mark)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var wanted map[string]bool
	if !all {
		if len(ids) == 0 {
			// Still report a closed store.
			if err := s.rlock(ctx); err != nil {
				return nil, err
			}
			s.mu.RUnlock()
			return nil, nil
		}
		wanted = make(map[string]bool, len(ids))
		for _, id := range ids {
			wanted[id] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	st := s.streams[user]
	if st == nil {
		return nil, nil
	}
	var changed []string
	for i := range st.msgs {
		e := &st.msgs[i]
		if (all || wanted[e.ID]) && e.flags|bits != e.flags {
			e.flags |= bits
			changed = append(changed, e.ID)
		}
	}
	return herald.DedupeIDs(changed), nil
}

// Counts returns the user's unread and unseen counts over retained messages
// that are not archived.
func (s *Store) Counts(ctx context.Context, user herald.UserID) (herald.InboxCounts, error) {
	var c herald.InboxCounts
	if err := s.rlock(ctx); err != nil {
		return c, err
	}
	defer s.mu.RUnlock()
	st := s.streams[user]
	if st == nil {
		return c, nil
	}
	for i := range st.msgs {
		st.msgs[i].flags.Count(&c)
	}
	return c, nil
}

// Close discards the history and makes later calls fail with ErrClosed. It
// is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.streams = nil
	return nil
}
