package session

import (
	"time"

	"github.com/herald-gw/herald/hub"
)

// Observer is told what happens to connections, so that metrics can count
// it (package session knows no metrics library: cmd/herald adapts one).
// Set it in Config.Observer; nil observes nothing and costs nothing.
//
// Its methods are called on the paths they describe, some with a session's
// lock or a hub shard's lock held, from many goroutines at once: they must
// be safe for concurrent use, return quickly, never block and never call
// back into Herald. Counters and histograms are what they are for.
type Observer interface {
	// Opened is called when a session joins the hub (Manager.Start), with
	// the transport carrying it: TransportWebSocket or TransportSSE.
	Opened(transport string)
	// Closed is called once per opened session, when how it ends is
	// decided: code is the close code sent to the client (wire.Close…,
	// e.g. 4008 for a send queue overflow, 4030 for a client over its
	// message rate), or CloseAbnormal when the connection was lost
	// without one (the client went away, a write failed). A client's own
	// close frame, which Herald echoes, is reported with the client's
	// code (any of 1000–4999) and an empty reason; Herald's closes always
	// carry a reason. Bucket the codes before using them as a label.
	Closed(transport string, code int, reason string)
	// Resumed is called once per resume request (?since=, Last-Event-ID,
	// or a herald.v1 resume message) that was carried out: outcome is
	// ResumeReplayed (messages > 0 were sent from the Store), ResumeNone
	// (the client had everything already) or ResumeReset (the point could
	// not be honoured: another epoch, trimmed history, a point from the
	// future, or live messages already sent past it). A replay cut short
	// (the client left, the Store failed, the client read too slowly) is
	// not reported here: Closed says why it ended.
	Resumed(outcome string, messages int)
	// QueueWait is called by a transport each time its writer takes
	// frames from the send queue, with how long the oldest of them may
	// have waited there: since the writer started, for its first batch, or
	// since the previous batch was taken (an upper bound, kept without a
	// timestamp per frame). A frame the socket takes at once, written in
	// place without queueing, which is the usual case, waits nothing and
	// is not reported. It is where a slow consumer shows before it is
	// closed with 4008.
	QueueWait(wait time.Duration)
}

// Routes is an API Gateway route set (package routes) as sessions see it:
// told when a routed session (Params.Routed) opens, handed its data
// messages, and told once how it ended — whatever ended it: the client, the
// server API, a heartbeat, a limit, drain, or a lost connection. Like
// Observer's, its methods are called with locks held and must not block:
// an integration runs on a goroutine of the route set's own.
type Routes interface {
	// Opened is called by Manager.Start, before the session joins the hub.
	Opened(s *Session)
	// Message is called with each data message of a routed raw session,
	// after it was counted against the client's rate limit. p is borrowed:
	// copy what outlives the call.
	Message(s *Session, p []byte, binary bool)
	// Ended is called once per opened routed session, with what
	// Observer.Closed would be told.
	Ended(s *Session, code int, reason string)
}

// Transports named to Observer.
const (
	TransportWebSocket = "websocket"
	TransportSSE       = "sse"
)

// Resume outcomes named to Observer.Resumed.
const (
	ResumeReplayed = "replayed"
	ResumeNone     = "none"
	ResumeReset    = "reset"
)

// CloseAbnormal (1006, RFC 6455 §7.1.5) is the code Observer.Closed
// reports for a connection that ended without a close frame. Like 1005 it
// is never sent on the wire.
const CloseAbnormal uint16 = 1006

// QueueStats is what waits in the transports' send queues, across the
// sessions of a Manager: a snapshot for a metrics scrape.
type QueueStats struct {
	Sessions  int // sessions walked (those in the hub)
	Frames    int // frames waiting, all sessions together
	Bytes     int // bytes waiting, all sessions together
	MaxFrames int // the most frames waiting for one session
	MaxBytes  int // the most bytes waiting for one session
}

// QueueStats walks every session in the hub and sums what its transport
// has queued. It costs one short lock per connection and allocates only
// the hub's walk buffer, about what a heartbeat round costs: fine once per
// scrape, not per request. The sessions are read one after another, so on
// a busy node the result is a near snapshot, not an atomic one.
func (m *Manager) QueueStats() QueueStats {
	var st QueueStats
	m.hub.Each(func(c hub.Conn) {
		s, ok := c.(*Session)
		if !ok {
			return
		}
		frames, bytes := s.t.Pending()
		st.Sessions++
		st.Frames += frames
		st.Bytes += bytes
		st.MaxFrames = max(st.MaxFrames, frames)
		st.MaxBytes = max(st.MaxBytes, bytes)
	})
	return st
}
