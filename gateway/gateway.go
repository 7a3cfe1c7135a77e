// Package gateway is the WebSocket transport: it accepts WebSocket
// connections, authenticates them with a client token, opens a session for
// each (package session decides what to send) and runs their I/O: a
// bounded send queue drained by a short-lived writer, and a reader that on
// Linux costs no goroutine while the connection is idle.
//
// Two I/O strategies share the same connection code:
//
//   - "epoll" (Linux, plain TCP): the socket's descriptor sits in an epoll
//     set; a small worker pool reads only when it is readable, with buffers
//     borrowed from a pool for as long as a frame is in flight. An idle
//     connection costs its socket and one small struct.
//   - "goroutine" (other systems, and TLS served by Herald itself, whose
//     record layer needs blocking reads): one reader goroutine per
//     connection.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/routes"
	"github.com/herald-gw/herald/session"
	"github.com/herald-gw/herald/token"
	"github.com/herald-gw/herald/wire"
)

// I/O strategies for Config.IO.
const (
	IOAuto      = ""          // epoll where supported, else goroutine
	IOEpoll     = "epoll"     // Linux only
	IOGoroutine = "goroutine" // portable
)

// Config tunes the gateway. Zero fields take the defaults of package
// herald, named in parentheses; the send queue bounds are the session
// manager's, so that replay pacing and the queue agree.
type Config struct {
	IO           string        // IOAuto, IOEpoll or IOGoroutine
	WriteTimeout time.Duration // one socket write may take this long before the connection is dropped (DefaultWriteTimeout)
	MaxFrame     int           // largest client message, after reassembly (DefaultMaxClientMessage); past it close 1009
	// Routes, when set, is the API Gateway route set every WebSocket
	// connection goes through: $connect before the handshake is answered,
	// its raw messages to their routes, $disconnect when it ends. Its
	// sessions manager must have it as session.Config.Routes.
	Routes *routes.Router

	maxQueueFrames, maxQueueBytes int // from the session manager
}

func (c *Config) setDefaults() {
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = herald.DefaultWriteTimeout
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = herald.DefaultMaxClientMessage
	}
}

// Gateway owns every WebSocket connection of this node.
type Gateway struct {
	cfg      Config
	sessions *session.Manager
	tokens   session.Verifier
	log      *slog.Logger
	poll     *poller          // nil in goroutine mode
	obs      session.Observer // the session manager's, told of queue waits; nil = nobody

	ping    []byte    // WebSocket ping frame, shared by every connection
	ssePing []byte    // event-stream heartbeat comment, likewise
	bufs    sync.Pool // *[]byte read buffers, lent only while a read is in flight
	// netConns holds each goroutine-mode connection's socket (*conn →
	// net.Conn), so that conn carries no net.Conn field for the epoll
	// connections, which have none. Goroutine mode already pays a
	// goroutine per connection; a map entry beside it is small change.
	netConns sync.Map
}

// New returns a Gateway opening sessions with sm and verifying tokens with
// tokens. Call Run to start the epoll loop.
func New(cfg Config, sm *session.Manager, tokens session.Verifier, log *slog.Logger) (*Gateway, error) {
	cfg.setDefaults()
	cfg.maxQueueFrames, cfg.maxQueueBytes = sm.Config().MaxQueueFrames, sm.Config().MaxQueueBytes
	g := &Gateway{cfg: cfg, sessions: sm, tokens: tokens, log: log, obs: sm.Config().Observer, ping: wire.PingFrame(), ssePing: wire.SSEPing()}
	g.bufs.New = func() any { b := make([]byte, 4096); return &b }
	switch cfg.IO {
	case IOAuto, IOEpoll:
		p, err := newPoller(g)
		if err != nil {
			if cfg.IO == IOEpoll {
				return nil, fmt.Errorf("gateway: epoll I/O: %w", err)
			}
			log.Info("epoll unavailable, using a goroutine per connection", "err", err)
			break
		}
		g.poll = p
	case IOGoroutine:
	default:
		return nil, fmt.Errorf("gateway: unknown I/O strategy %q (want %q or %q)", cfg.IO, IOEpoll, IOGoroutine)
	}
	return g, nil
}

// IO reports the I/O strategy in use.
func (g *Gateway) IO() string {
	if g.poll != nil {
		return IOEpoll
	}
	return IOGoroutine
}

