// Package gateway accepts WebSocket connections, authenticates them with a
// client token, registers them in the hub and runs their I/O: a bounded
// send queue drained by a short-lived writer, and a reader that on Linux
// costs no goroutine while the connection is idle.
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
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/token"
	"github.com/herald-gw/herald/wire"
)

// I/O strategies for Config.IO.
const (
	IOAuto      = ""          // epoll where supported, else goroutine
	IOEpoll     = "epoll"     // Linux only
	IOGoroutine = "goroutine" // portable
)

// Config tunes the gateway. Zero fields take the defaults in parentheses.
type Config struct {
	IO             string        // IOAuto, IOEpoll or IOGoroutine
	PingInterval   time.Duration // protocol (and herald.v1 app) ping period (25s); no read for 2× this closes the connection
	WriteTimeout   time.Duration // one socket write may take this long before the connection is dropped (10s)
	MaxQueueFrames int           // frames waiting per connection before it is closed with 4008 (1024)
	MaxQueueBytes  int           // bytes waiting per connection before it is closed with 4008 (4 MiB)
	MaxFrame       int           // largest client message, after reassembly (32 KiB); past it close 1009
	MaxConns       int           // connections on this node (0 = unbounded); past it the upgrade gets 503
}

func (c *Config) setDefaults() {
	if c.PingInterval <= 0 {
		c.PingInterval = 25 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxQueueFrames <= 0 {
		c.MaxQueueFrames = 1024
	}
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = 4 << 20
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = 32 << 10
	}
}

// Gateway owns every WebSocket connection of this node.
type Gateway struct {
	cfg     Config
	hub     *hub.Hub
	tokens  *token.Issuer
	history History
	log     *slog.Logger
	poll    *poller // nil in goroutine mode

	ping, appPing []byte
	bufs          sync.Pool // *[]byte read buffers, lent only while a read is in flight
	rawOps        sync.Pool // *rawOp, see poll_linux.go
	open          atomic.Int64
	agents        sync.Map // interned User-Agent strings
	nagents       atomic.Int64
}

// New returns a Gateway registering connections in h, verifying tokens
// with tokens and replaying resumed streams from history. Call Run to start heartbeats (and the epoll loop).
func New(cfg Config, h *hub.Hub, tokens *token.Issuer, history History, log *slog.Logger) (*Gateway, error) {
	cfg.setDefaults()
	g := &Gateway{
		cfg: cfg, hub: h, tokens: tokens, history: history, log: log,
		ping: wire.PingFrame(), appPing: wire.AppPingFrame(),
	}
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

// Open is the number of open connections.
func (g *Gateway) Open() int { return int(g.open.Load()) }

// Run runs heartbeats and, in epoll mode, the readiness loop until ctx is
// done.
func (g *Gateway) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if g.poll != nil {
		wg.Go(func() { g.poll.run(ctx) })
	}
	// Heartbeats walk one hub shard per tick, so each connection is pinged
	// once per interval but a million connections are not woken (and given
	// a writer goroutine each) in the same instant.
	t := time.NewTicker(max(g.cfg.PingInterval/hub.Shards, time.Millisecond))
	defer t.Stop()
	for shard := 0; ; shard = (shard + 1) % hub.Shards {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case now := <-t.C:
			g.heartbeat(now, shard)
		}
	}
}

// heartbeat pings the connections of one hub shard and drops the ones
// that have not said anything (not even a pong) for two intervals: they
// are dead links that TCP alone would keep for hours.
func (g *Gateway) heartbeat(now time.Time, shard int) {
	dead := now.Add(-2 * g.cfg.PingInterval).UnixNano()
	g.hub.EachInShard(shard, func(hc hub.Conn) {
		c, ok := hc.(*conn)
		if !ok {
			return
		}
		switch {
		case c.lastRead.Load() < dead:
			c.Close(wire.ClosePolicyViolation, "heartbeat timeout")
		case c.expires.Load() != 0 && c.expires.Load() < now.UnixNano():
			c.Close(wire.CloseTokenExpired, "token expired")
		default:
			c.Send(g.ping, 0)
			if c.proto == herald.ProtocolV1 {
				c.Send(g.appPing, 0)
			}
		}
	})
}

