package gateway

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/herald-gw/herald/session"
	"github.com/herald-gw/herald/wire"
)

// Connection states, guarded by conn.mu.
const (
	stateOpen    uint8 = iota
	stateClosing       // a close frame is queued; nothing else is accepted
	stateClosed        // the socket is closed
)

// conn is one connection, the transport of a session: a WebSocket, or a
// Server-Sent Events stream taken over from net/http (see AdoptSSE). It
// moves bytes — a bounded send queue drained by a short-lived writer,
// frames parsed as they are read — and tells its session what it read. It
// is kept small on purpose: idle connections are what a gateway holds most
// of, and every byte here is multiplied by a million on a big node.
//
// In epoll mode the conn owns its socket's descriptor and nothing else of
// it: the net.Conn net/http handed over is closed once the descriptor is
// duplicated (see Gateway.takeFD), which frees its netFD, both addresses,
// the runtime's poll descriptor and their deadline timers — more than the
// conn and its session together. Every system call on fd is made under mu
// with the state not closed, and the descriptor is closed only after the
// state is, so a number the kernel has handed to the next socket is never
// read, written, re-armed or shut down in this conn's name. In goroutine
// mode the net.Conn is kept in Gateway.netConns instead, off the struct
// every epoll connection carries.
type conn struct {
	g *Gateway
	s *session.Session

	mu       sync.Mutex
	state    uint8
	writing  bool  // a writer goroutine owns the socket's write side
	sse      bool  // an event stream: SSE heartbeat and close event, input discarded; fixed at creation
	overflow bool  // closed with 4008 because the queue was full, for the session to report
	fd       int32 // epoll mode: the socket's descriptor, owned by the conn; noFD otherwise
	// out is the send queue, nil while nothing waits: in epoll mode a
	// frame goes straight to the socket unless something is in flight, so
	// an idle connection holds no queue (48 bytes it would otherwise carry
	// for nothing); the writer drops it when it has drained it.
	out *outq

	// asm parses what the client sends. It is touched only by the one
	// reader active at a time (the read goroutine, or the epoll worker that
	// holds the one-shot event), and holds no buffer while idle.
	asm wire.Assembler
}

// noFD is conn.fd outside epoll mode (and before the socket is attached).
const noFD int32 = -1

// newConn returns a corked connection (its writer slot taken until uncork
// gives it its socket), with no descriptor yet.
func newConn(g *Gateway, sse bool) *conn {
	return &conn{g: g, sse: sse, writing: true, fd: noFD}
}

// epoll reports whether c's socket is served by the epoll loop, through
// its own descriptor.
func (c *conn) epoll() bool { return c.fd >= 0 }

// netConn is the socket of a goroutine-mode connection, nil once it is
// torn down (and always in epoll mode).
func (c *conn) netConn() net.Conn {
	if nc, ok := c.g.netConns.Load(c); ok {
		return nc.(net.Conn)
	}
	return nil
}

// outq is a connection's send queue while something waits in it.
type outq struct {
	frames [][]byte // waiting for the writer; shared, read-only slices
	spare  [][]byte // the writer's previous batch, reused to avoid allocating
	bytes  int      // bytes in frames
}

// pushLocked appends frame to the send queue, making the queue if there is
// none, without checking its bounds.
func (c *conn) pushLocked(frame []byte) {
	if c.out == nil {
		c.out = &outq{}
	}
	c.out.frames = append(c.out.frames, frame)
	c.out.bytes += len(frame)
}

// queuedLocked reports the frames and bytes in the send queue.
func (c *conn) queuedLocked() (frames, bytes int) {
	if c.out == nil {
		return 0, 0
	}
	return len(c.out.frames), c.out.bytes
}

// Write queues frame for the writer; see session.Transport. It never
// blocks: a connection that cannot keep up is closed with 4008 rather than
// allowed to hold memory or delay anyone else; the client resumes from its
// last offset and loses nothing.
func (c *conn) Write(frame []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return false
	}
	return c.queueLocked(frame)
}

// Pending reports the frames and bytes waiting for the writer.
func (c *conn) Pending() (frames, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queuedLocked()
}

// Ping sends a protocol ping; the client's pong (or anything else it
// sends) tells the session it is alive. An event stream gets a comment
// line instead, which nobody answers: it only has to be written in time.
func (c *conn) Ping() {
	if c.sse {
		c.Write(c.g.ssePing)
		return
	}
	c.Write(c.g.ping)
}

// Bidirectional: a WebSocket client answers pings, an EventSource cannot.
func (c *conn) Bidirectional() bool { return !c.sse }

