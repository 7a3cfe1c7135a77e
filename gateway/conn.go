package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/wire"
)

// parkedFrame is a live stored message held back while a replay runs.
type parkedFrame struct {
	frame  []byte
	offset uint64
}

// Connection states, guarded by conn.mu.
const (
	stateOpen    uint8 = iota
	stateClosing       // a close frame is queued; nothing else is accepted
	stateClosed        // the socket is closed and the conn left the hub
)

// conn is one WebSocket connection. It is kept small on purpose: idle
// connections are what a gateway holds most of, and every byte here is
// multiplied by a million on a big node.
type conn struct {
	g     *Gateway
	nc    net.Conn
	rc    syscall.RawConn // epoll mode only
	id    herald.ConnID
	user  herald.UserID
	proto herald.Protocol

	connectedAt int64        // unix nanos
	expires     atomic.Int64 // token expiry, unix nanos; 0 = none; a refresh moves it
	lastRead    atomic.Int64
	lastActive  atomic.Int64
	acked       atomic.Uint64 // highest offset the client acknowledged
	sourceIP    string
	userAgent   string // interned: thousands of tabs share a handful of browsers

	mu         sync.Mutex
	state      uint8
	writing    bool         // a writer goroutine owns the socket's write side
	fd         int32        // epoll mode only
	qbytes     int          // bytes in queue
	lastOffset uint64       // highest stream offset queued to this connection
	queue      [][]byte     // frames waiting for the writer; shared, read-only slices
	spare      [][]byte     // the writer's previous batch, reused to avoid allocating
	replay     *replayState // non-nil while a replay runs

	// Reader state, touched only by the one reader active at a time (the
	// read goroutine, or the epoll worker that holds the one-shot event).
	rd      *readState // non-nil only while a frame or message is incomplete
	discard bool       // after a protocol error: drop input until the client closes
	spoke   bool       // the client has sent a message (resume must be the first)
}

// readState holds what an idle connection does not need: the tail of an
// incomplete frame and the fragments of an incomplete message. Allocated
// when a read ends mid-frame, dropped when it completes.
type readState struct {
	rbuf  []byte
	msg   []byte
	msgOp byte
}

// replayState exists while a replay runs.
type replayState struct {
	parked  []parkedFrame // live stored messages that arrived during the replay
	drained chan struct{} // the writer signals progress here
}

func (c *conn) ID() herald.ConnID         { return c.id }
func (c *conn) User() herald.UserID       { return c.user }
func (c *conn) Protocol() herald.Protocol { return c.proto }
func (c *conn) Info() herald.ConnInfo {
	return herald.ConnInfo{
		ID: c.id, User: c.user, Protocol: c.proto.String(),
		ConnectedAt:  time.Unix(0, c.connectedAt).UTC(),
		LastActiveAt: time.Unix(0, c.lastActive.Load()).UTC(),
		SourceIP:     c.sourceIP, UserAgent: c.userAgent,
	}
}

// Send queues frame for the writer. offset is the frame's position in the
// user's stream, or 0 for frames outside it (pings, broadcasts, control
// messages). Send never blocks: a connection that cannot keep up is closed
// with 4008 rather than allowed to hold memory or delay anyone else; the
// client resumes from its last offset and loses nothing.
//
// Stored messages are delivered at most once per connection, in offset
// order: an offset at or below the last one queued was already sent (by a
// replay) and is skipped; while a replay runs, live ones are parked and
// queued after it.
func (c *conn) Send(frame []byte, offset uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return false
	}
	if offset != 0 {
		if offset <= c.lastOffset {
			return true
		}
		if rp := c.replay; rp != nil {
			if len(rp.parked) >= c.g.cfg.MaxQueueFrames {
				c.closeLocked(wire.CloseSlowConsumer, "send queue full")
				return false
			}
			rp.parked = append(rp.parked, parkedFrame{frame, offset})
			return true
		}
	}
	return c.queueLocked(frame, offset)
}

