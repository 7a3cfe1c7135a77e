package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/gate"
)

// ErrBrokerClosed is returned by Publish, Broadcast, Control and Subscribe of
// a Broker node after its Close. It carries herald.EUnavailable, so an API
// handler reports 503 (shutting down).
var ErrBrokerClosed error = herald.Errorf(herald.EUnavailable, "broker node is closed")

// Bus is an in-process message bus: several Herald nodes in one process
// (tests, a single binary serving several listeners) each take a Broker
// from it with Node and reach each other through it.
//
// It behaves as a network broker would, minus the network: every node
// receives its own deep copy of what another publishes, so no two nodes
// share mutable memory, and times lose their monotonic clock reading as
// they would on the wire. Unlike a network broker it is reliable and
// synchronous: Publish, Broadcast and Control deliver to every other node's
// handlers in the caller's goroutine before they return, so nothing is
// lost, each publisher's order is kept, and a test needs no waiting.
//
// A Bus needs no closing; a zero Bus is ready to use.
type Bus struct {
	// mu serialises changes to subs; Publish never takes it.
	mu sync.Mutex
	// subs is every live subscription on the bus. It is copied on write
	// (Subscribe, stop, Close are rare) so that a Publish reads it with one
	// atomic load and takes no lock, which keeps publishers on different
	// nodes from contending and makes a Publish with no peers nearly free.
	subs atomic.Pointer[[]*subscription]
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{} }

// Node returns a new node's handle on the bus.
func (b *Bus) Node() *Broker { return &Broker{bus: b} }

// snapshot returns the current subscriptions. The slice must not be
// modified.
func (b *Bus) snapshot() []*subscription {
	if p := b.subs.Load(); p != nil {
		return *p
	}
	return nil
}

// update publishes a new subscription list: the current subscriptions keep
// accepts, then add unless it is nil. The old list is left untouched for
// the Publishes still reading it. It returns the subscriptions keep
// rejected. The caller holds b.mu.
func (b *Bus) update(add *subscription, keep func(*subscription) bool) (dropped []*subscription) {
	old := b.snapshot()
	next := make([]*subscription, 0, len(old)+1)
	for _, s := range old {
		if keep(s) {
			next = append(next, s)
		} else {
			dropped = append(dropped, s)
		}
	}
	if add != nil {
		next = append(next, add)
	}
	b.subs.Store(&next)
	return dropped
}

// Broker is one node's handle on a Bus; it implements herald.Broker. It is
// safe for concurrent use, and a handler may call Publish, Broadcast or
// Control of any node (its own included) from inside a call, since no lock
// is held while handlers run.
type Broker struct {
	bus    *Bus
	closed atomic.Bool // set under bus.mu, so no Subscribe slips in after Close
}

var _ herald.Broker = (*Broker)(nil)

// subscription is one handler subscribed on one node. Deliveries enter and
// leave it so that stop can wait for the calls in progress: once stop
// returns the handler is never called again.
type subscription struct {
	node  *Broker
	h     herald.BrokerHandler
	calls gate.Gate // the calls of h in progress
}

// The handle methods call h for a delivery that entered, and leave even
// when h panics or exits its goroutine (t.Fatal in a test's handler, which
// runs in the publisher's goroutine): otherwise stop would wait forever.

func (s *subscription) handleMessages(msgs []*herald.Message) {
	defer s.calls.Leave()
	s.h.HandleMessages(msgs)
}

func (s *subscription) handleBroadcast(m *herald.Message) {
	defer s.calls.Leave()
	s.h.HandleBroadcast(m)
}

func (s *subscription) handleControl(c herald.Control) {
	defer s.calls.Leave()
	s.h.HandleControl(c)
}

