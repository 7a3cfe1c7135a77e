// Package gate counts the calls in progress into something that can be
// shut, so that shutting it can wait for them: a broker subscription's
// handler, which must never be called once its stop has returned (the
// node tears down what the handler uses right after). The in-process bus
// and the Redis and NATS brokers share it.
package gate

import "sync"

// Gate lets calls through until it is closed. Each call that Enter lets
// through must Leave; Wait, after Close, returns once the last of them
// has. The zero Gate is open and ready to use; it must not be copied.
type Gate struct {
	mu     sync.Mutex
	idle   sync.Cond // signalled when active drops to 0 after Close
	active int       // calls let through and not yet left
	closed bool
}

// Enter reports whether a call may go through, and if so counts it in
// progress: the caller must then call Leave (deferred, so that a call
// that panics or exits its goroutine still leaves).
func (g *Gate) Enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.active++
	return true
}

// Leave ends a call Enter let through.
func (g *Gate) Leave() {
	g.mu.Lock()
	g.active--
	if g.active == 0 && g.closed {
		g.idle.Broadcast()
	}
	g.mu.Unlock()
}

// Close lets no more calls through. It is idempotent.
func (g *Gate) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// Closed reports whether Close was called.
func (g *Gate) Closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// Wait returns once no call is in progress. After Close, none can start
// again, so it is over for good; it must not be called from inside a call.
func (g *Gate) Wait() {
	g.mu.Lock()
	if g.idle.L == nil {
		g.idle.L = &g.mu
	}
	for g.active > 0 {
		g.idle.Wait()
	}
	g.mu.Unlock()
}

// Shut is Close, then Wait.
func (g *Gate) Shut() {
	g.Close()
	g.Wait()
}