// queueLocked appends frame to the send queue, enforcing its bounds.
func (c *conn) queueLocked(frame []byte, offset uint64) bool {
	if len(c.queue) >= c.g.cfg.MaxQueueFrames || c.qbytes+len(frame) > c.g.cfg.MaxQueueBytes {
		c.closeLocked(wire.CloseSlowConsumer, "send queue full")
		return false
	}
	if offset != 0 {
		c.lastOffset = offset
	}
	if !c.writing && len(c.queue) == 0 && c.rc != nil {
		// Nothing in flight: try the socket right now, without blocking.
		// An idle connection's send buffer is empty, so this usually
		// writes the whole frame and saves a goroutine and a scheduling
		// delay per message; whatever does not fit goes to the writer.
		n, err := writeFD(c.fd, frame)
		switch {
		case err != nil && !errors.Is(err, syscall.EAGAIN):
			// The caller may hold a hub lock that teardown needs.
			c.state = stateClosed
			go c.finish(err)
			return false
		case n == len(frame):
			c.lastActive.Store(time.Now().UnixNano())
			return true
		case n > 0:
			frame = frame[n:]
		}
	}
	c.queue = append(c.queue, frame)
	c.qbytes += len(frame)
	c.startWriterLocked()
	return true
}

// Acked is the highest stream offset the client acknowledged.
func (c *conn) Acked() uint64 { return c.acked.Load() }

// Close queues a close frame and closes the socket once it is written (or
// the write deadline passes).
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
	// The close frame goes past the queue limits: it is the last one.
	c.queue = append(c.queue, wire.CloseFrame(code, reason))
	c.startWriterLocked()
}

// startWriterLocked starts a writer unless one is running. Writers live
// only while there is something to write, so an idle connection holds no
// goroutine, and a slow socket blocks only its own writer.
func (c *conn) startWriterLocked() {
	if !c.writing {
		c.writing = true
		go c.writeLoop()
	}
}

// writeLoop writes everything queued, coalescing the queue into one writev
// per round, until the queue is empty.
func (c *conn) writeLoop() {
	for {
		c.mu.Lock()
		if c.state == stateClosed || len(c.queue) == 0 {
			c.writing = false
			closing := c.state == stateClosing
			c.mu.Unlock()
			if closing {
				c.lingerClose()
			}
			return
		}
		batch := c.queue
		c.queue, c.spare = c.spare[:0], nil
		c.qbytes = 0
		c.mu.Unlock()

		now := time.Now()
		_ = c.nc.SetWriteDeadline(now.Add(c.g.cfg.WriteTimeout))
		bufs := net.Buffers(batch)
		_, err := bufs.WriteTo(c.nc)
		clear(batch) // drop references to frames so they can be collected
		if err != nil {
			c.teardown(err)
			return
		}
		c.lastActive.Store(now.UnixNano())
		c.mu.Lock()
		if c.spare == nil {
			c.spare = batch[:0]
		}
		if c.replay != nil {
			select {
			case c.replay.drained <- struct{}{}:
			default:
			}
		}
		c.mu.Unlock()
	}
}

// lingerTimeout is how long a closed connection waits for the client's
// close frame before the socket is closed regardless.
const lingerTimeout = 2 * time.Second

// lingerClose runs once the close frame is written. It leaves the hub at
// once, half-closes the socket and keeps reading (and discarding) until the
// client answers or lingerTimeout passes. Closing outright with unread
// bytes in the socket would send a TCP reset, and a reset can make the
// client drop our close frame and never learn the close code.
func (c *conn) lingerClose() {
	c.g.hub.Remove(c)
	if tc, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	time.AfterFunc(lingerTimeout, func() { c.teardown(nil) })
}

// teardown closes the socket and removes the connection from the hub at
// once, so a dead connection never receives (or counts as receiving)
// another message. It is idempotent.
func (c *conn) teardown(cause error) {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return
	}
	c.state = stateClosed
	c.mu.Unlock()
	c.finish(cause)
}

