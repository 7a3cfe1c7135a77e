// Package sse is the Server-Sent Events transport: GET /sse streams a
// session's messages as text/event-stream, for clients that only need to
// listen (EventSource in every browser, curl, proxies that do not pass
// WebSocket upgrades). It carries the same sessions as the WebSocket
// gateway — resume, gap filling, limits and slow-consumer rules are the
// session's — and moves only bytes.
//
// SSE is one-way: the client cannot answer pings, so liveness rests on
// writes (a heartbeat comment every ping interval, each write bounded by
// the write timeout), and acks travel over HTTP (POST /v1/ack).
//
// Two ways to carry a stream:
//
//   - HTTP/1.x (the common case): the handler takes the connection over
//     from net/http and hands it to the WebSocket gateway's machinery
//     (Config.Gateway), which serves it like a WebSocket — in the epoll set
//     while idle, written in place or by a writer that lives only while
//     there is something to write. The response is close-delimited
//     (Connection: close, neither Content-Length nor chunking, RFC 9112
//     §6.3): an idle stream then costs no goroutine and none of net/http's
//     buffers, which for a node of idle tabs is most of the memory.
//   - HTTP/2, or no gateway configured: net/http carries the stream, with
//     the handler's goroutine as its writer.
package sse

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/session"
	"github.com/herald-gw/herald/token"
	"github.com/herald-gw/herald/wire"
)

// Config tunes the SSE transport. Zero fields take the defaults of
// package herald.
type Config struct {
	WriteTimeout time.Duration // one write (and flush) may take this long before the stream is dropped
	// Gateway carries the streams whose connection can be taken over
	// (HTTP/1.x); the gateway.Gateway of the node. Without one, every
	// stream is served through net/http.
	Gateway Adopter
}

// Adopter carries a taken-over connection as an event stream:
// *gateway.Gateway. See its AdoptSSE for the contract: it owns nc and the
// reserved connection slot from the call on, writes prelude(id) first, and
// returns an error only when it already gave both back.
type Adopter interface {
	AdoptSSE(nc net.Conn, p session.Params, prelude func(herald.ConnID) []byte) error
}

// Handler serves event streams.
type Handler struct {
	cfg      Config
	sessions *session.Manager
	tokens   session.Verifier
	log      *slog.Logger
	ping     []byte
	retry    []byte
}

// New returns a Handler opening sessions with sm.
func New(cfg Config, sm *session.Manager, tokens session.Verifier, log *slog.Logger) *Handler {
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = herald.DefaultWriteTimeout
	}
	return &Handler{cfg: cfg, sessions: sm, tokens: tokens, log: log, ping: wire.SSEPing(), retry: wire.SSERetry(herald.SSERetry)}
}

// TokenFrom extracts the client token: the query parameter "token" (the
// only way EventSource has: it can set neither headers nor subprotocols)
// or an Authorization bearer header (server-side clients, polyfills).
func TokenFrom(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	return token.Bearer(r)
}

// Authenticate verifies r's token and returns its claims. Errors carry
// herald.EUnauthorized.
func (h *Handler) Authenticate(r *http.Request) (token.Claims, error) {
	return h.tokens.Verify(TokenFrom(r))
}

// resumePoint reads where the client resumes from: the Last-Event-ID
// header ("<epoch>:<offset>", sent by the browser when it reconnects on its
// own, so newer than anything in the URL) or ?since=&epoch=.
func resumePoint(r *http.Request) (*session.Resume, error) {
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		epoch, off, ok := strings.Cut(id, ":")
		since, err := strconv.ParseUint(off, 10, 64)
		if !ok || err != nil {
			return nil, herald.Errorf(herald.EInvalidRequest, "Last-Event-ID must be <epoch>:<offset>, as Herald sends it")
		}
		return &session.Resume{Since: since, Epoch: epoch}, nil
	}
	q := r.URL.Query()
	if !q.Has("since") {
		return nil, nil
	}
	since, err := strconv.ParseUint(q.Get("since"), 10, 64)
	if err != nil {
		return nil, herald.Errorf(herald.EInvalidRequest, "since must be a stream offset (an unsigned integer)")
	}
	return &session.Resume{Since: since, Epoch: q.Get("epoch")}, nil
}

