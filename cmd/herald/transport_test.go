package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-gw/herald/wire"
)

// transport is a way for a test client to connect: a WebSocket (the
// server using one of its connection I/O strategies) or Server-Sent
// Events. The same session carries each, so the same test holds on each.
type transport struct {
	name string
	io   string // the server's HERALD_IO for a WebSocket transport; "" for SSE
}

var (
	wsEpoll      = transport{"ws-epoll", "epoll"}
	wsGoroutine  = transport{"ws-goroutine", "goroutine"}
	sseTransport = transport{"sse", ""}
)

// transports runs f once per transport: WebSocket with either connection
// I/O strategy, and SSE.
func transports(t *testing.T, f func(t *testing.T, tr transport)) {
	for _, tr := range []transport{wsEpoll, wsGoroutine, sseTransport} {
		t.Run(tr.name, func(t *testing.T) { f(t, tr) })
	}
}

func (tr transport) sse() bool { return tr.io == "" }

// env is testEnv for a server the transport's clients connect to.
func (tr transport) env(t *testing.T, extra ...string) map[string]string {
	env := testEnv(t, extra...)
	if tr.io != "" {
		env["HERALD_IO"] = tr.io
	}
	return env
}

// dialConfig is what dial options set.
type dialConfig struct {
	v1     bool              // herald.v1 on WebSocket; raw otherwise (SSE always carries envelopes)
	query  string            // appended to the URL after the token, e.g. "&since=3&epoch=…"
	header map[string]string // request headers
	token  *string           // the client token; a fresh one of the user when nil
	rcvbuf int               // the socket's receive buffer, when not 0
	idle   bool              // SSE: do not read the stream yet, not even its connected event
}

type dialOpt func(*dialConfig)

// asV1 speaks herald.v1 on a WebSocket. SSE carries herald.v1 envelopes
// anyway.
func asV1() dialOpt { return func(c *dialConfig) { c.v1 = true } }

// sinceQuery resumes with ?since=&epoch= (the form both transports share).
func sinceQuery(offset uint64, epoch string) dialOpt {
	return func(c *dialConfig) { c.query += fmt.Sprintf("&since=%d&epoch=%s", offset, epoch) }
}

// withQuery appends q to the URL.
func withQuery(q string) dialOpt { return func(c *dialConfig) { c.query += q } }

// withHeader sets a request header (Last-Event-ID, Origin, …).
func withHeader(k, v string) dialOpt {
	return func(c *dialConfig) {
		if c.header == nil {
			c.header = map[string]string{}
		}
		c.header[k] = v
	}
}

// withToken connects with tok instead of a fresh token of the user.
func withToken(tok string) dialOpt { return func(c *dialConfig) { c.token = &tok } }

// rcvBuf shrinks the client socket's receive buffer, so that a client
// that does not read fills up quickly.
func rcvBuf(n int) dialOpt { return func(c *dialConfig) { c.rcvbuf = n } }

// notReading leaves the stream unread until the test reads it: the client
// plays one that never reads. (A WebSocket client reads only when asked.)
func notReading() dialOpt { return func(c *dialConfig) { c.idle = true } }

// conn is one connection of a test over any transport. Its methods that
// return errors may be called from any goroutine; the ones taking t only
// from the test's.
type conn struct {
	t     *testing.T
	tr    transport
	h     *server
	user  string
	token string
	hc    *http.Client
	sock  atomic.Pointer[net.TCPConn] // the client's socket

	ws *websocket.Conn // WebSocket transports
	v1 bool            // ws speaks herald.v1

	sse         *sseConn
	id          string // SSE: the connection id its connected event gave
	epoch       string // SSE: the epoch its connected event gave
	connected   bool   // SSE: the connected event was read
	lastEventID string // SSE: what a browser would send as Last-Event-ID now

	last envelope // the last stored message (or reset) received: where a resume starts
}