// finish does the work of teardown for a connection just marked closed.
func (c *conn) finish(cause error) {
	c.mu.Lock()
	c.queue, c.spare, c.qbytes = nil, nil, 0
	if c.replay != nil {
		// Wake a replay waiting for queue room: it sees the state and stops.
		select {
		case c.replay.drained <- struct{}{}:
		default:
		}
	}
	c.mu.Unlock()

	c.g.hub.Remove(c)
	if c.rc != nil {
		c.g.poll.remove(c)
	}
	_ = c.nc.Close()
	c.g.open.Add(-1)
	if cause != nil && !errors.Is(cause, io.EOF) && !errors.Is(cause, net.ErrClosed) {
		c.g.log.Debug("disconnected", "conn", c.id, "user", c.user, "err", cause)
	} else {
		c.g.log.Debug("disconnected", "conn", c.id, "user", c.user)
	}
}

// fail ends the connection after a read-side error. A protocol error is
// answered with its close code and the reader goes on discarding input
// until the client closes (see lingerClose); anything else just closes.
func (c *conn) fail(err error) {
	var pe *wire.ProtocolError
	if errors.As(err, &pe) {
		c.discard = true
		c.rd = nil
		c.Close(pe.Code, pe.Reason)
		return
	}
	c.teardown(err)
}

// readLoop is the goroutine-per-connection reader.
func (c *conn) readLoop() {
	// Small on purpose: client frames (pongs, acks) are tiny, a larger one
	// is assembled in readState, and this buffer lives as long as the
	// connection (it escapes to the heap through the Read call).
	buf := make([]byte, 512)
	for {
		n, err := c.nc.Read(buf)
		if n > 0 {
			c.lastRead.Store(time.Now().UnixNano())
			if perr := c.ingest(buf[:n]); perr != nil {
				c.fail(perr)
			}
		}
		if err != nil {
			c.teardown(err)
			return
		}
	}
}

// ingest parses the frames in p (after any incomplete frame kept from the
// previous read) and handles each complete one. p is only borrowed: the
// tail of an incomplete frame is copied.
func (c *conn) ingest(p []byte) error {
	if c.discard {
		return nil
	}
	data := p
	if c.rd != nil && len(c.rd.rbuf) > 0 {
		c.rd.rbuf = append(c.rd.rbuf, p...)
		data = c.rd.rbuf
	}
	for len(data) > 0 {
		h, ok, err := wire.ParseHeader(data, c.g.cfg.MaxFrame)
		if err != nil {
			return err
		}
		if !ok || len(data) < h.Size+h.Length {
			break
		}
		payload := data[h.Size : h.Size+h.Length]
		wire.Unmask(payload, h.Mask)
		if err := c.handleFrame(h, payload); err != nil {
			return err
		}
		data = data[h.Size+h.Length:]
	}
	switch {
	case len(data) == 0:
		if c.rd != nil {
			c.rd.rbuf = nil
			if c.rd.msg == nil {
				c.rd = nil
			}
		}
	case c.rd != nil && len(c.rd.rbuf) > 0:
		// data is a tail of rbuf: move it to the front.
		c.rd.rbuf = c.rd.rbuf[:copy(c.rd.rbuf, data)]
	default:
		if c.rd == nil {
			c.rd = &readState{}
		}
		c.rd.rbuf = append([]byte(nil), data...)
	}
	return nil
}

