package session

import (
	"context"
	"encoding/json"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/wire"
)

// parked is a stored message held back while a catch-up runs.
type parked struct {
	b      []byte
	offset uint64
}

// catchup exists while a session reads the Store: a resume's replay, or
// the fill of a gap between the offsets it was handed.
type catchup struct {
	parked  []parked      // stored messages that arrived meanwhile, guarded by Session.mu
	drained chan struct{} // the transport signals queue progress here
	// resume is the client's resume point until Start replays from it,
	// guarded by Session.mu: it lives here rather than in the Session
	// because every session has a catch-up from New to Start, and only
	// until then is the point needed (Session.resumes remembers that there
	// was one).
	resume *Resume
}

func newCatchup() *catchup { return &catchup{drained: make(chan struct{}, 1)} }

// runCatchup sends the stored messages the client lacks, in order, then
// the parked ones, and goes live — with no gap and no duplicate at the
// switch-over. It relies on the session being in the hub before the Store
// is read: every message committed after that point reaches Send (and is
// parked), every one committed before is in the Store, and one that is
// both is dropped by its offset.
//
// With r (a resume), the client's point r.Since is checked first: another
// epoch (the Store lost its history), an offset from the future, or
// history already trimmed past it cannot be honoured, so the client gets
// {"type":"reset","epoch","offset"} and continues live from offset.
// Without r (a gap fill), the session continues after its last offset;
// when retention already dropped what is missing, that is a reset too.
func (s *Session) runCatchup(r *Resume) {
	ctx, cancel := context.WithTimeout(context.Background(), herald.ReplayTimeout)
	defer cancel()
	h := s.m.history
	prevLast := ^uint64(0)
	for {
		first, last, err := h.Bounds(ctx, s.user)
		if err != nil {
			s.m.log.Error("catch-up: read stream bounds", "conn", s.id, "user", s.user, "err", err)
			s.Close(wire.CloseInternal, "history unavailable")
			return
		}
		s.mu.Lock()
		cur := s.lastOffset
		if r != nil {
			cur = r.Since
		}
		s.mu.Unlock()
		reset := cur > last || cur < last && (first == 0 || first > cur+1)
		if r != nil && r.Epoch != "" && r.Epoch != h.Epoch() {
			reset = true
		}
		if reset {
			s.sendReset(ctx, h.Epoch(), last)
			if r != nil {
				s.resumed(ResumeReset, 0)
			}
		} else {
			s.mu.Lock()
			// The client has everything up to its resume point; a resume
			// starts before anything was sent, so that is its position.
			s.lastOffset, s.known = cur, true
			s.mu.Unlock()
			n, ok := s.replay(ctx, cur, last)
			if !ok {
				return
			}
			if r != nil {
				s.resumed(ResumeReplayed, n)
			}
		}
		r = nil
		// A parked message beyond the next offset means another gap: the
		// missing offsets were committed after Bounds was read, so read
		// again. Unless the Store made no progress: then it does not have
		// them (a message from another store, history lost meanwhile), and
		// waiting would never end — skip the gap with a reset instead.
		if s.goLive(ctx, last == prevLast) {
			return
		}
		prevLast = last
	}
}

// replay sends the stored messages after cur up to last, a page at a
// time, and reports how many it sent and whether the session goes on.
func (s *Session) replay(ctx context.Context, cur, last uint64) (sent int, ok bool) {
	h := s.m.history
	for cur < last {
		msgs, err := h.Since(ctx, s.user, cur, s.m.pageLimit)
		if err != nil {
			s.m.log.Error("catch-up: read history", "conn", s.id, "user", s.user, "err", err)
			s.Close(wire.CloseInternal, "history unavailable")
			return sent, false
		}
		for i := range msgs {
			m := &msgs[i]
			if m.Offset > last {
				return sent, true // newer ones are parked
			}
			if !s.sendReplayed(ctx, wire.Encode(s.format, m), m.Offset) {
				return sent, false
			}
			cur = m.Offset
			sent++
			msgs[i] = herald.Message{} // let the payload go as soon as it is queued
		}
		if len(msgs) < s.m.pageLimit {
			return sent, true
		}
	}
	return sent, true
}

// resumed tells the observer how a resume request was carried out;
// ResumeReplayed with nothing replayed is ResumeNone.
func (s *Session) resumed(outcome string, messages int) {
	o := s.m.cfg.Observer
	if o == nil {
		return
	}
	if outcome == ResumeReplayed && messages == 0 {
		outcome = ResumeNone
	}
	o.Resumed(outcome, messages)
}