// Serve streams events to an authenticated client until it goes away, the
// session is closed, or a write fails. An error returned is a
// *herald.Error for the caller to report, before anything was written.
//
// On HTTP/1.x with a Gateway configured, Serve returns as soon as the
// stream is handed over: the connection is no longer net/http's (it is not
// a request in flight for http.Server.Shutdown either; the session
// manager's drain closes it).
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request, claims token.Claims) error {
	resume, err := resumePoint(r)
	if err != nil {
		return err
	}
	if !h.sessions.Reserve() {
		return herald.Errorf(herald.EUnavailable, "connection limit of this node reached")
	}
	p := session.Params{
		User: claims.User, Format: wire.FormatSSE, Expires: claims.Expires,
		RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent(), Resume: resume,
	}
	rc := http.NewResponseController(w)
	if h.cfg.Gateway != nil {
		nc, _, err := rc.Hijack()
		switch {
		case err == nil:
			// The head is built now, while w's headers (CORS, set by
			// middleware) are at hand; the events need the session's id.
			head := h.head(w.Header())
			if err := h.cfg.Gateway.AdoptSSE(nc, p, func(id herald.ConnID) []byte { return h.prelude(head, id) }); err != nil {
				h.log.Debug("event stream not started", "user", claims.User, "err", err)
			}
			return nil // the connection is the gateway's: nothing can be written here
		case !errors.Is(err, http.ErrNotSupported):
			h.sessions.Release()
			return &herald.Error{Code: herald.EInternal, Message: "cannot take the connection over", Err: err}
		}
		// HTTP/2 (or a ResponseWriter that cannot hijack): stream through
		// net/http below.
	}
	defer h.sessions.Release()
	// The server's read timeout would end the stream: net/http cancels a
	// request whose background read of the idle connection times out.
	if err := rc.SetReadDeadline(time.Time{}); err != nil {
		return &herald.Error{Code: herald.EInternal, Message: "streaming is not supported here", Err: err}
	}

	c := &conn{h: h, wake: make(chan struct{}, 1)}
	c.s = h.sessions.New(c, p)
	id := c.s.ID()
	setStreamHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	// The first bytes are queued before the session is visible, so they
	// precede anything the hub sends.
	hello := h.connected(id)
	c.queue = append(c.queue, h.retry, hello)
	c.qbytes = len(h.retry) + len(hello)
	h.sessions.Start(c.s)
	h.log.Debug("connected", "conn", id, "user", claims.User, "format", "sse")
	err = c.run(w, rc, r)
	c.teardown()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		h.log.Debug("disconnected", "conn", id, "user", claims.User, "err", err)
	} else {
		h.log.Debug("disconnected", "conn", id, "user", claims.User)
	}
	return nil
}

// setStreamHeaders sets what every event stream's response says, however
// it is carried.
func setStreamHeaders(hdr http.Header) {
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
}

// head is the response head of a taken-over stream, written by hand since
// net/http no longer writes it: the stream's own headers and every header
// middleware already set on the response (CORS), verbatim. There is no
// Content-Length and no chunking; "Connection: close" says the response
// ends when the connection does (RFC 9112 §6.3), which EventSource, curl
// and every HTTP/1.1 client handle.
func (h *Handler) head(set http.Header) []byte {
	hdr := set.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	setStreamHeaders(hdr)
	hdr.Set("Connection", "close")
	hdr.Del("Content-Length")
	hdr.Del("Transfer-Encoding")
	if _, ok := hdr["Date"]; !ok {
		hdr.Set("Date", time.Now().UTC().Format(http.TimeFormat)) // RFC 9110 §6.6.1: an origin with a clock sends it
	}
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = hdr.Write(&b) // a bytes.Buffer does not fail
	b.WriteString("\r\n")
	return b.Bytes()
}