func (c *conn) handleFrame(h wire.Header, p []byte) error {
	switch h.Op {
	case wire.OpPing:
		c.Send(wire.Frame(wire.OpPong, p), 0)
		return nil
	case wire.OpPong:
		return nil
	case wire.OpClose:
		code := wire.CloseNormal
		if len(p) >= 2 {
			code = uint16(p[0])<<8 | uint16(p[1])
		}
		c.Close(code, "")
		return nil
	case wire.OpText, wire.OpBinary:
		if c.rd != nil && c.rd.msg != nil {
			return &wire.ProtocolError{Code: wire.CloseProtocolError, Reason: "new message inside a fragmented one"}
		}
		if h.Fin {
			return c.handleMessage(h.Op, p)
		}
		if c.rd == nil {
			c.rd = &readState{}
		}
		c.rd.msgOp = h.Op
		c.rd.msg = append(make([]byte, 0, len(p)*2), p...)
		return nil
	default: // continuation
		if c.rd == nil || c.rd.msg == nil {
			return &wire.ProtocolError{Code: wire.CloseProtocolError, Reason: "continuation without a message"}
		}
		if len(c.rd.msg)+len(p) > c.g.cfg.MaxFrame {
			return &wire.ProtocolError{Code: wire.CloseTooBig, Reason: "message too large"}
		}
		c.rd.msg = append(c.rd.msg, p...)
		if !h.Fin {
			return nil
		}
		msg, op := c.rd.msg, c.rd.msgOp
		c.rd.msg = nil
		return c.handleMessage(op, msg)
	}
}

// clientMessage is a herald.v1 message from a client. One struct covers
// every type; unused fields stay zero.
type clientMessage struct {
	Type   string  `json:"type"`
	Offset uint64  `json:"offset"` // ack
	Since  *uint64 `json:"since"`  // resume
	Epoch  string  `json:"epoch"`  // resume
	Token  string  `json:"token"`  // refresh
}

// handleMessage handles one complete client message. Raw connections may
// send anything (the original API had no client messages); herald.v1
// clients speak JSON objects with a "type".
func (c *conn) handleMessage(op byte, p []byte) error {
	if op == wire.OpText && !utf8.Valid(p) {
		return &wire.ProtocolError{Code: wire.CloseInvalidPayload, Reason: "text frame is not UTF-8"}
	}
	if c.proto != herald.ProtocolV1 {
		return nil
	}
	var m clientMessage
	if err := json.Unmarshal(p, &m); err != nil {
		return &wire.ProtocolError{Code: wire.CloseUnsupported, Reason: "herald.v1 messages are JSON objects"}
	}
	first := !c.spoke
	c.spoke = true
	switch m.Type {
	case "ping":
		c.Send(wire.Frame(wire.OpText, []byte(`{"type":"pong"}`)), 0)
	case "pong":
	case "ack":
		c.ack(m.Offset)
	case "resume":
		if !first || m.Since == nil {
			c.sendError("bad_resume", "resume must be the first message and carry since")
			return nil
		}
		c.startReplay(*m.Since, m.Epoch)
	case "refresh":
		c.refresh(m.Token)
	default:
		c.sendError("unknown_type", "unknown message type")
	}
	return nil
}

// sendError tells a herald.v1 client its message was not understood.
func (c *conn) sendError(code, msg string) {
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}{"error", code, msg})
	c.Send(wire.Frame(wire.OpText, b), 0)
}

// ack records the client's acknowledgement and wakes API calls waiting
// for it (POST …/messages?wait=ack).
func (c *conn) ack(offset uint64) {
	for {
		cur := c.acked.Load()
		if offset <= cur {
			return
		}
		if c.acked.CompareAndSwap(cur, offset) {
			break
		}
	}
	c.g.hub.NotifyAck(c.user, offset)
}

// refresh extends the connection's life with a newer token of the same
// user, so a long-lived tab is not closed with 4001 when its first token
// expires.
func (c *conn) refresh(tok string) {
	claims, err := c.g.tokens.Verify(tok)
	switch {
	case err != nil:
		c.sendError("invalid_token", herald.ErrorMessageOf(err))
		return
	case claims.User != c.user:
		c.sendError("invalid_token", "token is for another user")
		return
	}
	c.expires.Store(claims.Expires.UnixNano())
	b, _ := json.Marshal(struct {
		Type    string    `json:"type"`
		Expires time.Time `json:"expires"`
	}{"refreshed", claims.Expires.UTC()})
	c.Send(wire.Frame(wire.OpText, b), 0)
}