// dial connects user's client over the transport, or fails t.
func (tr transport) dial(t *testing.T, h *server, user string, opts ...dialOpt) *conn {
	t.Helper()
	c, status, body, err := tr.tryDial(t, h, user, opts...)
	if err != nil {
		t.Fatalf("%s dial: %v (status %d, body %s)", tr.name, err, status, body)
	}
	return c
}

// tryDial connects user's client over the transport. When the server
// refuses, it returns the status and body of its reply and an error.
func (tr transport) tryDial(t *testing.T, h *server, user string, opts ...dialOpt) (c *conn, status int, body string, err error) {
	t.Helper()
	var cfg dialConfig
	for _, o := range opts {
		o(&cfg)
	}
	c = &conn{t: t, tr: tr, h: h, user: user}
	if cfg.token != nil {
		c.token = *cfg.token
	} else {
		c.token = h.token(t, user)
	}
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		if cfg.rcvbuf == 0 {
			return nil
		}
		return setRcvBuf(rc, cfg.rcvbuf)
	}}
	ht := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := d.DialContext(ctx, network, addr)
		if tc, ok := nc.(*net.TCPConn); ok {
			c.sock.Store(tc)
		}
		return nc, err
	}}
	c.hc = &http.Client{Transport: ht}
	t.Cleanup(ht.CloseIdleConnections)

	if !tr.sse() {
		c.v1 = cfg.v1
		o := &websocket.DialOptions{HTTPClient: c.hc, HTTPHeader: http.Header{}}
		if cfg.v1 {
			o.Subprotocols = []string{"herald.v1"}
		}
		for k, v := range cfg.header {
			o.HTTPHeader.Set(k, v)
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		ws, resp, err := websocket.Dial(ctx, h.WSURL+"/ws?token="+c.token+cfg.query, o)
		if err != nil {
			if resp != nil {
				b, _ := io.ReadAll(resp.Body)
				return nil, resp.StatusCode, string(b), err
			}
			return nil, 0, "", err
		}
		ws.SetReadLimit(1 << 20)
		t.Cleanup(func() { ws.CloseNow() })
		c.ws = ws
		return c, http.StatusSwitchingProtocols, "", nil
	}

	resp, cancel, err := sseGet(h, c.hc, "?token="+c.token+cfg.query, cfg.header)
	if err != nil {
		return nil, 0, "", err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode, string(b), fmt.Errorf("GET /sse: %s", resp.Status)
	}
	checkStreamHeaders(t, resp)
	c.sse = newSSEConn(t, resp.Body, cancel)
	if !cfg.idle {
		if err := c.awaitConnected(testTimeout); err != nil {
			return nil, resp.StatusCode, "", err
		}
	}
	return c, resp.StatusCode, "", nil
}

// awaitConnected reads the connected event that starts every stream.
func (c *conn) awaitConnected(d time.Duration) error {
	ev, err := c.sse.recv(d)
	if err != nil {
		return fmt.Errorf("no connected event: %w", err)
	}
	if ev.Event != "connected" || ev.ID != "" {
		return fmt.Errorf("the stream starts with %+v, not a connected event", ev)
	}
	if ev.Retry != 2000 {
		c.t.Errorf("SSE: the stream set retry %d before its connected event, want 2000", ev.Retry)
	}
	var hello struct {
		ID    string `json:"connection_id"`
		Epoch string `json:"epoch"`
	}
	if err := json.Unmarshal(ev.Data, &hello); err != nil {
		return err
	}
	c.id, c.epoch, c.connected = hello.ID, hello.Epoch, true
	return nil
}

// protocol is the connection's protocol in GET /v1/users/{u}/connections.
func (c *conn) protocol() string {
	switch {
	case c.sse != nil:
		return "sse"
	case c.v1:
		return "herald.v1"
	}
	return "raw"
}

// envelopes reports whether the client is given herald.v1 envelopes (and
// control messages), rather than raw payloads.
func (c *conn) envelopes() bool { return c.sse != nil || c.v1 }

