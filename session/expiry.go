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
// and a session costs a slot in a slice plus its index there (its bucket
// is the second of its expires).
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
// only disarms. Called with s.mu held, before s.expires is set to at;
// takes e.mu after s.mu, never before.
func (e *expiries) arm(s *Session, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.removeLocked(s)
	if at.IsZero() {
		return
	}
	// The bucket is the one removeLocked will find from s.expires, which
	// holds at as unix nanos.
	sec := bucketOf(time.Unix(0, at.UnixNano()))
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
	s.expIdx = int32(len(b.sessions)) // the caller sets s.expires to at

	b.sessions = append(b.sessions, s)
}

// removeLocked takes s out of its bucket, the one of s.expires (which
// the caller has not changed yet), by swapping the last one into its
// place; an emptied bucket loses its timer. A session that is not in the
// bucket (never armed, or already fired) is left alone: the slot at its
// index holds another session or none.
func (e *expiries) removeLocked(s *Session) {
	if s.expires == 0 {
		return
	}
	sec := bucketOf(time.Unix(0, s.expires))
	b := e.buckets[sec]
	if b != nil && int(s.expIdx) < len(b.sessions) && b.sessions[s.expIdx] == s {
		last := len(b.sessions) - 1
		moved := b.sessions[last]
		b.sessions[s.expIdx] = moved
		moved.expIdx = s.expIdx
		b.sessions[last] = nil
		b.sessions = b.sessions[:last]
		if last == 0 {
			b.timer.Stop()
			delete(e.buckets, sec)
		}
	}
	s.expIdx = 0
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
			s.expIdx = 0
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
