package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// wconn is one client connection held by a worker: a WebSocket, or with
// sse set a Server-Sent Events stream (sseconn.go). It is small on purpose
// (no buffers while idle, no goroutine in epoll mode) so that a worker
// process can hold its ~20k connections cheaply. Bytes arrive through
// feed, from the epoll loop or from the connection's own read goroutine;
// only one of them ever reads a given connection, so the parser state
// needs no lock. Everything above feed (the poller, the worker) is the
// same for both transports.
type wconn struct {
	w     *worker
	nc    net.Conn
	rc    syscall.RawConn // epoll mode only
	fd    int32           // epoll mode only
	idx   int             // position in worker.conns
	state atomic.Int32
	wmu   sync.Mutex // serializes the rare writes: pongs, close frames, resume

	// Parser state, owned by the one reader.
	pend    []byte // an incomplete frame (or SSE event); nil almost always
	frag    []byte // an incomplete fragmented message
	lastSeq int64
	sse     *sseStream // nil on a WebSocket
}

// Connection states.
const (
	stOpen    int32 = iota
	stClosing       // we are closing it: what fails from here on is expected
	stClosed
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opCont   = 0x0
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

// maxServerMessage bounds what a server may send in one message: Herald's
// payload limit is 128 KiB, and the herald.v1 envelope adds little.
const maxServerMessage = 1 << 20

// frame is a parsed server frame; payload aliases the input.
type frame struct {
	fin     bool
	op      byte
	payload []byte
	size    int // header plus payload
}

var errMaskedFrame = errors.New("server sent a masked frame")

// parseFrame parses the frame at the start of b. ok is false when b does not
// hold a whole frame yet.
func parseFrame(b []byte) (f frame, ok bool, err error) {
	if len(b) < 2 {
		return f, false, nil
	}
	if b[0]&0x70 != 0 {
		return f, false, errors.New("reserved bits set in a server frame")
	}
	f.fin, f.op = b[0]&0x80 != 0, b[0]&0x0F
	if b[1]&0x80 != 0 {
		return f, false, errMaskedFrame // RFC 6455 §5.1: the client must close
	}
	n, hdr := uint64(b[1]&0x7F), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return f, false, nil
		}
		n, hdr = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return f, false, nil
		}
		n, hdr = binary.BigEndian.Uint64(b[2:]), 10
	}
	if n > maxServerMessage {
		return f, false, fmt.Errorf("server frame of %d bytes exceeds %d", n, maxServerMessage)
	}
	if uint64(len(b)-hdr) < n {
		return f, false, nil
	}
	f.size = hdr + int(n)
	f.payload = b[hdr:f.size]
	return f, true, nil
}

// feed parses p, read at now (unix nanos). p is only borrowed (and may be
// overwritten): the tail of an incomplete frame is copied. It reports
// whether the connection is still open.
func (c *wconn) feed(p []byte, now int64) bool {
	if c.sse != nil {
		return c.feedSSE(p, now)
	}
	data := p
	if len(c.pend) > 0 {
		c.pend = append(c.pend, p...)
		data = c.pend
	}
	for len(data) > 0 {
		f, ok, err := parseFrame(data)
		if err != nil {
			c.protocolError(err)
			return false
		}
		if !ok {
			break
		}
		if !c.handleFrame(f, now) {
			return false
		}
		data = data[f.size:]
	}
	switch {
	case len(data) == 0:
		c.pend = nil // drop the buffer: idle connections hold none
	case len(c.pend) > 0:
		c.pend = c.pend[:copy(c.pend, data)] // data is a tail of pend
	default:
		c.pend = append([]byte(nil), data...)
	}
	return true
}

