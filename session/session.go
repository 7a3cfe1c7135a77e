package session

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/wire"
)

// Transport moves one session's bytes. It knows frames or events, never
// users or offsets. Every method must return without blocking on the
// network: the hub calls Write with a shard lock held.
type Transport interface {
	// Write queues b, already encoded in the session's format, for the
	// peer. It reports false when the transport is closed or b did not fit
	// its queue bounds; in the latter case the transport closes itself
	// with 4008 (the client resumes and loses nothing) and, when it tears
	// the connection down, calls Session.Overflowed before Session.Gone,
	// so that the observer learns the code.
	Write(b []byte) bool
	// Pending reports what is queued and not yet written, so a replay can
	// wait for room instead of filling the queue past its bound.
	Pending() (frames, bytes int)
	// Ping sends the transport's own heartbeat (a WebSocket ping frame, an
	// SSE comment line).
	Ping()
	// Close ends the connection with a close code and reason (a close
	// frame on WebSocket, a close event on SSE) after what is queued.
	Close(code uint16, reason string)
	// Bidirectional reports whether the client can answer pings. A
	// one-way transport (SSE) cannot, so its liveness rests on writes
	// succeeding within the write timeout.
	Bidirectional() bool
}

// Session states, guarded by Session.mu.
const (
	stateOpen    uint8 = iota
	stateClosing       // Close was called or the transport refused a write
	stateClosed        // the transport is gone (Gone was called)
)

// Session is one client connection as Herald sees it. It implements
// hub.Conn. It is kept small: idle connections are what a node holds most
// of, and every byte is multiplied by a million on a big node.
type Session struct {
	m           *Manager
	t           Transport
	id          herald.ConnID
	user        herald.UserID
	connectedAt int64 // unix nanos
	sourceIP    string
	userAgent   string

	lastActive atomic.Int64  // unix nanos of the last read or write
	acked      atomic.Uint64 // highest offset the client acknowledged
	cu         atomic.Pointer[catchup]
	// lim is the reader's: the client's message rate limiter, made at the
	// first message counted against it, so that the connections that never
	// send anything (most of them: SSE, raw, idle tabs) pay only this word.
	lim      *rate.Limiter
	pingsOut atomic.Int32 // pings sent since the client last said anything
	// expIdx is the session's place in its expiry bucket, the one of the
	// second of expires (guarded by the manager's expiries.mu, not by mu).
	// It sits here, beside the other small fields, to share their word.
	expIdx int32

	// The small fields sit together, so they share one word instead of
	// padding one each.
	format   wire.Format
	state    uint8 // guarded by mu
	started  bool  // guarded by mu: Start was called, the session is in the hub
	spoke    bool  // the reader's: the client has sent a message (a resume must be the first)
	known    bool  // guarded by mu: lastOffset is a real position (read from the Store, a resume point, or the first message)
	reported bool  // guarded by mu: the observer and the route set were told how the session ended
	routed   bool  // set at New: an API Gateway route set hears of this session (Config.Routes)
	// resumes is set when the client gave a resume point before Start
	// (?since= or a first resume message), which then travels in the
	// catch-up (catchup.resume) rather than in a word of every Session.
	resumes bool

	mu sync.Mutex
	// expires is the token's expiry, unix nanos; 0 = none. While it is set
	// the session sits in the bucket of its second (see expiries).
	expires int64
	// lastOffset is the highest stream offset sent (or known to the client
	// through its resume point); firstLive is the first stored offset sent
	// live, before any resume message: together they tell what the client
	// has been sent, which is what de-dup, gap detection and acks judge by.
	lastOffset uint64
	firstLive  uint64
}

// ID, User and Format describe the session for the hub.
func (s *Session) ID() herald.ConnID     { return s.id }
func (s *Session) User() herald.UserID   { return s.user }
func (s *Session) Format() wire.Format   { return s.format }
func (s *Session) Acked() uint64         { return s.acked.Load() }
func (s *Session) Transport() Transport  { return s.t }
func (s *Session) Manager() *Manager     { return s.m }
func (s *Session) PingsOutstanding() int { return int(s.pingsOut.Load()) }

// Info describes the session for the server APIs.
func (s *Session) Info() herald.ConnInfo {
	return herald.ConnInfo{
		ID: s.id, User: s.user, Protocol: s.format.String(),
		ConnectedAt:  time.Unix(0, s.connectedAt).UTC(),
		LastActiveAt: time.Unix(0, s.lastActive.Load()).UTC(),
		SourceIP:     s.sourceIP, UserAgent: s.userAgent,
	}
}

// Read tells the session the client sent something (any frame, a pong
// included): it is alive, whatever the clock says.
func (s *Session) Read(now time.Time) {
	s.pingsOut.Store(0)
	s.lastActive.Store(now.UnixNano())
}

// Wrote records that bytes reached the socket.
func (s *Session) Wrote(now time.Time) { s.lastActive.Store(now.UnixNano()) }

// Send hands the session one message encoded in its format. offset is the
// message's position in the user's stream, or 0 for what is outside it
// (broadcasts, control messages, posts to one connection). Send never
// blocks; it reports false when the session cannot take the message.
//
// Stored messages reach the client at most once and in offset order: an
// offset the session already sent is dropped; while a replay or a gap fill
// runs, stored messages are parked and sent after it; an offset beyond the
// next one starts a gap fill from the Store.
func (s *Session) Send(b []byte, offset uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateOpen {
		return false
	}
	if offset == 0 {
		return s.writeLocked(b)
	}
	if offset <= s.lastOffset {
		return true
	}
	if cu := s.cu.Load(); cu != nil {
		return s.parkLocked(cu, b, offset)
	}
	if s.known && offset != s.lastOffset+1 {
		// Something between is late or lost: fetch it, then this one.
		cu := newCatchup()
		s.cu.Store(cu)
		s.parkLocked(cu, b, offset)
		go s.runCatchup(nil)
		return true
	}
	if s.firstLive == 0 {
		s.firstLive = offset
	}
	s.known = true // without a position from the Store, the first message is one
	return s.sendStoredLocked(b, offset)
}

