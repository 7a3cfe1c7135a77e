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
// session's id: they are written before the session is visible, so they
// precede anything the hub sends.
//
// AdoptSSE owns nc and the connection slot the caller reserved
// (session.Manager.Reserve) from the moment it is called: both are given
// back when the stream ends, or before AdoptSSE returns an error (the
// client could not take the prelude; there is nobody to tell).
func (g *Gateway) AdoptSSE(nc net.Conn, p session.Params, prelude func(herald.ConnID) []byte) error {
	// net/http clears its deadlines when it hands a connection over, but a
	// ResponseWriter of another make need not: a stale read deadline would
	// end an idle stream, even one read through epoll (RawConn.Read checks
	// it).
	_ = nc.SetDeadline(time.Time{})
	p.UserAgent = g.intern(clip(p.UserAgent, 256))
	c := &conn{g: g, nc: nc, sse: true}
	c.s = g.sessions.New(c, p)
	id := c.s.ID()

	// One write for the head and the first events, before the session is
	// in the hub, so nothing can be queued ahead of them. A fresh socket's
	// send buffer takes them whole; the deadline only bounds a client that
	// opened a stream and stopped reading before it started. The writer
	// sets its own deadline for every batch after this one.
	now := time.Now()
	_ = nc.SetWriteDeadline(now.Add(g.cfg.WriteTimeout))
	if _, err := nc.Write(prelude(id)); err != nil {
		// The session was never started: nothing to leave but the slot.
		_ = nc.Close()
		g.sessions.Release()
		return err
	}
	c.s.Wrote(now)

	epoll := c.attachFD()
	g.sessions.Start(c.s)
	g.log.Debug("connected", "conn", id, "user", p.User, "format", p.Format.String())
	g.watch(c, epoll)
	return nil
}
