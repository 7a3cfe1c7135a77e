package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller watches idle connections' sockets with epoll so that they cost no
// goroutine. Each socket is armed one-shot: when it becomes readable one
// worker owns it until the worker re-arms it, so reads of one connection are
// never concurrent and no lock guards the reader state.
type poller struct {
	g    *Gateway
	epfd int
	mu   sync.RWMutex
	// fds maps a descriptor number to its conn. Descriptors are small,
	// dense integers (the kernel hands out the lowest free one), so a
	// slice indexed by them costs 8 bytes per descriptor where a map
	// costs about 30 per entry.
	fds  []*conn
	work chan *conn
}

func newPoller(g *Gateway) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	g.rawOps.New = newRawOp
	return &poller{g: g, epfd: epfd, work: make(chan *conn, 4096)}, nil
}

const armEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// add puts c's socket (c.rc, set by Accept) in the epoll set.
func (p *poller) add(c *conn) error {
	var cerr error
	err := c.rc.Control(func(fd uintptr) {
		p.mu.Lock()
		p.set(c.fd, c) // c.fd was read from this same descriptor at accept
		p.mu.Unlock()
		cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: armEvents, Fd: int32(fd)})
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		p.mu.Lock()
		p.unset(c)
		p.mu.Unlock()
		return fmt.Errorf("epoll add: %w", err)
	}
	return nil
}

// rearm re-enables the one-shot readiness event after a worker is done.
// If that fails the connection would never be read again — deaf to pongs
// and close frames — so it is torn down rather than left half alive.
func (p *poller) rearm(c *conn) {
	var ctlErr error
	err := c.rc.Control(func(fd uintptr) {
		ctlErr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &unix.EpollEvent{Events: armEvents, Fd: int32(fd)})
	})
	switch {
	case err != nil: // the socket was closed meanwhile
		c.teardown(err)
	case ctlErr != nil:
		p.g.log.Warn("epoll re-arm failed; closing the connection", "conn", c.s.ID(), "err", ctlErr)
		c.teardown(fmt.Errorf("epoll re-arm: %w", ctlErr))
	}
}

// remove takes c out of the epoll set before its descriptor is closed, so a
// reused descriptor number can never deliver events to the wrong conn.
func (p *poller) remove(c *conn) {
	_ = c.rc.Control(func(fd uintptr) {
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
	p.mu.Lock()
	p.unset(c)
	p.mu.Unlock()
}

// set makes c the conn of descriptor fd, growing the table by doubling.
// Called with p.mu held.
func (p *poller) set(fd int32, c *conn) {
	if int(fd) >= len(p.fds) {
		p.fds = append(p.fds, make([]*conn, max(int(fd)+1-len(p.fds), len(p.fds)))...)
	}
	p.fds[fd] = c
}

// unset clears c's entry unless its descriptor number already belongs to
// another conn. Called with p.mu held.
func (p *poller) unset(c *conn) {
	if int(c.fd) < len(p.fds) && p.fds[c.fd] == c {
		p.fds[c.fd] = nil
	}
}

// lookup returns the conn of descriptor fd, or nil. Called with p.mu held
// for reading.
func (p *poller) lookup(fd int32) *conn {
	if fd < 0 || int(fd) >= len(p.fds) {
		return nil
	}
	return p.fds[fd]
}

func (p *poller) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range workers() {
		wg.Go(func() {
			for c := range p.work {
				p.onReadable(c)
			}
		})
	}
	events := make([]unix.EpollEvent, 256)
	ready := make([]*conn, 0, len(events))
	for ctx.Err() == nil {
		// A finite timeout lets the loop notice ctx without an extra wake-up
		// descriptor; 200 ms of idle wake-ups cost nothing measurable.
		n, err := unix.EpollWait(p.epfd, events, 200)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			p.g.log.Error("epoll_wait", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		// Look up under the lock, hand over outside it: a worker tearing a
		// connection down needs the write lock while the queue may be full.
		ready = ready[:0]
		p.mu.RLock()
		for i := range n {
			if c := p.lookup(events[i].Fd); c != nil {
				ready = append(ready, c)
			}
		}
		p.mu.RUnlock()
		for _, c := range ready {
			p.work <- c
		}
	}
	close(p.work)
	wg.Wait()
	_ = unix.Close(p.epfd)
}

// onReadable drains what the socket holds without ever blocking, feeding it
// to the frame parser, then re-arms the socket. The read buffer is borrowed
// for this call only; an incomplete frame's tail is copied into the conn.
func (p *poller) onReadable(c *conn) {
	bp := p.g.bufs.Get().(*[]byte)
	defer p.g.bufs.Put(bp)
	buf := *bp
	for {
		n, err := p.g.readNonblock(c.rc, buf)
		if n > 0 {
			c.s.Read(time.Now())
			if perr := c.ingest(buf[:n]); perr != nil {
				c.fail(perr)
			}
		}
		switch {
		case errors.Is(err, unix.EAGAIN):
			p.rearm(c)
			return
		case err != nil:
			c.teardown(err)
			return
		case n == 0: // orderly shutdown by the peer
			c.teardown(nil)
			return
		case n < len(buf):
			// Drained for now; if more arrived meanwhile the level-triggered
			// re-arm fires again at once.
			p.rearm(c)
			return
		}
	}
}

// rawOp is one non-blocking read through syscall.RawConn. The
// RawConn callbacks take a func(uintptr) bool; a closure per call would
// allocate (the closure and every variable it captures), so the func is
// bound once per pooled rawOp and reused: no allocation per read.
type rawOp struct {
	p    []byte
	n    int
	err  error
	read func(fd uintptr) bool
}

func newRawOp() any {
	o := &rawOp{}
	o.read = func(fd uintptr) bool {
		o.n, o.err = unix.Read(int(fd), o.p)
		return true // never park: epoll tells us when to come back
	}
	return o
}

// readNonblock reads what is available now. Going through RawConn keeps
// the runtime's descriptor lock, so a concurrent Close cannot let the
// number be reused under us.
func (g *Gateway) readNonblock(rc syscall.RawConn, p []byte) (int, error) {
	o := g.rawOps.Get().(*rawOp)
	o.p = p
	err := rc.Read(o.read)
	n, opErr := o.n, o.err
	o.p, o.err = nil, nil
	g.rawOps.Put(o)
	if err != nil {
		return 0, err
	}
	return max(n, 0), opErr
}

// writeFD writes what the socket takes now, straight to its descriptor.
// The caller must hold c.mu with c.state open: every path that closes the
// socket first marks the conn closed under c.mu (teardown, queueLocked's
// error path), so the number cannot have been closed and reused under us.
// Skipping RawConn here matters on the broadcast path, where it costs a
// descriptor lock and a poll-descriptor reset per write, each a cache miss
// on per-connection state that the write itself does not need.
func writeFD(fd int32, p []byte) (int, error) {
	for {
		n, err := unix.Write(int(fd), p)
		if err == unix.EINTR {
			continue
		}
		return max(n, 0), err
	}
}