// queueLocked appends frame to the send queue, enforcing its bounds.
func (c *conn) queueLocked(frame []byte) bool {
	queued, qbytes := c.queuedLocked()
	if queued >= c.g.cfg.maxQueueFrames || qbytes+len(frame) > c.g.cfg.maxQueueBytes {
		c.overflow = true
		c.closeLocked(wire.CloseSlowConsumer, "send queue full")
		return false
	}
	if !c.writing && queued == 0 && c.epoll() {
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
			c.s.Wrote(time.Now())
			return true
		case n > 0:
			frame = frame[n:]
		}
	}
	c.pushLocked(frame)
	c.startWriterLocked()
	return true
}

// Close queues a close frame (on an event stream, a close event) and
// closes the socket once it is written (or the write deadline passes).
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
	if c.sse {
		c.pushLocked(wire.CloseEvent(code, reason))
	} else {
		c.pushLocked(wire.CloseFrame(code, reason))
	}
	c.startWriterLocked()
}

// startWriterLocked starts a writer unless one is running. Writers live
// only while there is something to write, so an idle connection holds no
// goroutine, and a slow socket blocks only its own writer.
func (c *conn) startWriterLocked() {
	if !c.writing {
		c.writing = true
		c.spawnWriter()
	}
}

// spawnWriter starts the writer goroutine, which the caller has marked
// (c.writing). With an observer the writer is told when its wait began,
// for Observer.QueueWait; without one it is started exactly as before,
// since an argument to a go statement is captured in a heap closure:
// 8 bytes more per writer, on a path that starts one per message in
// goroutine mode.
func (c *conn) spawnWriter() {
	if c.g.obs == nil {
		go c.writeLoop()
		return
	}
	go c.writeLoopFrom(time.Now().UnixNano())
}

// writeLoop and writeLoopFrom are the writer goroutine's two ways in;
// see spawnWriter.
func (c *conn) writeLoop() { c.writeFrom(0) }

func (c *conn) writeLoopFrom(since int64) { c.writeFrom(since) }

// writeFrom writes everything queued, coalescing the queue into one writev
// per round, until the queue is empty. since (unix nanos) is when the
// first frame it takes may have been queued, for the observer's queue
// wait; 0 when nobody observes.
func (c *conn) writeFrom(since int64) {
	for {
		c.mu.Lock()
		if c.state == stateClosed || c.out == nil || len(c.out.frames) == 0 {
			c.writing = false
			closing := c.state == stateClosing
			if c.epoll() {
				// Epoll mode writes in place while nothing is in
				// flight: the queue may not be needed again.
				c.out = nil
			}
			c.mu.Unlock()
			if closing {
				c.lingerClose()
			}
			return
		}
		q := c.out
		batch := q.frames
		q.frames, q.spare = q.spare[:0], nil
		q.bytes = 0
		c.mu.Unlock()

		now := time.Now()
		if o := c.g.obs; o != nil {
			// Whatever the next batch holds was queued after this one
			// was taken.
			o.QueueWait(time.Duration(now.UnixNano() - since))
			since = now.UnixNano()
		}
		err := c.writeBatch(batch, now.Add(c.g.cfg.WriteTimeout))
		clear(batch) // drop references to frames so they can be collected
		if err != nil {
			c.teardown(err)
			return
		}
		c.s.Wrote(now)
		c.mu.Lock()
		if q.spare == nil {
			q.spare = batch[:0]
		}
		c.mu.Unlock()
		c.s.Drained()
	}
}

// writeBatch writes bufs whole, or fails once deadline passes. In epoll
// mode the descriptor is non-blocking: what the socket does not take now
// waits for it to become writable through the poller, up to deadline —
// WriteTimeout without a socket deadline, which only a net.Conn has. The
// elements of bufs may be resliced.
func (c *conn) writeBatch(bufs [][]byte, deadline time.Time) error {
	if !c.epoll() {
		nc := c.netConn()
		if nc == nil {
			return net.ErrClosed
		}
		_ = nc.SetWriteDeadline(deadline)
		b := net.Buffers(bufs)
		_, err := b.WriteTo(nc)
		return err
	}
	for len(bufs) > 0 {
		c.mu.Lock()
		if c.state == stateClosed {
			c.mu.Unlock()
			return net.ErrClosed
		}
		n, err := writevFD(c.fd, bufs)
		c.mu.Unlock()
		bufs = consume(bufs, n)
		switch {
		case errors.Is(err, syscall.EAGAIN):
			if err := c.g.poll.waitWritable(c, deadline); err != nil {
				return err
			}
		case err != nil:
			return err
		}
	}
	return nil
}