func (c *wconn) handleFrame(f frame, now int64) bool {
	switch f.op {
	case opText, opBinary:
		if c.frag != nil {
			c.protocolError(errors.New("new message inside a fragmented one"))
			return false
		}
		if f.fin {
			c.onMessage(f.payload, now)
		} else {
			c.frag = append([]byte(nil), f.payload...)
		}
	case opCont:
		if c.frag == nil || len(c.frag)+len(f.payload) > maxServerMessage {
			c.protocolError(errors.New("bad continuation frame"))
			return false
		}
		c.frag = append(c.frag, f.payload...)
		if f.fin {
			msg := c.frag
			c.frag = nil
			c.onMessage(msg, now)
		}
	case opPing:
		// Answering keeps us alive: Herald drops a connection that says
		// nothing for two ping intervals.
		c.w.pings.Add(1)
		if err := c.writeControl(opPong, f.payload); err != nil {
			c.finish(err)
			return false
		}
	case opPong:
	case opClose:
		if c.state.CompareAndSwap(stOpen, stClosing) {
			c.w.drop(serverClosed(f.payload))
			_ = c.writeControl(opClose, f.payload[:min(2, len(f.payload))])
		}
		c.finish(nil)
		return false
	default:
		c.protocolError(fmt.Errorf("unknown opcode %#x", f.op))
		return false
	}
	return true
}

// onMessage records one message. Ours look like {"t":<unix nanos>,"seq":n}
// (the scenarios send exactly that); anything else is counted as other.
// On herald.v1 they arrive inside an envelope.
func (c *wconn) onMessage(p []byte, now int64) {
	if c.w.peerKey != nil {
		c.onCentrifugo(p, now)
		return
	}
	if c.w.streams != nil {
		c.onEnvelope(p, now)
		return
	}
	t, ok := jsonInt(p, `"t":`)
	if !ok {
		c.w.other.Add(1)
		return
	}
	seq, _ := jsonInt(p, `"seq":`)
	if seq <= c.lastSeq {
		c.w.outOfOrder.Add(1)
	}
	c.lastSeq = seq
	c.w.recordDelivery(seq, now-t, now)
}

// onEnvelope handles one herald.v1 server message. A stored message moves
// the connection along its user's stream (and is checked against it); on a
// resumed connection it is a replay, else a live delivery whose latency
// counts. A reset is counted as an error: the resume scenario never gives
// the server a reason for one.
func (c *wconn) onEnvelope(p []byte, now int64) {
	w := c.w
	typ, _ := jsonString(p, `"type":`)
	switch string(typ) {
	case "message":
	case "reset":
		off, _ := jsonInt(p, `"offset":`)
		epoch, _ := jsonString(p, `"epoch":`)
		w.resets.Add(1)
		w.addError(fmt.Sprintf("connection %d: %s", w.spec.First+c.idx, p))
		w.advance(c.idx, off, epoch, now, true)
		return
	case "error":
		// Our resume (the only thing we send) was not understood.
		w.badFrames.Add(1)
		w.addError(fmt.Sprintf("connection %d: %s", w.spec.First+c.idx, p))
		return
	default: // pings, pongs, inbox counts
		w.other.Add(1)
		return
	}
	// The envelope's fields come before its data, so these find the
	// envelope's own and never the payload's.
	off, stored := jsonInt(p, `"offset":`)
	if !stored { // a broadcast: no place in any stream
		w.other.Add(1)
		return
	}
	epoch, _ := jsonString(p, `"epoch":`)
	c.onStored(off, epoch, p, now)
}

// onStored handles a stored message at offset off of epoch, whose
// envelope (or payload) is p: it moves the connection along its stream,
// and unless it is a replay records it as a live delivery.
func (c *wconn) onStored(off int64, epoch, p []byte, now int64) {
	w := c.w
	if w.advance(c.idx, off, epoch, now, false) {
		return // a replay: its age says nothing about delivery latency
	}
	t, ok := jsonInt(p, `"t":`)
	if !ok {
		w.other.Add(1)
		return
	}
	seq, _ := jsonInt(p, `"seq":`)
	w.recordDelivery(seq, now-t, now)
}

// jsonString finds key in p and returns the string value after it,
// without unescaping: the values read this way (types, hex epochs) have
// nothing to escape.
func jsonString(p []byte, key string) ([]byte, bool) {
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return nil, false
	}
	p = bytes.TrimLeft(p[i+len(key):], " ")
	if len(p) == 0 || p[0] != '"' {
		return nil, false
	}
	end := bytes.IndexByte(p[1:], '"')
	if end < 0 {
		return nil, false
	}
	return p[1 : 1+end], true
}

