// Package session is what a connection means to Herald, whatever carries
// its bytes: the user, the format its messages are encoded in, resume and
// replay, holding live messages back while history is replayed, de-dup and
// gap detection by stream offset, acks, token refresh and expiry, heartbeat
// liveness and drain.
//
// A Session sits between the hub, which hands it encoded messages, and a
// Transport, which only moves bytes: the WebSocket transports (epoll or a
// goroutine per connection, package gateway) and Server-Sent Events
// (package sse). Transports read in their own way and tell the session what
// they read; the session never touches a socket.
//
// The session alone decides what a client has seen: it remembers the
// highest stream offset it sent. A message at or below it is a duplicate
// and is dropped; one beyond the next offset means something was lost or
// is late on the way (a broker between nodes may do either), so the
// session fetches the missing offsets from the Store before going on. So
// delivery order never depends on the order in which publishers or brokers
// hand messages over.
package session

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/token"
	"github.com/herald-gw/herald/wire"
)

// History is what sessions need from the Store: replay and gap filling.
type History interface {
	Since(ctx context.Context, user herald.UserID, since uint64, limit int) ([]herald.Message, error)
	Bounds(ctx context.Context, user herald.UserID) (first, last uint64, err error)
	Epoch() string
}

// Verifier checks client tokens for refresh.
type Verifier interface {
	Verify(tok string) (token.Claims, error)
}

// Clock is the time source of expiry timers and heartbeats; tests inject
// one they advance by hand, so no test depends on a timing window.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc.
type Timer interface{ Stop() bool }

type realClock struct{}

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Config tunes sessions. Zero fields take the defaults of package herald.
type Config struct {
	PingInterval   time.Duration // heartbeat period (herald.DefaultPingInterval)
	MaxPingsOut    int           // unanswered pings before a connection is dead (herald.DefaultMaxPingsOut)
	MaxQueueFrames int           // the transports' queue bound, for replay pacing and parking (herald.DefaultSendQueueFrames)
	MaxQueueBytes  int           // likewise in bytes (herald.DefaultSendQueueBytes)
	MaxConns       int           // connections on this node, every transport together (0 = unbounded)
	// MessageRate is how many messages per second a client may send,
	// sustained, and MessageBurst how many at once above that
	// (DefaultMessageRate, DefaultMessageBurst); past them the connection
	// is closed with 4030. A negative MessageRate means no limit. See
	// Session.HandleMessage for what counts.
	MessageRate  float64
	MessageBurst int
	Observer     Observer // told what happens to connections, for metrics; nil = nobody
	Routes       Routes   // the API Gateway route set of sessions opened with Params.Routed; nil = none
	Clock        Clock    // time.Now and time.AfterFunc when nil
}

// Defaults of the client message rate limit. A well-behaved client sends
// far less: one resume, a refresh per token lifetime, a pong per app ping
// (one each 25 s), and acks — which are free while they move its
// acknowledged offset forward, since there cannot be more of those than
// messages sent to it. So the limit only ever meets a client that loops
// on pings, refreshes or garbage, each of which makes the server answer or
// verify a token; 100 at once covers a burst of user actions in a tab,
// and 50 a second sustained stays far above anything a person causes.
const (
	DefaultMessageRate  = 50
	DefaultMessageBurst = 100
)

func (c *Config) setDefaults() {
	if c.PingInterval <= 0 {
		c.PingInterval = herald.DefaultPingInterval
	}
	if c.MaxPingsOut <= 0 {
		c.MaxPingsOut = herald.DefaultMaxPingsOut
	}
	if c.MaxQueueFrames <= 0 {
		c.MaxQueueFrames = herald.DefaultSendQueueFrames
	}
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = herald.DefaultSendQueueBytes
	}
	if c.MessageRate == 0 {
		c.MessageRate = DefaultMessageRate
	}
	if c.MessageBurst <= 0 {
		c.MessageBurst = DefaultMessageBurst
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
}

// Manager creates sessions and runs what they share: heartbeats and drain.
// One Manager serves every transport of a node.
type Manager struct {
	cfg     Config
	hub     *hub.Hub
	history History
	tokens  Verifier
	log     *slog.Logger

	// pageLimit is how many stored messages one replay read asks for:
	// few enough that a page of the largest payloads fits in half the send
	// queue, so a resuming client that does not read holds at most one
	// queue's worth of memory, however long its replay.
	pageLimit int
	appPing   []byte       // herald.v1 {"type":"ping"} frame, shared
	open      atomic.Int64 // connections reserved, every transport together
	expiries  expiries     // token expiry, by the second
	agents    interner     // User-Agent strings
	sources   interner     // source IPs: many connections share one (a proxy, a NAT, a campus)
}

// Reserve takes a connection slot for a transport that is about to accept
// a client, atomically, so simultaneous handshakes cannot overshoot
// MaxConns. It reports false when the node is full. Every successful
// Reserve is paired with one Release when the connection is gone.
func (m *Manager) Reserve() bool {
	if n := m.open.Add(1); m.cfg.MaxConns > 0 && n > int64(m.cfg.MaxConns) {
		m.open.Add(-1)
		return false
	}
	return true
}

