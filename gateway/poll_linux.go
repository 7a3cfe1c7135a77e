package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// poller watches idle connections' sockets with epoll so that they cost no
// goroutine. Each socket is armed one-shot: when it becomes readable one
// worker owns it until the worker re-arms it, so reads of one connection are
// never concurrent and no lock guards the reader state.
//
// A second epoll set carries the write side: a writer whose socket is full
// arms its descriptor there (EPOLLOUT, one-shot) and parks until the
// write loop wakes it or its deadline passes. Two sets, because one
// registration per descriptor and set is all epoll allows, and mixing the
// writer's interest into the reader's one-shot registration would re-arm
// reads a worker still owns.
type poller struct {
	g    *Gateway
	epfd int
	mu   sync.RWMutex
	// fds maps a descriptor number to its conn. Descriptors are small,
	// dense integers (the kernel hands out the lowest free one), so a
	// slice indexed by them costs 16 bytes per descriptor where a map
	// costs about 30 per entry.
	fds  []pollSlot
	gen  uint32 // the last generation handed out, guarded by mu
	work chan armed

	wepfd   int                     // the write-readiness set
	wmu     sync.Mutex              // guards waiters
	waiters map[int32]chan struct{} // descriptor → its parked writer, only while one waits
}

func newPoller(g *Gateway) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wepfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	return &poller{g: g, epfd: epfd, work: make(chan armed, 4096), wepfd: wepfd, waiters: make(map[int32]chan struct{})}, nil
}

const armEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// armed is a conn whose event fired and the generation the event carried,
// which the worker re-arms it with.
type armed struct {
	c   *conn
	gen uint32
}

// pollSlot is the conn registered under a descriptor number and the
// generation of that registration, which its epoll events carry (in the
// event's spare data word): an event epoll_wait returned just before its
// conn was removed may be looked up after the number went to a new
// connection, and must not hand that one to a second reader while its
// own event is armed. A generation that does not match drops the event.
type pollSlot struct {
	c   *conn
	gen uint32
}

// takeFD keeps only the descriptor of nc when the epoll loop can serve it
// (a plain TCP socket, epoll in use): it duplicates it (close-on-exec,
// non-blocking like the original, whose open file it shares) and closes
// nc, whose netFD, addresses, poll descriptor and timers would otherwise
// live as long as the connection for nothing. It reports false, leaving
// nc untouched, for anything else.
func (g *Gateway) takeFD(nc net.Conn) (int32, bool) {
	tc, isTCP := nc.(*net.TCPConn)
	if !isTCP || g.poll == nil {
		return noFD, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return noFD, false
	}
	fd, dupErr := -1, error(nil)
	if err := rc.Control(func(f uintptr) {
		fd, dupErr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || dupErr != nil || fd < 0 || fd > math.MaxInt32 {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
		return noFD, false
	}
	// Closing the original only drops its number and the runtime's
	// registration: the socket lives on in the duplicate.
	_ = nc.Close()
	return int32(fd), true
}

// add puts c's descriptor in the epoll set, unless c is already closed
// (then finish has closed or is closing the descriptor, and the number may
// be another socket's).
func (p *poller) add(c *conn) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed {
		return nil
	}
	p.mu.Lock()
	gen := p.set(c.fd, c)
	p.mu.Unlock()
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(c.fd), &unix.EpollEvent{Events: armEvents, Fd: c.fd, Pad: int32(gen)}); err != nil {
		p.mu.Lock()
		p.unset(c)
		p.mu.Unlock()
		return fmt.Errorf("epoll add: %w", err)
	}
	return nil
}

// rearm re-enables the one-shot readiness event after a worker is done,
// under the generation the event carried (the conn's registration: a
// stale event never reaches a worker). If that fails the connection would
// never be read again — deaf to pongs and close frames — so it is torn
// down rather than left half alive.
func (p *poller) rearm(c *conn, gen uint32) {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return
	}
	err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(c.fd), &unix.EpollEvent{Events: armEvents, Fd: c.fd, Pad: int32(gen)})
	c.mu.Unlock()
	if err != nil {
		p.g.log.Warn("epoll re-arm failed; closing the connection", "conn", c.s.ID(), "err", err)
		c.teardown(fmt.Errorf("epoll re-arm: %w", err))
	}
}

// remove takes c, already marked closed, out of both epoll sets, wakes its
// parked writer if any (to find it closed), and closes its descriptor —
// in that order, so that a reused descriptor number can never deliver
// events to the wrong conn.
func (p *poller) remove(c *conn) {
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(c.fd), nil)
	_ = unix.EpollCtl(p.wepfd, unix.EPOLL_CTL_DEL, int(c.fd), nil)
	p.mu.Lock()
	p.unset(c)
	p.mu.Unlock()
	p.wake(c.fd)
	_ = unix.Close(int(c.fd))
}

