// Package memory is a herald.Store that keeps every stream in process memory:
// for tests, and for running Herald without durable history. Nothing
// survives a restart, so each Store has a fresh random epoch, which tells a
// resuming client that offsets from a previous process mean nothing here.
//
// History is kept for the life of the Store; there is no retention limit.
package memory

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/herald-gw/herald"
)

// MaxLimit is the most messages one Since call returns; a limit <= 0 or
// above it means MaxLimit. It matches the sqlite store.
const MaxLimit = 1000

// ErrClosed is returned by Append and Since once Close has been called. It
// carries herald.EUnavailable, so an API handler reports 503 (shutting down).
var ErrClosed error = herald.Errorf(herald.EUnavailable, "message store is closed")

// Store is an in-memory herald.Store. It is safe for concurrent use.
type Store struct {
	epoch string

	mu      sync.RWMutex
	closed  bool
	streams map[herald.UserID][]herald.Message // stream[i].Offset == i+1
}

var _ herald.Store = (*Store)(nil)

// New returns an empty Store with a new random epoch.
func New() *Store {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand.Read panics rather than err)
	return &Store{
		epoch:   hex.EncodeToString(b[:]),
		streams: make(map[herald.UserID][]herald.Message),
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
	for i, m := range msgs {
		if m == nil {
			return fmt.Errorf("memory: append: message %d is nil", i)
		}
		if m.User == "" {
			return fmt.Errorf("memory: append: message %d has no user", i)
		}
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
			m.ID = newID(m.Time)
		}
		stream := s.streams[m.User]
		m.Offset = uint64(len(stream)) + 1
		m.Epoch = s.epoch
		stored := *m
		stored.Data = bytes.Clone(m.Data)
		s.streams[m.User] = append(stream, stored)
	}
	return nil
}

// Since returns up to limit messages of user with Offset > since, in offset
// order. The returned messages are copies; callers may modify them.
func (s *Store) Since(ctx context.Context, user herald.UserID, since uint64, limit int) ([]herald.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxLimit {
		limit = MaxLimit
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	stream := s.streams[user]
	// Offsets are dense from 1, so Offset > since starts at index since.
	if since >= uint64(len(stream)) {
		return nil, nil
	}
	page := stream[since:]
	if len(page) > limit {
		page = page[:limit]
	}
	out := make([]herald.Message, len(page))
	for i, m := range page {
		out[i] = m
		// Copy the payload so a caller cannot corrupt the stored history.
		out[i].Data = bytes.Clone(m.Data)
	}
	return out, nil
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

// newID returns a 32-character hex id: 48 bits of unix milliseconds followed
// by 80 random bits, like the sqlite store's, so ids sort roughly by time and
// stay unique without coordination.
func newID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	rand.Read(b[6:]) // never fails
	return hex.EncodeToString(b[:])
}