// sendReset tells the client its resume point cannot be honoured and
// moves the session to last, so it continues live from there.
func (s *Session) sendReset(ctx context.Context, epoch string, last uint64) {
	s.mu.Lock()
	s.lastOffset, s.known = max(s.lastOffset, last), true
	s.mu.Unlock()
	if b := resetBytes(s.format, epoch, last); b != nil {
		s.sendReplayed(ctx, b, 0)
	}
}

func resetBytes(f wire.Format, epoch string, last uint64) []byte {
	body, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Epoch  string `json:"epoch"`
		Offset uint64 `json:"offset"`
	}{"reset", epoch, last})
	if f == wire.FormatSSE {
		// With the id, a browser that reconnects on its own resumes from
		// the reset point, not from before it.
		return wire.Event("reset", wire.EventID(epoch, last), body)
	}
	return wire.Control(f, "reset", body)
}

// goLive sends what was parked, in order, and ends the catch-up. When a
// parked message is not the next offset (another message went missing
// meanwhile) it keeps the rest parked and reports false: fill again — or,
// with jump, tells the client the gap cannot be filled (a reset) and goes
// on after it.
func (s *Session) goLive(ctx context.Context, jump bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cu := s.cu.Load()
	for i, p := range cu.parked {
		if s.state != stateOpen {
			break
		}
		if !s.known {
			// No position from the Store: the first parked message is it.
			s.lastOffset, s.known = p.offset-1, true
		}
		if p.offset > s.lastOffset+1 {
			if !jump {
				cu.parked = cu.parked[:copy(cu.parked, cu.parked[i:])]
				return false
			}
			s.m.log.Warn("catch-up: the store lacks offsets this session was handed; skipping them",
				"conn", s.id, "user", s.user, "from", s.lastOffset+1, "to", p.offset-1)
			s.lastOffset = p.offset - 1
			if b := resetBytes(s.format, s.m.history.Epoch(), s.lastOffset); b != nil {
				s.writeLocked(b)
			}
		}
		if p.offset == s.lastOffset+1 {
			if s.firstLive == 0 {
				s.firstLive = p.offset
			}
			s.sendStoredLocked(p.b, p.offset)
		}
	}
	s.cu.Store(nil)
	return true
}

// sendReplayed queues a replayed message, waiting for the transport while
// its queue is half full: a replay may be far larger than the queue, and
// it is the one sender that can afford to wait.
func (s *Session) sendReplayed(ctx context.Context, b []byte, offset uint64) bool {
	cu := s.cu.Load()
	for {
		s.mu.Lock()
		if s.state != stateOpen {
			s.mu.Unlock()
			return false
		}
		if offset != 0 && offset <= s.lastOffset {
			s.mu.Unlock()
			return true
		}
		frames, bytes := s.t.Pending()
		if frames == 0 || frames < s.m.cfg.MaxQueueFrames/2 && bytes+len(b) <= s.m.cfg.MaxQueueBytes/2 {
			ok := s.writeLocked(b)
			if ok && offset != 0 {
				s.lastOffset = offset
			}
			s.mu.Unlock()
			return ok
		}
		s.mu.Unlock()
		select {
		case <-cu.drained:
		case <-ctx.Done():
			s.Close(wire.CloseSlowConsumer, "replay too slow")
			return false
		}
	}
}

// startResume handles the first-message form of resume. Before the
// message arrived the session may already have sent live messages, and
// what the client lacks before them can no longer be sent in order. So:
// nothing sent yet → an ordinary replay; the live messages sent start
// right after the client's point → nothing to do; otherwise (a gap or an
// overlap) → a reset, so the client refetches instead of silently missing
// or repeating messages.
func (s *Session) startResume(r Resume) {
	s.mu.Lock()
	if s.state != stateOpen {
		s.mu.Unlock()
		return
	}
	if !s.started {
		// A transport that feeds the session before Start: resume exactly
		// as with ?since= (live messages are already parked since New, and
		// Start replays).
		s.cu.Load().resume, s.resumes = &r, true
		s.mu.Unlock()
		return
	}
	if s.firstLive == 0 && s.cu.Load() == nil {
		s.cu.Store(newCatchup())
		s.mu.Unlock()
		go s.runCatchup(&r)
		return
	}
	defer s.mu.Unlock()
	epochOK := r.Epoch == "" || r.Epoch == s.m.history.Epoch()
	if epochOK && s.firstLive == r.Since+1 && s.cu.Load() == nil {
		s.resumed(ResumeNone, 0) // seamless
		return
	}
	// Written under the lock that orders sends, so no live message can come
	// between the offset read here and the reset that names it.
	if b := resetBytes(s.format, s.m.history.Epoch(), s.lastOffset); b != nil {
		s.writeLocked(b)
	}
	s.resumed(ResumeReset, 0)
}