// waitWritable parks c's writer until its socket is writable, c is torn
// down, or deadline passes (an error wrapping os.ErrDeadlineExceeded). A
// wake-up may be spurious (a stale event for a reused number): the writer
// just tries again.
func (p *poller) waitWritable(c *conn, deadline time.Time) error {
	ch := make(chan struct{})
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	fd := c.fd
	// Parked before armed, so that no event can come before its waiter.
	p.wmu.Lock()
	p.waiters[fd] = ch
	p.wmu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLONESHOT, Fd: fd}
	err := unix.EpollCtl(p.wepfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
	if errors.Is(err, unix.ENOENT) {
		err = unix.EpollCtl(p.wepfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}
	c.mu.Unlock()
	if err != nil {
		p.unwait(fd, ch)
		return fmt.Errorf("epoll arm for writing: %w", err)
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		p.unwait(fd, ch)
		return fmt.Errorf("write: %w", os.ErrDeadlineExceeded)
	}
}

// wake releases the writer parked on fd, if any.
func (p *poller) wake(fd int32) {
	p.wmu.Lock()
	ch, ok := p.waiters[fd]
	delete(p.waiters, fd)
	p.wmu.Unlock()
	if ok {
		close(ch)
	}
}

// unwait forgets ch, parked on fd, if nobody woke it.
func (p *poller) unwait(fd int32, ch chan struct{}) {
	p.wmu.Lock()
	if p.waiters[fd] == ch {
		delete(p.waiters, fd)
	}
	p.wmu.Unlock()
}

// runWrites wakes parked writers whose sockets became writable (or failed:
// EPOLLERR and EPOLLHUP are always reported, and the write then says why).
func (p *poller) runWrites(ctx context.Context) {
	events := make([]unix.EpollEvent, 256)
	for ctx.Err() == nil {
		n, err := unix.EpollWait(p.wepfd, events, 200)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			p.g.log.Error("epoll_wait (writes)", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for i := range n {
			p.wake(events[i].Fd)
		}
	}
}

// set makes c the conn of descriptor fd under a new generation, which it
// returns, growing the table by doubling. Called with p.mu held.
func (p *poller) set(fd int32, c *conn) uint32 {
	if int(fd) >= len(p.fds) {
		p.fds = append(p.fds, make([]pollSlot, max(int(fd)+1-len(p.fds), len(p.fds)))...)
	}
	p.gen++
	p.fds[fd] = pollSlot{c: c, gen: p.gen}
	return p.gen
}

// unset clears c's entry unless its descriptor number already belongs to
// another conn. Called with p.mu held.
func (p *poller) unset(c *conn) {
	if int(c.fd) < len(p.fds) && p.fds[c.fd].c == c {
		p.fds[c.fd] = pollSlot{}
	}
}

// lookup returns the conn an event ev is for, with its generation, or a
// nil conn: none registered under its descriptor, or one registered later
// than the event (a stale event of a closed conn whose number was
// reused). Called with p.mu held for reading.
func (p *poller) lookup(ev *unix.EpollEvent) armed {
	fd := ev.Fd
	if fd < 0 || int(fd) >= len(p.fds) {
		return armed{}
	}
	if s := p.fds[fd]; s.c != nil && s.gen == uint32(ev.Pad) {
		return armed{s.c, s.gen}
	}
	return armed{}
}

func (p *poller) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range workers() {
		wg.Go(func() {
			for a := range p.work {
				p.onReadable(a.c, a.gen)
			}
		})
	}
	wg.Go(func() { p.runWrites(ctx) })
	events := make([]unix.EpollEvent, 256)
	ready := make([]armed, 0, len(events))
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
			if a := p.lookup(&events[i]); a.c != nil {
				ready = append(ready, a)
			}
		}
		p.mu.RUnlock()
		for _, a := range ready {
			p.work <- a
		}
	}
	close(p.work)
	wg.Wait()
	_ = unix.Close(p.epfd)
	_ = unix.Close(p.wepfd)
}

// onReadable drains what the socket holds without ever blocking, feeding it
// to the frame parser, then re-arms the socket. The read buffer is borrowed
// for this call only; an incomplete frame's tail is copied into the conn.
func (p *poller) onReadable(c *conn, gen uint32) {
	bp := p.g.bufs.Get().(*[]byte)
	defer p.g.bufs.Put(bp)
	buf := *bp
	for {
		n, open, err := c.readFD(buf)
		if !open {
			return // torn down meanwhile: the descriptor is not ours any more
		}
		if n > 0 {
			c.s.Read(time.Now())
			if perr := c.ingest(buf[:n]); perr != nil {
				c.fail(perr)
			}
		}
		switch {
		case errors.Is(err, unix.EAGAIN):
			p.rearm(c, gen)
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
			p.rearm(c, gen)
			return
		}
	}
}

// readFD reads what c's socket holds now, under c.mu so that the
// descriptor cannot be closed (and its number reused) during the read;
// open is false if c was already torn down. The lock is held for one
// non-blocking system call, as Write holds it for its in-place write.
func (c *conn) readFD(p []byte) (n int, open bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed {
		return 0, false, nil
	}
	for {
		n, err = unix.Read(int(c.fd), p)
		if err != unix.EINTR {
			return max(n, 0), true, err
		}
	}
}

// writeFD writes what the socket takes now, straight to its descriptor.
// The caller must hold c.mu with c.state not closed: the descriptor is
// closed only after the state is (conn's invariant), so the number cannot
// have been closed and reused under us.
func writeFD(fd int32, p []byte) (int, error) {
	for {
		n, err := unix.Write(int(fd), p)
		if err == unix.EINTR {
			continue
		}
		return max(n, 0), err
	}
}

// maxIov is the most buffers one writev takes (IOV_MAX on Linux).
const maxIov = 1024

// writevFD is writeFD for several buffers, under the same rule.
func writevFD(fd int32, bufs [][]byte) (int, error) {
	if len(bufs) > maxIov {
		bufs = bufs[:maxIov]
	}
	for {
		n, err := unix.Writev(int(fd), bufs)
		if err == unix.EINTR {
			continue
		}
		return max(n, 0), err
	}
}

// shutdownWrite half-closes the socket, under the same rule as writeFD.
func shutdownWrite(fd int32) error { return unix.Shutdown(int(fd), unix.SHUT_WR) }
