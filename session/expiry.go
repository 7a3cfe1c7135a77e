package session

import (
	"sync"
	"time"

	"github.com/herald-gw/herald/wire"
)

// expiries closes sessions when their tokens expire, on each token's own
// deadline, without a timer per session. A token's exp is whole seconds
// (JWT NumericDate), so sessions are kept in one bucket per second and one
// timer is armed per bucket: a node with a million tabs holds a few
// thousand timers at most (one per second of the longest token's life),
// and a session costs a slot in a slice plus its bucket and index.
type expiries struct {
	clock Clock

	mu      sync.Mutex
	buckets map[int64]*expiryBucket
}

type expiryBucket struct {
	sessions []*Session
	timer    Timer
}

// bucketOf is the second at or after t: a session is never closed before
// its token's exp.
func bucketOf(t time.Time) int64 {
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return sec
}

// arm (re)schedules s to be closed at its token's expiry at; a zero at
// only disarms. Called with s.mu held; takes e.mu after it, never before.
func (e *expiries) arm(s *Session, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.removeLocked(s)
	if at.IsZero() {
		return
	}
	sec := bucketOf(at)
	b := e.buckets[sec]
	if b == nil {
		b = &expiryBucket{}
		if e.buckets == nil {
			e.buckets = make(map[int64]*expiryBucket)
		}
		e.buckets[sec] = b
		d := time.Unix(sec, 0).Sub(e.clock.Now())
		b.timer = e.clock.AfterFunc(max(d, 0), func() { e.fire(sec) })
	}
	s.expSec, s.expIdx = sec, int32(len(b.sessions))
	b.sessions = append(b.sessions, s)
}

// removeLocked takes s out of its bucket by swapping the last one into its
// place; an emptied bucket loses its timer.
func (e *expiries) removeLocked(s *Session) {
	if s.expSec == 0 {
		return
	}
	b := e.buckets[s.expSec]
	if b != nil && int(s.expIdx) < len(b.sessions) && b.sessions[s.expIdx] == s {
		last := len(b.sessions) - 1
		moved := b.sessions[last]
		b.sessions[s.expIdx] = moved
		moved.expIdx = s.expIdx
		b.sessions[last] = nil
		b.sessions = b.sessions[:last]
		if last == 0 {
			b.timer.Stop()
			delete(e.buckets, s.expSec)
		}
	}
	s.expSec, s.expIdx = 0, 0
}

// fire closes the sessions whose tokens expired in second sec.
func (e *expiries) fire(sec int64) {
	e.mu.Lock()
	b := e.buckets[sec]
	delete(e.buckets, sec)
	var due []*Session
	if b != nil {
		due = b.sessions
		for _, s := range due {
			s.expSec, s.expIdx = 0, 0
		}
	}
	e.mu.Unlock()
	for _, s := range due {
		s.Close(wire.CloseTokenExpired, "token expired")
	}
}

// pending reports how many sessions wait for their expiry, for tests.
func (e *expiries) pending() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, b := range e.buckets {
		n += len(b.sessions)
	}
	return n
}