// Release gives back a slot taken by Reserve.
func (m *Manager) Release() { m.open.Add(-1) }

// Open is the number of connections holding a slot: accepted and not yet
// torn down, whatever their transport.
func (m *Manager) Open() int { return int(m.open.Load()) }

// NewManager returns a Manager registering sessions in h.
func NewManager(cfg Config, h *hub.Hub, history History, tokens Verifier, log *slog.Logger) *Manager {
	cfg.setDefaults()
	return &Manager{
		cfg: cfg, hub: h, history: history, tokens: tokens, log: log,
		pageLimit: min(max(1, cfg.MaxQueueBytes/2/herald.MaxPayload), 500),
		appPing:   wire.AppPingFrame(),
		expiries:  expiries{clock: cfg.Clock},
	}
}

// Config returns the configuration in force, defaults filled in.
func (m *Manager) Config() Config { return m.cfg }

// Hub returns the hub sessions register in.
func (m *Manager) Hub() *hub.Hub { return m.hub }

// Run sends heartbeats until ctx is done. It walks one hub shard per tick,
// so each session is pinged once per interval but a million of them are
// not woken (and given a writer each) in the same instant.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(max(m.cfg.PingInterval/hub.Shards, time.Millisecond))
	defer t.Stop()
	for shard := 0; ; shard = (shard + 1) % hub.Shards {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.hub.EachInShard(shard, heartbeat)
		}
	}
}

// HeartbeatAll runs one heartbeat round over every session at once. Run
// spreads the same work over the interval; tests call this to step
// liveness without waiting for a clock.
func (m *Manager) HeartbeatAll() { m.hub.Each(heartbeat) }

func heartbeat(c hub.Conn) {
	if s, ok := c.(*Session); ok {
		s.Heartbeat()
	}
}

