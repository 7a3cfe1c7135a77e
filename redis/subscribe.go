package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/gate"
)

// Reconnection backoff of the reader after a failed attempt: the first
// retry is immediate (go-redis has usually reconnected already), later ones
// wait longer, up to maxBackoff, so that a Redis that is down is not
// hammered.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

// subscription is one handler subscribed on the node. The reader enters it
// for each call so that stop can wait for the call in progress: once stop
// returns the handler is never called again.
type subscription struct {
	h     herald.BrokerHandler
	calls gate.Gate // the call of h in progress
}

// deliver calls the handler with e, which it owns from then on, and leaves
// even if the handler panics.
func (s *subscription) deliver(e envelope) {
	defer s.calls.Leave()
	switch e.kind {
	case kindMessages:
		s.h.HandleMessages(e.msgs)
	case kindBroadcast:
		s.h.HandleBroadcast(e.broadcast)
	case kindControl:
		s.h.HandleControl(e.control)
	}
}

// handlers returns the current subscriptions; the slice must not be
// modified.
func (b *Broker) handlers() []*subscription {
	if p := b.subs.Load(); p != nil {
		return *p
	}
	return nil
}

// Subscribe starts delivering what other nodes publish to h, from the
// node's one Redis subscription, and returns once that subscription is in
// place: at once unless Redis is unreachable, in which case it waits for
// it, bounded by ctx. Calls come from one goroutine per node, in the order
// Redis delivered, so a slow handler delays the node's whole subscription
// (and Redis disconnects a subscriber that falls far enough behind).
// Subscribing one handler twice delivers everything to it twice.
func (b *Broker) Subscribe(ctx context.Context, h herald.BrokerHandler) (stop func(), err error) {
	if h == nil {
		return nil, errors.New("redis: subscribe: nil handler")
	}
	if err := b.check(ctx, "subscribe"); err != nil {
		return nil, err
	}
	if err := b.state.waitUp(ctx, b.done); err != nil {
		return nil, fmt.Errorf("redis: subscribe: waiting for the Redis subscription: %w", err)
	}
	s := &subscription{h: h}
	b.subsMu.Lock()
	if b.subsClosed {
		b.subsMu.Unlock()
		return nil, fmt.Errorf("redis: subscribe: %w", ErrClosed)
	}
	next := append(slices.Clone(b.handlers()), s)
	b.subs.Store(&next)
	b.subsMu.Unlock()

	return func() {
		b.subsMu.Lock()
		if cur := b.handlers(); slices.Contains(cur, s) {
			next := slices.DeleteFunc(slices.Clone(cur), func(o *subscription) bool { return o == s })
			b.subs.Store(&next)
		}
		b.subsMu.Unlock()
		s.calls.Shut()
	}, nil
}

// read is the reader goroutine: it receives from the node's pub/sub
// connection and dispatches to the handlers, until Close. Each connection
// gets a PubSub of its own: when one breaks (or the health check closes
// it) the reader notes the outage, waits a little when Redis failed, and
// opens another, on which it subscribes everything the node needs.
//
// go-redis would reconnect a PubSub by itself and subscribe again to what
// it remembers, but then a confirmation read after the break could belong
// to either connection, and one for a channel the node has since left
// could be taken for that of a new Watch. A PubSub per connection makes
// every confirmation the reader reads answer a command of that connection,
// in order. (go-redis may still reconnect a broken PubSub before the
// reader closes it; that connection is closed unused.)
func (b *Broker) read() {
	defer close(b.readerDone)
	backoff := time.Duration(0)
	for {
		ps, err := b.open()
		if ps == nil {
			return // closing
		}
		if err == nil {
			err = b.receive(ps, &backoff)
		}
		_ = ps.Close()
		if b.isClosing() {
			return
		}
		if err != nil {
			b.lost(err)
			b.pause(&backoff)
		}
	}
}

// receive reads from ps until it fails, returning the error, or is closed
// (by the health check), returning nil.
func (b *Broker) receive(ps *goredis.PubSub, backoff *time.Duration) error {
	for {
		v, err := ps.Receive(context.Background())
		if errors.Is(err, goredis.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		b.traffic.Add(1)
		switch v := v.(type) {
		case *goredis.Subscription:
			if v.Kind == "subscribe" {
				b.confirm(v.Channel)
			}
		case *goredis.Pong:
			// The PONG of the PING open sent after its SUBSCRIBEs:
			// everything the node needed then is subscribed. Watches
			// that failed while Redis was away, after open took its
			// list, are subscribed before the node is told, with
			// another PING.
			if v.Payload != resyncToken {
				break // the health check's
			}
			if err := b.subscribeQueued(ps); err != nil {
				return err
			}
			b.imu.Lock()
			more := len(b.toSubscribe) > 0
			b.imu.Unlock()
			if !more {
				*backoff = 0
				b.subscribed()
				b.kickManager() // lingering interests may be due
			}
		case *goredis.Message:
			b.dispatch(v.Channel, v.Payload)
		}
	}
}

// subscribeQueued sends a SUBSCRIBE for the channels queued while the
// subscription was down, followed by a PING, if there are any.
func (b *Broker) subscribeQueued(ps *goredis.PubSub) error {
	b.imu.Lock()
	subs := b.takeQueued()
	b.imu.Unlock()
	if len(subs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.health)
	defer cancel()
	for c := range slices.Chunk(subs, maxChannelsPerCommand) {
		if err := ps.Subscribe(ctx, c...); err != nil {
			return err
		}
	}
	return ps.Ping(ctx, resyncToken)
}

// open makes a new PubSub, subscribes on it to the broadcast and control
// channels and to every watched user's channel, and sends a PING after
// them (see receive). It returns a nil PubSub once the broker is closing,
// and the PubSub with an error when Redis could not be reached.
func (b *Broker) open() (*goredis.PubSub, error) {
	b.imu.Lock()
	b.psMu.Lock()
	if b.closing {
		b.psMu.Unlock()
		b.imu.Unlock()
		return nil, nil
	}
	ps := b.client.Subscribe(context.Background()) // no channel yet: sends nothing
	b.ps = ps
	b.psMu.Unlock()
	channels := b.watchedChannels()
	b.imu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), b.health)
	defer cancel()
	for c := range slices.Chunk(channels, maxChannelsPerCommand) {
		if err := ps.Subscribe(ctx, c...); err != nil {
			return ps, err
		}
	}
	return ps, ps.Ping(ctx, resyncToken)
}