// Run runs the epoll readiness loop, if any, until ctx is done.
// Heartbeats are the session manager's.
func (g *Gateway) Run(ctx context.Context) error {
	if g.poll != nil {
		g.poll.run(ctx)
	}
	return nil
}

// TokenFrom extracts the client token from r: the query parameter "token"
// (the original client's way), an Authorization bearer header, or a
// "herald.token.<token>" subprotocol (browsers cannot set headers).
func TokenFrom(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if t := token.Bearer(r); t != "" {
		return t
	}
	for _, p := range subprotocols(r) {
		if t, ok := strings.CutPrefix(p, herald.SubprotocolTokenPrefix); ok {
			return t
		}
	}
	return ""
}

func subprotocols(r *http.Request) []string {
	var out []string
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// Authenticate verifies r's token and returns its claims. Errors carry
// herald.EUnauthorized.
func (g *Gateway) Authenticate(r *http.Request) (token.Claims, error) {
	return g.tokens.Verify(TokenFrom(r))
}

// Accept upgrades an authenticated request to a WebSocket connection of
// claims.User and registers it. An error is a *herald.Error for the caller
// to report, returned only before the connection is taken over from
// net/http; after that nothing is returned, the connection lives on its
// own.
//
// The whole handshake is checked first (checkHandshake), then a slot is
// reserved, and only then is the connection taken over and answered, so
// that no refusal ever needs a taken-over socket closed, and none is
// written in anything but the API's JSON. Each refusal also asks net/http
// to close the connection after its answer: a client whose upgrade failed
// does not go on to use it for plain HTTP, and a client must not be able
// to keep a socket open per refused attempt.
func (g *Gateway) Accept(w http.ResponseWriter, r *http.Request, claims token.Claims) error {
	err := g.accept(w, r, claims)
	if err != nil {
		w.Header().Set("Connection", "close")
	}
	return err
}

func (g *Gateway) accept(w http.ResponseWriter, r *http.Request, claims token.Claims) error {
	key, err := checkHandshake(w, r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var since uint64
	resume := q.Has("since")
	if resume {
		var err error
		if since, err = strconv.ParseUint(q.Get("since"), 10, 64); err != nil {
			return herald.Errorf(herald.EInvalidRequest, "since must be a stream offset (an unsigned integer)")
		}
	}
	// Prefer herald.v1 whatever the offer order. A token subprotocol offered
	// alone is echoed: a browser fails the handshake when it offered
	// subprotocols and the server picks none.
	chosen, proto := "", herald.ProtocolRaw
	for _, p := range subprotocols(r) {
		if p == herald.SubprotocolV1 {
			chosen, proto = p, herald.ProtocolV1
			break
		}
		if chosen == "" && strings.HasPrefix(p, herald.SubprotocolTokenPrefix) {
			chosen = p
		}
	}
	// Reserve the slot before the upgrade, atomically, so simultaneous
	// handshakes cannot overshoot the limit.
	if !g.sessions.Reserve() {
		return herald.Errorf(herald.EUnavailable, "connection limit of this node reached")
	}
	id, user := herald.NewConnID(), claims.User
	if rt := g.cfg.Routes; rt != nil {
		if user == "" {
			// $connect authorises (auth = "integration"): the connection
			// has no user of its own, so it is its own, and is reached by
			// its id (PostToConnection), as on API Gateway.
			user = herald.UserID(id)
		}
		if err := rt.Connect(r.Context(), routes.ConnectRequest{ID: id, Request: r, User: claims.User}); err != nil {
			g.sessions.Release()
			return connectRefusal(err)
		}
	}
	nc, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Nothing was taken over or written: the API can still answer.
		g.sessions.Release()
		if rt := g.cfg.Routes; rt != nil {
			rt.Abandon(id, int(session.CloseAbnormal), "connection lost")
		}
		return &herald.Error{Code: herald.EInternal, Message: "cannot take the connection over", Err: err}
	}
	// The server's read and write deadlines are for HTTP requests, not
	// for a connection that may stay idle for hours.
	_ = nc.SetDeadline(time.Time{})
	p := session.Params{
		ID: id, User: user, Format: wire.FormatRaw, Expires: claims.Expires,
		RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent(), Routed: g.cfg.Routes != nil,
	}
	if proto == herald.ProtocolV1 {
		p.Format = wire.FormatV1
	}
	if resume {
		p.Resume = &session.Resume{Since: since, Epoch: q.Get("epoch")}
	}
	// The session joins the hub before the handshake answer goes out, so
	// a message published the moment the client sees its socket open
	// reaches it. Until the answer is written the connection is corked:
	// what the hub hands it waits in its queue, behind the handshake.
	c := newConn(g, false)
	c.asm.MaxMessage = g.cfg.MaxFrame
	if rt := g.cfg.Routes; rt != nil {
		c.asm.MaxMessage, c.asm.MaxFrame = rt.MaxMessage(), int32(rt.MaxFrame())
	}
	c.s = g.sessions.New(c, p)
	g.sessions.Start(c.s)
	if err := writeUpgrade(nc, upgradeResponse(key, chosen), g.cfg.WriteTimeout); err != nil {
		// The client is gone or not reading: the socket is ours to close.
		c.abandon()
		_ = nc.Close()
		g.sessions.Release()
		g.log.Debug("websocket handshake answer not written", "conn", p.ID, "err", err)
		return nil
	}
	epoll := c.uncork(nc)
	g.log.Debug("connected", "conn", p.ID, "user", p.User, "format", p.Format.String())
	// Bytes the client sent right behind its handshake are already in the
	// HTTP server's buffer; feed them before the socket.
	if n := rw.Reader.Buffered(); n > 0 {
		early, _ := rw.Reader.Peek(n)
		if err := c.ingest(early); err != nil {
			c.fail(err)
		}
	}
	g.watch(c, nc, epoll)
	return nil
}

// connectRefusal is the API error for a $connect that did not admit a
// connection: the integration's own status, or 502 when it failed.
func connectRefusal(err error) error {
	var cr *routes.ConnectRefused
	if errors.As(err, &cr) && cr.Err == nil {
		return &herald.Error{Code: herald.EConnectRefused, Message: fmt.Sprintf("the $connect route refused the connection (status %d)", cr.Status), Status: cr.Status}
	}
	return &herald.Error{Code: herald.EIntegrationFailed, Message: "the $connect integration failed", Err: err}
}

// writeUpgrade writes the handshake's answer, bounded like any write.
func writeUpgrade(nc net.Conn, answer []byte, timeout time.Duration) error {
	_ = nc.SetWriteDeadline(time.Now().Add(timeout))
	_, err := nc.Write(answer)
	_ = nc.SetWriteDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("write handshake answer: %w", err)
	}
	return nil
}