// msg is what a client was given: a notification, or a control message.
type msg struct {
	envelope        // herald.v1 and SSE; for a raw frame only Type ("message")
	Payload  []byte // a notification's payload: a raw frame's bytes, or the envelope's data
	Binary   bool   // a raw binary frame
	EventID  string // SSE: the event's id field
}

// sseClosed is the end of a stream announced by its close event.
type sseClosed struct {
	Code   int
	Reason string
}

func (e *sseClosed) Error() string { return fmt.Sprintf("SSE close event %d %q", e.Code, e.Reason) }

// closeCode is the close code that ended a connection: a WebSocket close
// frame's or an SSE close event's; -1 when err is neither.
func closeCode(err error) int {
	var sc *sseClosed
	if errors.As(err, &sc) {
		return sc.Code
	}
	return int(websocket.CloseStatus(err))
}

// recv returns the next message, skipping heartbeats, waiting at most d.
// A connection that ends returns an error that closeCode understands.
func (c *conn) recv(d time.Duration) (msg, error) {
	if c.sse != nil {
		return c.recvSSE(d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		typ, b, err := readWS(ctx, c.t, c.ws)
		if err != nil {
			return msg{}, err
		}
		if !c.v1 {
			return msg{envelope: envelope{Type: "message"}, Payload: b, Binary: typ == websocket.MessageBinary}, nil
		}
		var e envelope
		if err := json.Unmarshal(b, &e); err != nil {
			return msg{}, fmt.Errorf("not a herald.v1 message: %s", b)
		}
		if e.Type == "ping" {
			continue
		}
		c.track(e)
		return msg{envelope: e, Payload: e.Data}, nil
	}
}

func (c *conn) recvSSE(d time.Duration) (msg, error) {
	if !c.connected {
		if err := c.awaitConnected(d); err != nil {
			return msg{}, err
		}
	}
	ev, err := c.sse.recv(d)
	if err != nil {
		return msg{}, err
	}
	c.lastEventID = ev.LastEventID
	switch ev.Event {
	case "connected":
		return msg{}, fmt.Errorf("a second connected event: %s", ev.Data)
	case "close":
		if ev.ID != "" {
			c.t.Errorf("SSE close event has id %q", ev.ID)
		}
		var cl struct {
			Code   int    `json:"code"`
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal(ev.Data, &cl); err != nil {
			return msg{}, fmt.Errorf("SSE close event data: %s", ev.Data)
		}
		// The close event is the last: the stream ends right after it.
		if ev, err := c.sse.recv(testTimeout); err != io.EOF {
			c.t.Errorf("SSE: after the close event %s came %+v, %v; want the end of the stream", ev.Data, ev, err)
		}
		return msg{}, &sseClosed{cl.Code, cl.Reason}
	}
	var e envelope
	if err := json.Unmarshal(ev.Data, &e); err != nil {
		return msg{}, fmt.Errorf("SSE %s event data: %v: %s", ev.Event, err, ev.Data)
	}
	if e.Type != ev.Event {
		c.t.Errorf("SSE %s event carries type %q", ev.Event, e.Type)
	}
	// A stored message's id is <epoch>:<offset>, and so is a reset's, so
	// that a browser's own reconnect resumes there; nothing else has one.
	wantID := ""
	if ev.Event == "reset" || ev.Event == "message" && e.Offset > 0 {
		wantID = wire.EventID(e.Epoch, e.Offset)
	}
	if ev.ID != wantID {
		c.t.Errorf("SSE %s event has id %q, want %q (data %s)", ev.Event, ev.ID, wantID, ev.Data)
	}
	c.track(e)
	return msg{envelope: e, Payload: e.Data, EventID: ev.ID}, nil
}

// track remembers the resume point.
func (c *conn) track(e envelope) {
	if e.Type == "reset" || e.Type == "message" && e.Offset > 0 {
		c.last = e
	}
}

// next returns the next message, or fails t.
func (c *conn) next(t *testing.T) msg {
	t.Helper()
	m, err := c.recv(testTimeout)
	if err != nil {
		t.Fatalf("%s %s: read: %v", c.tr.name, c.user, err)
	}
	return m
}

// payload returns the payload of the next message, which must be a
// notification.
func (c *conn) payload(t *testing.T) string {
	t.Helper()
	m := c.next(t)
	if m.Type != "message" {
		t.Fatalf("%s %s: got %+v, want a notification", c.tr.name, c.user, m.envelope)
	}
	return string(m.Payload)
}

// closed reads (and drops) messages until the connection ends, at most
// d in all, and returns what ended it.
func (c *conn) closed(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("still open after %v", d)
		}
		if _, err := c.recv(left); err != nil {
			return err
		}
	}
}