// CloseAll closes every connection with code and reason, spreading the
// closes over spread so that clients do not all reconnect at once.
// herald.v1 clients get {"type":"reconnect"} first.
func (g *Gateway) CloseAll(ctx context.Context, code uint16, reason string, spread time.Duration) {
	var all []hub.Conn
	g.hub.Each(func(c hub.Conn) { all = append(all, c) })
	// Spreading matters only for many connections; a handful close at once
	// (the step is capped, so a node with few clients exits promptly).
	var step time.Duration
	if len(all) > 0 {
		step = min(spread/time.Duration(len(all)), 10*time.Millisecond)
	}
	reconnect := wire.Frame(wire.OpText, []byte(`{"type":"reconnect"}`))
	for i, c := range all {
		if c.Protocol() == herald.ProtocolV1 {
			c.Send(reconnect, 0) // tell the client it is not an error: come back
		}
		c.Close(code, reason)
		if step > 0 && i < len(all)-1 {
			select {
			case <-ctx.Done():
				step = 0
			case <-time.After(step):
			}
		}
	}
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
// claims.User and registers it. An error returned before the upgrade is a
// *herald.Error for the caller to report; after the upgrade nothing is
// returned, the connection lives on its own.
func (g *Gateway) Accept(w http.ResponseWriter, r *http.Request, claims token.Claims) error {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return herald.Errorf(herald.EInvalidRequest, "expected a WebSocket upgrade request")
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
	// Reserve the slot before the upgrade, atomically, so simultaneous
	// handshakes cannot overshoot the limit.
	if n := g.open.Add(1); g.cfg.MaxConns > 0 && n > int64(g.cfg.MaxConns) {
		g.open.Add(-1)
		return herald.Errorf(herald.EUnavailable, "connection limit of this node reached")
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
	up := ws.HTTPUpgrader{Protocol: func(p string) bool { return p == chosen }}
	nc, rw, _, err := up.Upgrade(r, w)
	if err != nil {
		g.open.Add(-1)
		return nil // the upgrader already answered the client
	}
	now := time.Now().UnixNano()
	c := &conn{
		g: g, nc: nc, id: newConnID(), user: claims.User, proto: proto,
		connectedAt: now, sourceIP: sourceIP(r), userAgent: g.intern(clip(r.UserAgent(), 256)),
	}
	if !claims.Expires.IsZero() {
		c.expires.Store(claims.Expires.UnixNano())
	}
	// Park live stored messages before joining the hub, so none can slip
	// past the replay; see conn.runReplay.
	if resume {
		c.replay = &replayState{drained: make(chan struct{}, 1)}
	}
	c.lastRead.Store(now)
	c.lastActive.Store(now)
	// The raw descriptor is set before the connection is visible to any
	// sender: Send writes to it in place without the reader's help, and
	// the poller keys its table by it.
	epoll := false
	if tc, isTCP := nc.(*net.TCPConn); isTCP && g.poll != nil {
		if rc, err := tc.SyscallConn(); err == nil {
			fd := int32(-1)
			if rc.Control(func(f uintptr) { fd = int32(f) }) == nil && fd >= 0 {
				c.rc, c.fd, epoll = rc, fd, true
			}
		}
	}
	g.hub.Add(c)
	g.log.Debug("connected", "conn", c.id, "user", c.user, "protocol", proto.String())

	if resume {
		go c.runReplay(since, q.Get("epoch"))
	}

	// Bytes the client sent right behind its handshake are already in the
	// HTTP server's buffer; feed them before the socket.
	if n := rw.Reader.Buffered(); n > 0 {
		early, _ := rw.Reader.Peek(n)
		if err := c.ingest(early); err != nil {
			c.fail(err)
			return nil
		}
	}
	if epoll {
		err := g.poll.add(c)
		if err == nil {
			return nil
		}
		g.log.Warn("epoll registration failed, using a goroutine", "conn", c.id, "err", err)
	}
	go c.readLoop()
	return nil
}

func newConnID() herald.ConnID {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported systems
	return herald.ConnID(base64.RawURLEncoding.EncodeToString(b[:]))
}

func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// workers is how many goroutines read ready sockets: reads never block, so a
// few per core keep every core busy without a goroutine per connection.
func workers() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// maxInterned bounds the User-Agent intern table, so clients sending
// random agents cannot grow it without limit.
const maxInterned = 4096

// intern returns a shared copy of s: a node with a million tabs sees a few
// hundred distinct User-Agent strings, and each costs ~150 bytes.
func (g *Gateway) intern(s string) string {
	if v, ok := g.agents.Load(s); ok {
		return v.(string)
	}
	s = strings.Clone(s) // do not pin the request's header memory
	if g.nagents.Load() >= maxInterned {
		return s
	}
	v, loaded := g.agents.LoadOrStore(s, s)
	if !loaded {
		g.nagents.Add(1)
	}
	return v.(string)
}