// abandon ends a corked connection whose handshake answer could not be
// written: it takes nothing more and its session leaves the hub.
func (c *conn) abandon() {
	c.mu.Lock()
	c.state = stateClosed
	c.out = nil
	c.mu.Unlock()
	c.s.Gone()
}

// uncork gives a corked connection its socket once the handshake is
// written, and starts writing what was queued meanwhile. It reports
// whether the socket is served by epoll; if it is, nc has been closed and
// the conn owns a duplicate of its descriptor (see conn), else nc is kept
// for the connection's goroutines.
//
// It must run before the connection is visible to any sender: Write
// writes to the descriptor in place without the reader's help, and the
// poller keys its table by it.
func (c *conn) uncork(nc net.Conn) (epoll bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fd, ok := c.g.takeFD(nc); ok {
		c.fd, epoll = fd, true
	} else {
		c.g.netConns.Store(c, nc)
	}
	if c.out != nil {
		c.spawnWriter() // c.writing is already set: the writer owns it
	} else {
		c.writing = false
	}
	return epoll
}

// watch starts reading c: its descriptor joins the epoll set, or, in
// goroutine mode, a goroutine reads nc. A descriptor the epoll set refuses
// (out of epoll watches, say) closes the connection: its net.Conn is gone,
// and a goroutine cannot read a bare non-blocking descriptor.
func (g *Gateway) watch(c *conn, nc net.Conn, epoll bool) {
	if !epoll {
		go c.readLoop(nc)
		return
	}
	if err := g.poll.add(c); err != nil {
		g.log.Warn("epoll registration failed; closing the connection", "conn", c.s.ID(), "err", err)
		c.teardown(err)
	}
}

// workers is how many goroutines read ready sockets: reads never block, so a
// few per core keep every core busy without a goroutine per connection.
func workers() int { return max(4, 2*runtime.GOMAXPROCS(0)) }