// expectClose reads until the connection ends and checks its close code:
// a WebSocket close frame's, or an SSE close event's (then the end of the
// stream).
func (c *conn) expectClose(t *testing.T, code int) {
	t.Helper()
	err := c.closed(testTimeout)
	if got := closeCode(err); got != code {
		t.Fatalf("%s %s: closed with %d (%v), want %d", c.tr.name, c.user, got, err, code)
	}
}

// tryAck acknowledges offset: a herald.v1 ack message on a WebSocket, a
// POST /v1/ack for SSE.
func (c *conn) tryAck(offset uint64) error {
	if c.sse != nil {
		status, reply, err := c.postAck(offset)
		if err != nil {
			return err
		}
		var r struct {
			Conn  string `json:"connection_id"`
			Acked uint64 `json:"acked"`
		}
		if status != http.StatusOK || json.Unmarshal([]byte(reply), &r) != nil || r.Conn != c.id || r.Acked < offset {
			return fmt.Errorf("POST /v1/ack offset %d: %d %s", offset, status, reply)
		}
		return nil
	}
	if !c.v1 {
		return errors.New("a raw WebSocket client has no acks")
	}
	return writeV1Err(c.t, c.ws, fmt.Appendf(nil, `{"type":"ack","offset":%d}`, offset))
}

// ack acknowledges offset, or fails t.
func (c *conn) ack(t *testing.T, offset uint64) {
	t.Helper()
	if err := c.tryAck(offset); err != nil {
		t.Fatalf("%s %s: ack: %v", c.tr.name, c.user, err)
	}
}

// postAck posts an SSE client's ack, the body validated against the
// schema, with the user's token, and returns the reply.
func (c *conn) postAck(offset uint64) (int, string, error) {
	body := fmt.Sprintf(`{"connection_id":%q,"offset":%d}`, c.id, offset)
	schema.AckRequest(c.t, []byte(body))
	return postAck(c.h, c.token, body)
}

// postAck posts body to /v1/ack with a client token.
func postAck(h *server, token, body string) (int, string, error) {
	req, err := http.NewRequest("POST", h.URL+"/v1/ack", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := apiClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// resume returns the dial option that resumes where this client stopped,
// the transport's own way: Last-Event-ID, as a browser's EventSource
// sends it, for SSE; ?since=&epoch= for a WebSocket.
func (c *conn) resume() dialOpt {
	if c.sse != nil {
		return withHeader("Last-Event-ID", c.lastEventID)
	}
	return sinceQuery(c.last.Offset, c.last.Epoch)
}

// close ends the connection from the client's side, cleanly.
func (c *conn) close() {
	if c.sse != nil {
		c.sse.close()
		return
	}
	c.ws.Close(websocket.StatusNormalClosure, "")
}

// closeNow drops the connection.
func (c *conn) closeNow() {
	if c.sse != nil {
		c.sse.close()
		return
	}
	c.ws.CloseNow()
}

// kill resets the client's socket: a peer that died without a goodbye.
func (c *conn) kill(t *testing.T) {
	t.Helper()
	tc := c.sock.Load()
	if tc == nil {
		t.Fatal("no socket to kill")
	}
	tc.SetLinger(0) // close with a TCP reset
	tc.Close()
}