// pause waits before the next attempt to receive after an error: not at
// all the first time, then longer each time up to maxBackoff, and no more
// once Close has begun.
func (b *Broker) pause(backoff *time.Duration) {
	d := *backoff
	*backoff = min(max(2*d, minBackoff), maxBackoff)
	if d == 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-b.done:
	}
}

func (b *Broker) isClosing() bool {
	b.psMu.Lock()
	defer b.psMu.Unlock()
	return b.closing
}

// lost notes that the subscription is down, logging it when it was up.
func (b *Broker) lost(err error) {
	if b.isClosing() {
		return
	}
	if b.state.lost(err) {
		b.log.Warn("redis: subscription lost; what other nodes publish meanwhile is missed (sessions fetch it from the store)", "err", err)
	}
}

// subscribed notes that the subscription is in place, logging it when it
// was not.
func (b *Broker) subscribed() {
	down, again, changed := b.state.subscribed()
	switch {
	case !changed:
	case again:
		b.log.Info("redis: subscription back", "down_for", down.Round(time.Millisecond))
		b.resynced()
	default:
		b.log.Info("redis: subscribed", "prefix", b.prefix)
	}
}

// resynced tells the handlers that want it (herald.BrokerResync) that the
// subscription is back, so that their node checks what it may have missed.
func (b *Broker) resynced() {
	for _, s := range b.handlers() {
		if rs, ok := s.h.(herald.BrokerResync); ok && s.calls.Enter() {
			rs.HandleResubscribed()
			s.calls.Leave()
		}
	}
}

// dispatch decodes one envelope and hands it to every handler, each its
// own copy. This node's own publications are dropped before decoding.
func (b *Broker) dispatch(channel, payload string) {
	subs := b.handlers()
	if len(subs) == 0 || b.isOwn(payload) {
		return
	}
	for _, s := range subs {
		if !s.calls.Enter() {
			continue
		}
		e, err := decode([]byte(payload)) // a copy of its own for each handler
		if err != nil {
			s.calls.Leave()
			b.unreadable(channel, len(payload), err)
			return
		}
		if e.node == b.node { // an envelope isOwn could not tell (not minimal varints)
			s.calls.Leave()
			return
		}
		s.deliver(e)
	}
}

// isOwn reports whether payload is an envelope this node published: the
// node id follows the version and kind bytes.
func (b *Broker) isOwn(payload string) bool {
	return len(payload) >= 2+len(b.ownHeader) && payload[2:2+len(b.ownHeader)] == b.ownHeader
}

// unreadable logs an envelope that could not be decoded: a node of another
// version during a rolling upgrade, or something else publishing under the
// prefix. The first and every 1000th are logged, without the payload.
func (b *Broker) unreadable(channel string, size int, err error) {
	n := b.badInput.Add(1)
	if n == 1 || n%1000 == 0 {
		b.log.Warn("redis: dropped an envelope it cannot read", "channel", channel, "bytes", size, "err", err, "dropped_total", n)
	}
}

// current returns the PubSub in use, or nil.
func (b *Broker) current() *goredis.PubSub {
	b.psMu.Lock()
	defer b.psMu.Unlock()
	return b.ps
}

// watch is the health goroutine. Every HealthInterval it looks whether the
// subscription received anything (a message, a confirmation, a pong); if
// not, it pings it, and if the ping is still unanswered an interval later
// it closes the PubSub, which makes the reader open a new one: liveness by
// a ping actually sent, not by how long the line was quiet. It also pings
// Redis through the publishing pool while publishing is failing, so that
// Ready recovers on an idle node too.
func (b *Broker) watch() {
	defer close(b.healthDone)
	t := time.NewTicker(b.health)
	defer t.Stop()
	var seen uint64
	pinged := false
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
		}
		switch n := b.traffic.Load(); {
		case n != seen:
			seen, pinged = n, false
		case !b.state.isUp():
			pinged = false // the reader is reconnecting
		case pinged:
			b.lost(fmt.Errorf("no reply to a ping within %v", b.health))
			if ps := b.current(); ps != nil {
				_ = ps.Close()
			}
			pinged = false
		default:
			if ps := b.current(); ps != nil {
				ctx, cancel := context.WithTimeout(context.Background(), b.health)
				_ = ps.Ping(ctx) // a failed write reconnects; the reader notes it
				cancel()
				pinged = true
			}
		}
		if b.state.writeFailing() {
			ctx, cancel := context.WithTimeout(context.Background(), b.health)
			err := b.client.Ping(ctx).Err()
			cancel()
			if err == nil {
				b.wrote(nil)
			}
		}
	}
}