// check returns the error an operation named op of b must fail with before
// sending anything: b closed, or ctx done.
func (b *Broker) check(ctx context.Context, op string) error {
	if b.closed.Load() {
		return fmt.Errorf("memory: broker %s: %w", op, ErrBrokerClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: broker %s: %w", op, err)
	}
	return nil
}

// Publish delivers copies of msgs to the handlers subscribed on every other
// node of the bus, one HandleMessages call per handler, before it returns.
func (b *Broker) Publish(ctx context.Context, msgs []*herald.Message) error {
	if err := b.check(ctx, "publish"); err != nil {
		return err
	}
	if err := herald.CheckCommitted(msgs); err != nil {
		return fmt.Errorf("memory: broker publish: %w", err)
	}
	if len(msgs) == 0 {
		return nil
	}
	// Counted once for every copy: the payloads of one copy share one
	// allocation.
	size := 0
	for _, m := range msgs {
		size += len(m.Data)
	}
	for _, s := range b.bus.snapshot() {
		if s.node == b || !s.calls.Enter() {
			continue
		}
		s.handleMessages(copyMessages(msgs, size))
	}
	return nil
}

// Broadcast delivers a copy of m to the handlers subscribed on every other
// node of the bus before it returns.
func (b *Broker) Broadcast(ctx context.Context, m *herald.Message) error {
	if err := b.check(ctx, "broadcast"); err != nil {
		return err
	}
	if m == nil {
		return errors.New("memory: broker broadcast: nil message")
	}
	for _, s := range b.bus.snapshot() {
		if s.node == b || !s.calls.Enter() {
			continue
		}
		c := copyMessage(m, nil)
		s.handleBroadcast(&c)
	}
	return nil
}

// Control delivers a copy of c to the handlers subscribed on every other node
// of the bus before it returns.
func (b *Broker) Control(ctx context.Context, c herald.Control) error {
	if err := b.check(ctx, "control"); err != nil {
		return err
	}
	if err := herald.CheckControl(c); err != nil {
		return fmt.Errorf("memory: broker control: %w", err)
	}
	for _, s := range b.bus.snapshot() {
		if s.node == b || !s.calls.Enter() {
			continue
		}
		cc := c
		cc.Data = cloneBytes(c.Data)
		s.handleControl(cc)
	}
	return nil
}

// Subscribe adds h to the bus; a Publish of another node that starts after
// Subscribe returns calls it. Subscribing one handler twice delivers
// everything to it twice.
func (b *Broker) Subscribe(ctx context.Context, h herald.BrokerHandler) (stop func(), err error) {
	if h == nil {
		return nil, errors.New("memory: broker subscribe: nil handler")
	}
	if err := b.check(ctx, "subscribe"); err != nil {
		return nil, err
	}
	s := &subscription{node: b, h: h}
	bus := b.bus
	bus.mu.Lock()
	if b.closed.Load() { // closed since check: Close must not miss s
		bus.mu.Unlock()
		return nil, fmt.Errorf("memory: broker subscribe: %w", ErrBrokerClosed)
	}
	bus.update(s, func(*subscription) bool { return true })
	bus.mu.Unlock()

	return func() {
		bus.mu.Lock()
		bus.update(nil, func(o *subscription) bool { return o != s })
		bus.mu.Unlock()
		// Outside bus.mu: a call in progress may subscribe or stop
		// another handler.
		s.calls.Shut()
	}, nil
}

// Close unsubscribes every handler of the node, waiting for calls in
// progress, and makes later calls fail with ErrBrokerClosed. It is
// idempotent.
func (b *Broker) Close() error {
	bus := b.bus
	bus.mu.Lock()
	if b.closed.Swap(true) {
		bus.mu.Unlock()
		return nil
	}
	dropped := bus.update(nil, func(s *subscription) bool { return s.node != b })
	bus.mu.Unlock()
	for _, s := range dropped {
		s.calls.Shut()
	}
	return nil
}

// copyMessages returns a deep copy of msgs, whose payloads total size bytes.
// It makes three allocations whatever the number of messages: the
// pointers, the messages and one buffer holding every payload. Each Data is
// capped at its own length, so a receiver appending to one cannot overwrite
// the next.
func copyMessages(msgs []*herald.Message, size int) []*herald.Message {
	vals := make([]herald.Message, len(msgs))
	out := make([]*herald.Message, len(msgs))
	var buf []byte
	if size > 0 {
		buf = make([]byte, 0, size)
	}
	for i, m := range msgs {
		vals[i] = copyMessage(m, &buf)
		out[i] = &vals[i]
	}
	return out
}

// copyMessage returns a copy of *m sharing no memory with it. With buf, the
// payload is carved from *buf (which must have room for it); without, it is
// allocated. The time loses its monotonic reading, as it would when encoded
// for a network: code that compares times with == rather than Equal fails
// here as it would in production.
func copyMessage(m *herald.Message, buf *[]byte) herald.Message {
	c := *m
	c.Time = m.Time.Round(0)
	switch {
	case len(m.Data) == 0:
		c.Data = cloneBytes(m.Data) // nil or empty, allocating nothing
	case buf == nil:
		c.Data = cloneBytes(m.Data)
	default:
		start := len(*buf)
		*buf = append(*buf, m.Data...)
		c.Data = (*buf)[start:len(*buf):len(*buf)]
	}
	return c
}

// cloneBytes copies p, keeping nil as nil and empty as empty.
func cloneBytes(p []byte) []byte {
	if p == nil {
		return nil
	}
	if len(p) == 0 {
		return []byte{}
	}
	return append(make([]byte, 0, len(p)), p...)
}