// Drain tells every session to reconnect elsewhere and closes it with code
// and reason, spreading the closes over spread so that clients do not all
// reconnect to the other nodes at once (at most 10 ms apart, so a small
// node exits promptly).
func (m *Manager) Drain(ctx context.Context, code uint16, reason string, spread time.Duration) {
	var all []hub.Conn
	m.hub.Each(func(c hub.Conn) { all = append(all, c) })
	var step time.Duration
	if len(all) > 0 {
		step = min(spread/time.Duration(len(all)), 10*time.Millisecond)
	}
	for i, c := range all {
		if s, ok := c.(*Session); ok {
			s.control("reconnect", []byte(`{"type":"reconnect"}`))
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

// Params describe a new session.
type Params struct {
	ID         herald.ConnID
	User       herald.UserID
	Format     wire.Format
	Expires    time.Time // the token's expiry; zero = none
	RemoteAddr string    // the TCP peer, host:port (X-Forwarded-For is not trusted)
	UserAgent  string    // kept to its first 256 bytes
	// Resume, when not nil, replays the stream after Resume.Since before
	// anything live (the ?since= form of resume).
	Resume *Resume
	// Routed hands the session to Config.Routes: its raw messages go to
	// the route set instead of being ignored, and its end runs
	// $disconnect. Ignored when the Manager has no Routes.
	Routed bool
}

// Resume is a client's resume point: the last offset it has and the
// epoch it came from ("" skips the epoch check).
type Resume struct {
	Since uint64
	Epoch string
}

// New returns a session over t. It is not yet registered: set up whatever
// the transport needs to reach the session, then call Start.
func (m *Manager) New(t Transport, p Params) *Session {
	now := m.cfg.Clock.Now()
	if p.ID == "" {
		p.ID = herald.NewConnID()
	}
	s := &Session{
		m: m, t: t, id: p.ID, user: p.User, format: p.Format,
		connectedAt: now.UnixNano(), sourceIP: m.sources.intern(hostOf(p.RemoteAddr)), userAgent: m.agents.intern(clip(p.UserAgent, maxUserAgent)),
		resumes: p.Resume != nil, routed: p.Routed && m.cfg.Routes != nil,
	}
	if !p.Expires.IsZero() {
		s.expires = p.Expires.UnixNano() // armed by Start
	}
	s.lastActive.Store(now.UnixNano())
	// Park live messages from the moment the session is visible, so none
	// can slip past the replay, or past the reading of the stream's
	// position for a session that does not resume.
	cu := newCatchup()
	cu.resume = p.Resume
	s.cu.Store(cu)
	return s
}

// maxUserAgent bounds the User-Agent a session keeps: it is reported, not
// parsed, and a client must not make the server hold kilobytes of it.
const maxUserAgent = 256

// maxInterned bounds each intern table, so clients sending random agents
// (or coming from many addresses) cannot grow it without limit.
const maxInterned = 4096

// interner shares equal strings. A node with a million tabs sees a few
// hundred distinct User-Agent strings, each ~150 bytes, and often far
// fewer source addresses than connections (behind a proxy or NAT, all
// from one). Past maxInterned entries a string is only copied.
type interner struct {
	m sync.Map
	n atomic.Int64
}

// intern returns a shared copy of s, or a copy of its own: never s itself,
// so that a session never pins the request's memory (its header block,
// or the "host:port" of RemoteAddr a source IP is cut from).
func (t *interner) intern(s string) string {
	if v, ok := t.m.Load(s); ok {
		return v.(string)
	}
	s = strings.Clone(s)
	if t.n.Load() >= maxInterned {
		return s
	}
	v, loaded := t.m.LoadOrStore(s, s)
	if !loaded {
		t.n.Add(1)
	}
	return v.(string)
}

func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Start registers s in the hub, arms its token expiry and starts its
// replay, if any. From here on the hub may hand it messages.
func (m *Manager) Start(s *Session) {
	if o := m.cfg.Observer; o != nil {
		o.Opened(s.transport())
	}
	if s.routed {
		m.cfg.Routes.Opened(s)
	}
	// A session that does not resume starts at the stream's end, read
	// before it joins the hub (and so before the API lists it): every
	// message committed after that read is this connection's. (The resume
	// point read here can only be New's: the reader's comes later.)
	var base position
	var r *Resume
	s.mu.Lock()
	if cu := s.cu.Load(); cu != nil { // the catch-up New made: nothing ends it before Start
		r = cu.resume
	}
	s.mu.Unlock()
	if r == nil {
		base = s.readPosition()
	}
	m.hub.Add(s)
	s.mu.Lock()
	s.started = true
	if s.expires != 0 && s.state == stateOpen {
		s.armExpiryLocked(time.Unix(0, s.expires))
	}
	if cu := s.cu.Load(); cu != nil && cu.resume != nil {
		r = cu.resume // a resume message came before Start (startResume)
		cu.resume = nil
	}
	s.mu.Unlock()
	if r != nil {
		go s.runCatchup(r)
		return
	}
	s.startLive(base)
}

// position is a stream's last offset as read from the Store, or why it
// could not be read.
type position struct {
	last uint64
	err  error
}

func (s *Session) readPosition() position {
	ctx, cancel := context.WithTimeout(context.Background(), baselineTimeout)
	defer cancel()
	_, last, err := s.m.history.Bounds(ctx, s.user)
	return position{last, err}
}

// baselineTimeout bounds the read of a new session's stream position.
const baselineTimeout = 5 * time.Second

// startLive makes base, the stream's end read before the session joined
// the hub, the new session's position: every message committed after it
// is this connection's to receive, in order, and two publishers racing
// right after the connect cannot make it skip the earlier one (it would be
// a gap, filled from the Store). The stream is read once more now that the
// hub hands the session what is published: what was committed in between
// reached the hub before the session did, so it is fetched from the
// Store, then the parked live messages follow. If the Store cannot say,
// the first message delivered sets the position.
func (s *Session) startLive(base position) {
	ctx, cancel := context.WithTimeout(context.Background(), baselineTimeout)
	defer cancel()
	now := s.readPosition()
	s.mu.Lock()
	switch {
	case base.err == nil:
		s.lastOffset, s.known = max(s.lastOffset, base.last), true
	case now.err == nil:
		// No read before joining: what the hub handed the session since
		// was committed after it joined, so the position goes back to just
		// before the first of those; anything between is fetched.
		pos := now.last
		if cu := s.cu.Load(); cu != nil {
			for _, p := range cu.parked {
				pos = min(pos, p.offset-1)
			}
		}
		s.lastOffset, s.known = max(s.lastOffset, pos), true
	}
	behind := s.known && now.err == nil && now.last > s.lastOffset
	if behind && s.firstLive == 0 {
		// What the catch-up fetches was committed after the connection:
		// it is sent as live messages are, and a first-message resume
		// judges against it (seamless only from right before it).
		s.firstLive = s.lastOffset + 1
	}
	s.mu.Unlock()
	if base.err != nil && now.err != nil {
		s.m.log.Warn("session: read stream position; the first message sets it", "conn", s.id, "user", s.user, "err", now.err)
	}
	if behind || !s.goLive(ctx, false) {
		go s.runCatchup(nil) // committed meanwhile, or a message parked meanwhile left a gap
	}
}

// Recheck asks the Store whether the session's stream went past what the
// session was sent — a broker that lost messages while it reconnected —
// and fetches what it lacks, in order. A session catching up already, or
// whose position is not known yet, is left alone: that catch-up ends at
// the Store's end anyway.
func (s *Session) Recheck() {
	if s.cu.Load() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), baselineTimeout)
	defer cancel()
	_, last, err := s.m.history.Bounds(ctx, s.user)
	if err != nil {
		s.m.log.Warn("session: recheck the stream's position", "conn", s.id, "user", s.user, "err", err)
		return
	}
	s.mu.Lock()
	behind := s.state == stateOpen && s.known && last > s.lastOffset && s.cu.Load() == nil
	if behind {
		s.cu.Store(newCatchup())
	}
	s.mu.Unlock()
	if behind {
		go s.runCatchup(nil)
	}
}

// Epoch is the Store's history epoch, which clients resume against.
func (m *Manager) Epoch() string { return m.history.Epoch() }
