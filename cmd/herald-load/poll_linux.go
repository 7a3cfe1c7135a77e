package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller reads every connection of a worker from one goroutine, woken by
// epoll, so an idle connection costs no goroutine and no buffer: the one
// 64 KiB buffer is shared. Sockets stay *net.TCPConn (writes, Close and the
// runtime's own poller are untouched); reads go through RawConn, which holds
// the runtime's descriptor lock, so a concurrent Close can never let the
// descriptor number be reused under a read.
type poller struct {
	epfd  int
	mu    sync.Mutex
	conns map[int32]*wconn
}

const pollSupported = true

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	return &poller{epfd: epfd, conns: make(map[int32]*wconn)}, nil
}

// add starts watching c. Only plain TCP connections qualify; the caller
// gives anything else a read goroutine.
func (p *poller) add(c *wconn) error {
	tc, ok := c.nc.(*net.TCPConn)
	if !ok {
		return errors.New("not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return fmt.Errorf("syscall conn: %w", err)
	}
	var cerr error
	err = rc.Control(func(fd uintptr) {
		c.fd, c.rc = int32(fd), rc
		p.mu.Lock()
		p.conns[c.fd] = c
		p.mu.Unlock()
		// Level-triggered: the loop reads once per wake-up and comes back
		// for the rest, so one busy socket cannot starve the others.
		cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)})
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		p.mu.Lock()
		delete(p.conns, c.fd)
		p.mu.Unlock()
		c.rc = nil
		return fmt.Errorf("epoll add: %w", err)
	}
	return nil
}

// remove stops watching c; it runs before the socket is closed, so a
// descriptor number reused by a new connection never reaches this one.
func (p *poller) remove(c *wconn) {
	_ = c.rc.Control(func(fd uintptr) {
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
	p.mu.Lock()
	if p.conns[c.fd] == c {
		delete(p.conns, c.fd)
	}
	p.mu.Unlock()
}

// run reads ready sockets until ctx is done, then closes the epoll set.
func (p *poller) run(ctx context.Context) {
	defer unix.Close(p.epfd)
	events := make([]unix.EpollEvent, 1024)
	ready := make([]*wconn, 0, len(events))
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		// The timeout lets the loop notice ctx without a wake-up descriptor.
		n, err := unix.EpollWait(p.epfd, events, 100)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		ready = ready[:0]
		p.mu.Lock()
		for _, ev := range events[:n] {
			if c := p.conns[ev.Fd]; c != nil {
				ready = append(ready, c)
			}
		}
		p.mu.Unlock()
		for _, c := range ready {
			p.onReadable(c, buf)
		}
		clear(ready)
	}
}

func (p *poller) onReadable(c *wconn, buf []byte) {
	n, err := readNonblock(c.rc, buf)
	if n > 0 && !c.feed(buf[:n], time.Now().UnixNano()) {
		return
	}
	switch {
	case errors.Is(err, unix.EAGAIN):
	case err != nil:
		c.finish(err)
	case n == 0:
		c.finish(io.EOF)
	}
}

// readNonblock reads what the socket holds now, without parking.
func readNonblock(rc syscall.RawConn, p []byte) (int, error) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), p)
		return true // never wait in the runtime's poller: epoll says when
	})
	if err != nil {
		return 0, err
	}
	return max(n, 0), rerr
}
