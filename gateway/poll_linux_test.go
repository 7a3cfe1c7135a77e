package gateway

import (
	"testing"

	"golang.org/x/sys/unix"
)

// An event epoll_wait returned for a connection that is then removed, its
// descriptor closed and the number handed to a new connection, must not
// reach the new one: its own one-shot event is armed, and a second reader
// would race the first on its frame parser. The race itself is a window
// of a few instructions between epoll_wait and the lookup, which no test
// can hit on purpose, so this drives the poller's table directly.
func TestStaleEventIsDropped(t *testing.T) {
	p := &poller{}
	old := &conn{fd: 7}
	stale := unix.EpollEvent{Events: unix.EPOLLIN, Fd: 7, Pad: int32(p.set(7, old))}
	if got := p.lookup(&stale).c; got != old {
		t.Fatalf("lookup of a live registration = %p, want %p", got, old)
	}

	p.unset(old) // remove: the number is free and the kernel reuses it
	if got := p.lookup(&stale).c; got != nil {
		t.Fatalf("lookup after remove = %p, want nil", got)
	}
	reused := &conn{fd: 7}
	fresh := unix.EpollEvent{Events: unix.EPOLLIN, Fd: 7, Pad: int32(p.set(7, reused))}
	if got := p.lookup(&stale).c; got != nil {
		t.Fatalf("the old connection's event reached the new connection on the same descriptor (%p)", got)
	}
	if got := p.lookup(&fresh); got.c != reused || got.gen != uint32(fresh.Pad) {
		t.Fatalf("lookup of the new registration = %p under %d, want %p under %d (what the worker re-arms with)", got.c, got.gen, reused, fresh.Pad)
	}
	p.unset(old) // a late unset of the old conn leaves the new one alone
	if got := p.lookup(&fresh).c; got != reused {
		t.Fatal("unset of the old conn removed the new one")
	}
}
