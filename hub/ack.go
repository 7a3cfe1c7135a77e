package hub

import (
	"context"
	"sync"

	"github.com/herald-gw/herald"
)

// ackWaiters lets an API call wait until a client acknowledged a stream
// offset: a delivery receipt, not just "queued".
type ackWaiters struct {
	mu      sync.Mutex
	waiting map[herald.UserID][]*ackWaiter
}

type ackWaiter struct {
	offset uint64
	done   chan struct{}
}

// NotifyAck wakes the waiters of user whose offset is now acknowledged.
func (h *Hub) NotifyAck(u herald.UserID, offset uint64) {
	a := &h.acks
	a.mu.Lock()
	defer a.mu.Unlock()
	ws := a.waiting[u]
	kept := ws[:0]
	for _, w := range ws {
		if w.offset <= offset {
			close(w.done)
		} else {
			kept = append(kept, w)
		}
	}
	if len(kept) == 0 {
		delete(a.waiting, u)
	} else {
		a.waiting[u] = kept
	}
}

// WaitAck waits until at least one connection of user acknowledged offset
// or ctx is done, then reports how many connections the user has and how
// many of them have acknowledged it.
func (h *Hub) WaitAck(ctx context.Context, u herald.UserID, offset uint64) (conns, acked int) {
	w := &ackWaiter{offset: offset, done: make(chan struct{})}
	a := &h.acks
	a.mu.Lock()
	if a.waiting == nil {
		a.waiting = make(map[herald.UserID][]*ackWaiter)
	}
	a.waiting[u] = append(a.waiting[u], w)
	a.mu.Unlock()

	// An ack that came before we registered would never wake us: look now.
	if _, n := h.acked(u, offset); n == 0 {
		select {
		case <-w.done:
		case <-ctx.Done():
		}
	}
	a.mu.Lock()
	ws := a.waiting[u]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(a.waiting, u)
	} else {
		a.waiting[u] = ws
	}
	a.mu.Unlock()
	return h.acked(u, offset)
}

func (h *Hub) acked(u herald.UserID, offset uint64) (conns, acked int) {
	us := h.userShard(u)
	us.mu.RLock()
	defer us.mu.RUnlock()
	us.forEach(u, func(c Conn) {
		conns++
		if c.Acked() >= offset {
			acked++
		}
	})
	return conns, acked
}
