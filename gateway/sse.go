package gateway

import (
	"net"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/session"
)

// AdoptSSE carries a Server-Sent Events stream on the gateway's connection
// machinery, so that an idle stream costs what an idle WebSocket costs:
// its socket in the epoll set, a conn and a session, and no goroutine or
// buffer. Package sse takes the connection over from net/http (after
// authentication, the resume point and the connection slot are settled,
// so that refusals are still JSON errors) and hands it here.
//
// nc is the taken-over connection; whatever the client sent after its
// request is of no use (an event stream has no read side) and is not
// passed. p describes the session (p.Format is wire.FormatSSE). prelude
// returns the first bytes of the stream — the response head, the retry
// field and the connected event, which names the session — given the
// session's id: they lead the stream's queue, so they precede anything the
// hub sends.
//
// AdoptSSE owns nc and the connection slot the caller reserved
// (session.Manager.Reserve) from the moment it is called: both are given
// back when the stream ends — also when the client cannot take even the
// prelude, which ends the stream like any failed write. It returns an
// error only for what happens before the stream exists (none today; the
// result keeps the contract open), and then it has closed nc and given
// the slot back itself: a caller never has a socket left to clean up,
// whatever AdoptSSE returns.
func (g *Gateway) AdoptSSE(nc net.Conn, p session.Params, prelude func(herald.ConnID) []byte) error {
	// net/http clears its deadlines when it hands a connection over, but a
	// ResponseWriter of another make need not: a stale read deadline would
	// end an idle stream, even one read through epoll (RawConn.Read checks
	// it).
	_ = nc.SetDeadline(time.Time{})
	// The stream's first bytes lead its queue and the session joins the
	// hub before any of it is written, so a message published the moment
	// the client sees the stream open reaches it, behind the prelude.
	c := newConn(g, true)
	c.s = g.sessions.New(c, p)
	id := c.s.ID()
	first := prelude(id)
	c.pushLocked(first) // nobody else sees c yet
	g.sessions.Start(c.s)
	epoll := c.uncork(nc)
	g.log.Debug("connected", "conn", id, "user", p.User, "format", p.Format.String())
	g.watch(c, nc, epoll)
	return nil
}