// sendStoredLocked writes a stored message that is next in order.
func (s *Session) sendStoredLocked(b []byte, offset uint64) bool {
	if !s.writeLocked(b) {
		return false
	}
	s.lastOffset = offset
	return true
}

// writeLocked hands b to the transport. A refused write means the
// transport is closing itself: take nothing more.
func (s *Session) writeLocked(b []byte) bool {
	if s.t.Write(b) {
		return true
	}
	s.state = stateClosing
	return false
}

// parkLocked holds a stored message back until the running catch-up is
// done. The parked frames are shared with the other connections that got
// the same message, so parking costs a slice entry, bounded like the queue.
func (s *Session) parkLocked(cu *catchup, b []byte, offset uint64) bool {
	if len(cu.parked) >= s.m.cfg.MaxQueueFrames {
		s.closeLocked(wire.CloseSlowConsumer, "send queue full")
		return false
	}
	cu.parked = append(cu.parked, parked{b, offset})
	return true
}

// control sends a control message of type typ (body is its JSON) in the
// session's format; raw connections get none.
func (s *Session) control(typ string, body []byte) {
	if b := wire.Control(s.format, typ, body); b != nil {
		s.Send(b, 0)
	}
}

// Close ends the session: the transport sends code and reason and closes.
// The session leaves the hub at once, so it is neither counted nor sent
// anything while the close handshake runs.
func (s *Session) Close(code uint16, reason string) {
	s.mu.Lock()
	s.closeLocked(code, reason)
	s.mu.Unlock()
}

func (s *Session) closeLocked(code uint16, reason string) {
	if s.state != stateOpen {
		return
	}
	s.state = stateClosing
	s.endedLocked(code, reason)
	s.stopExpiryLocked()
	s.t.Close(code, reason)
	// The hub calls Close with a shard lock held (eviction excepted, which
	// removes first): leave it from another goroutine.
	go s.m.hub.Remove(s)
}

// Gone is called by the transport once, when the connection is torn down:
// the session leaves the hub, stops its timers and wakes a waiting replay.
func (s *Session) Gone() {
	s.mu.Lock()
	s.endedLocked(CloseAbnormal, "connection lost") // unless a close came first
	s.state = stateClosed
	s.stopExpiryLocked()
	s.mu.Unlock()
	s.m.hub.Remove(s)
	s.Drained()
}

// Overflowed is called by a transport that closed itself with 4008
// because its send queue was full (see Transport.Write), before Gone, so
// that the session reports why it ended. It must be called without the
// transport's lock held: it takes the session's.
func (s *Session) Overflowed() {
	s.mu.Lock()
	s.endedLocked(wire.CloseSlowConsumer, "send queue full")
	s.mu.Unlock()
}

// endedLocked tells the observer, once, how a started session ended: the
// first close decided wins, whoever decided it. A routed session's route
// set hears it too, so $disconnect runs exactly once whatever closed the
// connection.
func (s *Session) endedLocked(code uint16, reason string) {
	if s.reported || !s.started {
		return
	}
	s.reported = true
	if o := s.m.cfg.Observer; o != nil {
		o.Closed(s.transport(), int(code), reason)
	}
	if s.routed {
		s.m.cfg.Routes.Ended(s, int(code), reason)
	}
}

// transport names what carries the session, for the observer.
func (s *Session) transport() string {
	if s.format == wire.FormatSSE {
		return TransportSSE
	}
	return TransportWebSocket
}

// Drained is called by the transport whenever its queue shrank, so a
// replay waiting for room goes on.
func (s *Session) Drained() {
	if cu := s.cu.Load(); cu != nil {
		select {
		case cu.drained <- struct{}{}:
		default:
		}
	}
}

// Heartbeat pings the client, and closes the session with 1008 when the
// pings already sent went unanswered: nothing at all was read since
// MaxPingsOut pings were sent. Liveness is judged by pings actually sent,
// not by comparing clocks, so a heartbeat loop that falls behind under
// load sends fewer pings and can never make a live client look dead.
func (s *Session) Heartbeat() {
	if s.t.Bidirectional() {
		if int(s.pingsOut.Load()) >= s.m.cfg.MaxPingsOut {
			s.Close(wire.ClosePolicyViolation, "heartbeat timeout")
			return
		}
		s.pingsOut.Add(1)
	}
	s.t.Ping()
	if s.format == wire.FormatV1 {
		// Browsers answer protocol pings themselves and never show them to
		// code: the app ping is what lets a browser notice a dead link.
		s.Send(s.m.appPing, 0)
	}
}

// armExpiryLocked closes the session when its token expires, on the
// token's own deadline rather than at the next heartbeat; a zero at
// disarms.
func (s *Session) armExpiryLocked(at time.Time) {
	s.m.expiries.arm(s, at) // before s.expires changes: it names the old bucket
	s.expires = 0
	if !at.IsZero() {
		s.expires = at.UnixNano()
	}
}

func (s *Session) stopExpiryLocked() {
	if s.expires != 0 {
		s.m.expiries.arm(s, time.Time{})
		s.expires = 0
	}
}
