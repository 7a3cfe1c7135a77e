package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/gobwas/ws"
)

// The worker's side of the peer (dialect centrifugo): the same worker
// processes, dialers and epoll loop as for Herald, speaking Centrifugo's
// JSON protocol over the WebSocket.

// centrifugoConnect sends the connect command with tok on a freshly
// upgraded connection and reads, blocking, until its reply: the
// handshake is done only then. br holds what the server wrote right
// behind its upgrade response, if anything. Bytes that came behind the
// reply are fed to the connection; alive is false if they ended it.
func (c *wconn) centrifugoConnect(br *bufio.Reader, tok string, deadline time.Time) (alive bool, err error) {
	var buf []byte
	if br != nil {
		p, _ := br.Peek(br.Buffered())
		buf = append(buf, p...)
		ws.PutReader(br)
	}
	if err := c.writeFrame(opText, centrifugoConnect(tok)); err != nil {
		return false, fmt.Errorf("send connect: %w", err)
	}
	_ = c.nc.SetReadDeadline(deadline)
	defer func() { _ = c.nc.SetReadDeadline(time.Time{}) }()
	tmp := make([]byte, 4096)
	for {
		f, ok, err := parseFrame(buf)
		if err != nil {
			return false, err
		}
		if !ok {
			n, err := c.nc.Read(tmp)
			buf = append(buf, tmp[:n]...)
			if err != nil && n == 0 {
				return false, fmt.Errorf("waiting for the connect reply: %w", err)
			}
			continue
		}
		switch {
		case f.op == opPing:
			if err := c.writeControl(opPong, f.payload); err != nil {
				return false, err
			}
			buf = buf[f.size:]
			continue
		case f.op == opClose:
			return false, errors.New(serverClosed(f.payload))
		case f.op != opText || !f.fin:
			return false, fmt.Errorf("unexpected frame (opcode %#x, fin %v) before the connect reply", f.op, f.fin)
		}
		first, rest, _ := bytes.Cut(f.payload, []byte("\n"))
		m := parseCentrifugoLine(first)
		switch {
		case m.kind != cfReply || m.id != 1:
			return false, fmt.Errorf("expected the connect reply, got %.200q", first)
		case m.err != nil:
			return false, fmt.Errorf("connect refused: %s", m.err)
		}
		now := time.Now().UnixNano()
		if len(rest) > 0 {
			c.onCentrifugo(rest, now)
		}
		if tail := buf[f.size:]; len(tail) > 0 {
			return c.feed(tail, now), nil
		}
		return true, nil
	}
}

// onCentrifugo handles one server message: one or more newline-separated
// lines, each a reply, a push or a ping. Publications carrying our
// payload are deliveries, exactly as Herald's messages are.
func (c *wconn) onCentrifugo(p []byte, now int64) {
	w := c.w
	for len(p) > 0 {
		var line []byte
		line, p, _ = bytes.Cut(p, []byte("\n"))
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		m := parseCentrifugoLine(line)
		switch m.kind {
		case cfPing:
			// Answered, or the server closes the connection after its pong
			// timeout; a failed write shows as the next read failing.
			w.pings.Add(1)
			_ = c.writeFrame(opText, []byte("{}"))
		case cfPub:
			if m.seq <= c.lastSeq {
				w.outOfOrder.Add(1)
			}
			c.lastSeq = m.seq
			w.recordDelivery(m.seq, now-m.t, now)
		case cfReply:
			if m.err != nil { // we send no command after connect: not expected
				w.badFrames.Add(1)
				w.addError(fmt.Sprintf("connection %d: reply %d: %s", w.spec.First+c.idx, m.id, m.err))
			} else {
				w.other.Add(1)
			}
		default:
			w.other.Add(1)
		}
	}
}