// consume drops the first n bytes of bufs.
func consume(bufs [][]byte, n int) [][]byte {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	if len(bufs) > 0 && n > 0 {
		bufs[0] = bufs[0][n:]
	}
	return bufs
}

// lingerTimeout is how long a closed connection waits for the client's
// close frame before the socket is closed regardless.
const lingerTimeout = 2 * time.Second

// lingerClose runs once the close frame is written. It half-closes the
// socket and keeps reading (and discarding) until the client answers or
// lingerTimeout passes. Closing outright with unread bytes in the socket
// would send a TCP reset, and a reset can make the client drop our close
// frame and never learn the close code.
//
// An event stream lingers the same way: its FIN is what ends the response
// (it has no length), the client closes in turn and the reader's EOF tears
// the connection down at once; the timer only bounds a client that does
// not. Closing outright would save the timer but risk the same reset for
// any stray bytes the client sent.
func (c *conn) lingerClose() {
	if c.epoll() {
		c.mu.Lock()
		if c.state != stateClosed {
			_ = shutdownWrite(c.fd)
		}
		c.mu.Unlock()
	} else if tc, ok := c.netConn().(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	time.AfterFunc(lingerTimeout, func() { c.teardown(nil) })
}

// teardown closes the socket and ends the session at once, so a dead
// connection never receives (or counts as receiving) another message. It
// is idempotent.
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
	c.out = nil
	overflow := c.overflow
	c.mu.Unlock()

	if overflow {
		c.s.Overflowed()
	}
	c.s.Gone() // leaves the hub, wakes a replay waiting for queue room
	if c.epoll() {
		c.g.poll.remove(c) // and closes the descriptor
	} else if nc, ok := c.g.netConns.LoadAndDelete(c); ok {
		_ = nc.(net.Conn).Close()
	}
	c.g.sessions.Release()
	if cause != nil && !errors.Is(cause, io.EOF) && !errors.Is(cause, net.ErrClosed) {
		c.g.log.Debug("disconnected", "conn", c.s.ID(), "user", c.s.User(), "err", cause)
	} else {
		c.g.log.Debug("disconnected", "conn", c.s.ID(), "user", c.s.User())
	}
}

// fail ends the connection after a read-side error. A protocol error is
// answered with its close code and the reader goes on reading — the
// assembler ignores everything from here on — until the client closes
// (see lingerClose); anything else just closes.
func (c *conn) fail(err error) {
	var pe *wire.ProtocolError
	if errors.As(err, &pe) {
		c.s.Close(pe.Code, pe.Reason)
		return
	}
	c.teardown(err)
}

// readLoop is the goroutine-per-connection reader of nc.
func (c *conn) readLoop(nc net.Conn) {
	// Small on purpose: client frames (pongs, acks) are tiny, a larger one
	// is assembled in readState, and this buffer lives as long as the
	// connection (it escapes to the heap through the Read call).
	buf := make([]byte, 512)
	for {
		n, err := nc.Read(buf)
		if n > 0 {
			c.s.Read(time.Now())
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

// ingest feeds what was read to the assembler, which calls back for each
// complete message and control frame. p is only borrowed.
//
// An event stream has nothing to read: after its request a well-behaved
// EventSource sends nothing, and acks travel over HTTP. Whatever arrives
// is dropped unparsed; what matters on that side is EOF or an error,
// which is how a closed tab is noticed.
func (c *conn) ingest(p []byte) error {
	if c.sse {
		return nil
	}
	return c.asm.Feed(p, (*frames)(c))
}

// frames is the connection seen as the assembler's wire.Handler: a named
// type rather than methods on conn, whose Close means the transport's.
// Converting the pointer allocates nothing.
type frames conn

// Message hands a complete data message to the session, which knows what
// it means.
func (f *frames) Message(op byte, p []byte) error { return f.s.HandleData(p, op == wire.OpBinary) }

// Ping is answered with a pong carrying the same bytes (RFC 6455 §5.5.2).
// Each costs a write, so pings count against the client's message rate
// like messages do.
func (f *frames) Ping(p []byte) error {
	if err := f.s.CountPing(); err != nil {
		return err
	}
	(*conn)(f).Write(wire.Frame(wire.OpPong, p))
	return nil
}

// Pong needs nothing: any read already told the session the client lives.
func (f *frames) Pong([]byte) error { return nil }

// Close answers the client's close by echoing its code (RFC 6455 §5.5.1);
// wire.CloseFrame turns the code of an empty close, 1005, which must never
// be sent, into 1000.
func (f *frames) Close(code uint16, _ string) error {
	f.s.Close(code, "")
	return nil
}