// prelude is the start of a taken-over stream: head, the retry field and
// the connected event, in one buffer so that they take one write.
func (h *Handler) prelude(head []byte, id herald.ConnID) []byte {
	hello := h.connected(id)
	b := make([]byte, 0, len(head)+len(h.retry)+len(hello))
	return append(append(append(b, head...), h.retry...), hello...)
}

// connected is the stream's first event: the connection id (what POST
// /v1/ack takes) and the epoch offsets belong to.
func (h *Handler) connected(id herald.ConnID) []byte {
	hello, _ := json.Marshal(struct {
		Type  string        `json:"type"`
		ID    herald.ConnID `json:"connection_id"`
		Epoch string        `json:"epoch"`
	}{"connected", id, h.sessions.Epoch()})
	return wire.Event("connected", "", hello)
}

// Stream states, guarded by conn.mu.
const (
	stateOpen uint8 = iota
	stateClosing
	stateClosed
)

// conn is one event stream served through net/http (HTTP/2): the
// transport of a session. The handler's goroutine is its writer; Write
// only queues and wakes it. Streams taken over from HTTP/1.x are the
// gateway's conns instead.
type conn struct {
	h    *Handler
	s    *session.Session
	wake chan struct{}

	mu     sync.Mutex
	state  uint8
	queue  [][]byte
	qbytes int
}

// Write queues b; past the queue bounds the stream is closed with 4008.
func (c *conn) Write(b []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return false
	}
	cfg := c.h.sessions.Config()
	if len(c.queue) >= cfg.MaxQueueFrames || c.qbytes+len(b) > cfg.MaxQueueBytes {
		c.closeLocked(wire.CloseSlowConsumer, "send queue full")
		return false
	}
	c.queue = append(c.queue, b)
	c.qbytes += len(b)
	c.signal()
	return true
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Pending reports what waits for the writer.
func (c *conn) Pending() (frames, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue), c.qbytes
}

// Ping writes the heartbeat comment.
func (c *conn) Ping() { c.Write(c.h.ping) }

// Bidirectional: an EventSource cannot answer.
func (c *conn) Bidirectional() bool { return false }

// Close queues a close event, which tells the client why the stream ends
// (EventSource itself only sees the end and reconnects), and ends the
// stream once it is written.
func (c *conn) Close(code uint16, reason string) {
	c.mu.Lock()
	c.closeLocked(code, reason)
	c.mu.Unlock()
}

func (c *conn) closeLocked(code uint16, reason string) {
	if c.state != stateOpen {
		return
	}
	c.state = stateClosing
	c.queue = append(c.queue, wire.CloseEvent(code, reason)) // past the bounds: it is the last
	c.signal()
}

// run writes what is queued until the stream closes or the client leaves.
func (c *conn) run(w http.ResponseWriter, rc *http.ResponseController, r *http.Request) error {
	done := r.Context().Done()
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue, c.qbytes = nil, 0
		closing := c.state != stateOpen
		c.mu.Unlock()
		if len(batch) > 0 {
			now := time.Now()
			_ = rc.SetWriteDeadline(now.Add(c.h.cfg.WriteTimeout))
			for _, b := range batch {
				if _, err := w.Write(b); err != nil {
					return err
				}
			}
			if err := rc.Flush(); err != nil {
				return err
			}
			c.s.Wrote(now)
			c.s.Drained()
		}
		if closing {
			return nil
		}
		select {
		case <-c.wake:
		case <-done:
			return r.Context().Err()
		}
	}
}

// teardown ends the session once the stream is over.
func (c *conn) teardown() {
	c.mu.Lock()
	c.state = stateClosed
	c.queue, c.qbytes = nil, 0
	c.mu.Unlock()
	c.s.Gone()
}