// jsonInt finds key in p and parses the non-negative integer after it. A
// full JSON decode per delivery would cost more than the rest of the
// client's work together.
func jsonInt(p []byte, key string) (int64, bool) {
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return 0, false
	}
	p = bytes.TrimLeft(p[i+len(key):], " ")
	var v int64
	n := 0
	for n < len(p) && n < 19 && p[n] >= '0' && p[n] <= '9' {
		v = v*10 + int64(p[n]-'0')
		n++
	}
	return v, n > 0
}

// writeControl writes one masked control frame (payload cut to 125 bytes,
// the most a control frame may carry).
func (c *wconn) writeControl(op byte, payload []byte) error {
	return c.writeFrame(op, payload[:min(len(payload), 125)])
}

// maxClientFrame bounds what writeFrame sends: the resume message is
// under 100 bytes, and a 16-bit length covers any epoch a server might
// choose.
const maxClientFrame = 1<<16 - 1

// writeFrame writes one masked, unfragmented frame.
func (c *wconn) writeFrame(op byte, payload []byte) error {
	n := len(payload)
	if n > maxClientFrame {
		return fmt.Errorf("client frame of %d bytes exceeds %d", n, maxClientFrame)
	}
	var stack [4 + 4 + 125]byte // header, mask key, a control frame's payload
	b := stack[:0]
	if 8+n > len(stack) {
		b = make([]byte, 0, 8+n)
	}
	b = append(b, 0x80|op)
	if n <= 125 {
		b = append(b, 0x80|byte(n))
	} else {
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	}
	b = binary.LittleEndian.AppendUint32(b, rand.Uint32()) // the mask key
	key := len(b) - 4
	for i := range n {
		b = append(b, payload[i]^b[key+i%4])
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// A deadline, because a worker must never hang on a peer that stopped
	// reading: in epoll mode this write runs on the loop every socket shares.
	_ = c.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err := c.nc.Write(b)
	return err
}

// close closes the connection from our side: a close frame, then the socket.
// The close frame lets Herald log a clean disconnect rather than an error.
// An SSE client has no way to say goodbye: it just closes the socket, as
// a browser's EventSource.close does.
func (c *wconn) close() {
	if !c.state.CompareAndSwap(stOpen, stClosing) {
		return
	}
	if c.sse == nil {
		_ = c.writeControl(opClose, []byte{0x03, 0xE8}) // 1000 normal closure
	}
	c.finish(nil)
}

func (c *wconn) protocolError(err error) {
	c.w.badFrames.Add(1)
	c.w.addError(fmt.Sprintf("connection %d: %v", c.w.spec.First+c.idx, err))
	if c.state.CompareAndSwap(stOpen, stClosing) && c.sse == nil {
		_ = c.writeControl(opClose, []byte{0x03, 0xEA}) // 1002 protocol error
	}
	c.finish(nil)
}

// finish releases the connection once, whoever calls it. A connection still
// open at this point was not closed by us: the server or the network
// dropped it, which the run reports.
func (c *wconn) finish(cause error) {
	prev := c.state.Swap(stClosed)
	if prev == stClosed {
		return
	}
	if prev == stOpen {
		if cause == nil || errors.Is(cause, io.EOF) {
			cause = errors.New("connection closed without a close frame")
			if c.sse != nil {
				cause = errors.New("connection closed without a close event")
			}
		}
		c.w.drop(fmt.Sprintf("connection %d: %v", c.w.spec.First+c.idx, cause))
	}
	if c.rc != nil {
		c.w.poll.remove(c)
	}
	_ = c.nc.Close()
	c.w.opened(c.idx, -1)
}

// readLoop is the goroutine-per-connection reader (-client-io goroutine,
// and TLS connections, whose record layer needs blocking reads).
func (c *wconn) readLoop() {
	buf := make([]byte, 512) // our messages are ~40 bytes; longer ones just take more reads
	for {
		n, err := c.nc.Read(buf)
		if n > 0 && !c.feed(buf[:n], time.Now().UnixNano()) {
			return
		}
		if err != nil {
			c.finish(err)
			return
		}
	}
}

// serverClosed describes a close frame's payload: its status code (1005,
// "no status", when it has none) and reason.
func serverClosed(payload []byte) string {
	code := 1005
	if len(payload) >= 2 {
		code = int(binary.BigEndian.Uint16(payload))
	}
	return fmt.Sprintf("server closed the connection: %d %q", code, payload[min(2, len(payload)):])
}
