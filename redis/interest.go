package redis

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/herald-gw/herald"
)

// Per-user interest (herald.BrokerInterest): the node subscribes to the
// channel of each user it holds a connection of, and to no other user's.
//
// Three goroutines share the work. Watch and Unwatch only count, under
// imu, and never touch the network: Watch queues the channel of a user new
// to the node and waits for Redis to confirm it. The manager (manage)
// sends what is queued as SUBSCRIBE commands, batched, and UNSUBSCRIBEs
// the channels whose last connection left more than Options.Linger ago.
// The reader (read, in subscribe.go) receives Redis's confirmations and
// wakes the Watches waiting for them; when the pub/sub connection is
// replaced it subscribes every channel of the node again on the new one.

// DefaultLinger is how long a node stays subscribed to a user's channel
// after the user's last connection on it closed, when Options.Linger is
// not set: long enough for a reloading tab to come back without an
// UNSUBSCRIBE and a SUBSCRIBE, short enough that a node soon stops
// receiving what it no longer needs.
const DefaultLinger = 5 * time.Second

// maxChannelsPerCommand bounds the channels of one SUBSCRIBE or
// UNSUBSCRIBE, so that a node holding many users (subscribing them all
// again after a reconnection) sends commands of bounded size.
const maxChannelsPerCommand = 1024

// interest is a user channel the node is subscribed to, or about to be.
// Its fields are guarded by Broker.imu.
type interest struct {
	// conns counts the user's connections on the node: Watches minus
	// Unwatches.
	conns int
	// ready is closed, and confirmed set, once Redis has confirmed a
	// subscription to the channel. A Watch of a confirmed interest
	// returns at once.
	ready     chan struct{}
	confirmed bool
	// pending counts the SUBSCRIBEs of the channel sent on the current
	// pub/sub connection whose confirmation has not arrived. An interest
	// is only dropped when none is pending, so that a confirmation still
	// on its way is never taken for that of a later Watch of the user,
	// sent after the UNSUBSCRIBE.
	pending int
	// queued says the channel waits in Broker.toSubscribe for the
	// manager.
	queued bool
	// idleSince is when conns fell to 0 (the interest is then in
	// Broker.idle).
	idleSince time.Time
}

var _ herald.BrokerInterest = (*Broker)(nil)

// Watch adds one connection of user on this node. The first one queues a
// SUBSCRIBE to the user's channel, and Watch returns once Redis has
// confirmed it: from then on, whatever another node publishes for the
// user reaches this node. A user the node already watches costs no round
// trip. Watch counts the connection whatever it returns (unless the
// broker is closed), so every Watch is paired with an Unwatch: when Redis
// is unreachable it fails at once with an EUnavailable error, and the
// channel is subscribed once Redis is back, before the handlers are told
// (herald.BrokerResync).
func (b *Broker) Watch(ctx context.Context, user herald.UserID) error {
	if err := b.check(context.Background(), "watch"); err != nil {
		return err
	}
	ch := b.userChannel(user)
	b.imu.Lock()
	in := b.interests[ch]
	if in == nil {
		in = &interest{ready: make(chan struct{}), queued: true}
		b.interests[ch] = in
		b.toSubscribe = append(b.toSubscribe, ch)
		b.kickManager()
	}
	if in.conns == 0 {
		delete(b.idle, ch)
	}
	in.conns++
	confirmed, ready := in.confirmed, in.ready
	b.imu.Unlock()
	if confirmed {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis: watch: %w", err)
	}
	up, lost := b.state.link()
	if !up {
		return &herald.Error{Code: herald.EUnavailable, Message: "redis: watch: not subscribed to Redis; the user's channel is subscribed once it is back", Err: b.state.ready()}
	}
	select { // a confirmation wins over a ctx that is also done
	case <-ready:
		return nil
	default:
	}
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("redis: watch: waiting for Redis to confirm the subscription: %w", ctx.Err())
	case <-lost:
		return &herald.Error{Code: herald.EUnavailable, Message: "redis: watch: the subscription to Redis was lost; the user's channel is subscribed once it is back", Err: b.state.ready()}
	case <-b.done:
		return fmt.Errorf("redis: watch: %w", ErrClosed)
	}
}

// Unwatch removes one connection of user. When it was the last, the
// manager unsubscribes the user's channel Options.Linger later, unless a
// Watch comes first. An Unwatch without a Watch to undo does nothing. It
// never blocks on the network.
func (b *Broker) Unwatch(user herald.UserID) {
	ch := b.userChannel(user)
	b.imu.Lock()
	defer b.imu.Unlock()
	in := b.interests[ch]
	if in == nil || in.conns == 0 {
		return
	}
	in.conns--
	if in.conns == 0 {
		in.idleSince = time.Now()
		b.idle[ch] = in
	}
}

// kickManager wakes the manager without waiting.
func (b *Broker) kickManager() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// lingerTick is how often the manager looks for interests to drop: often
// enough that one lingers not much longer than linger.
func lingerTick(linger time.Duration) time.Duration {
	return min(max(linger/4, 10*time.Millisecond), time.Second)
}

// manage is the manager goroutine: it sends the queued SUBSCRIBEs when
// kicked and drops the interests that have lingered long enough, until
// Close.
func (b *Broker) manage() {
	defer close(b.managerDone)
	t := time.NewTicker(lingerTick(b.linger))
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-b.kick:
		case <-t.C:
		}
		b.updateInterests()
	}
}

// updateInterests subscribes the queued channels and unsubscribes the
// idle ones that have lingered, in batches. While the subscription is
// down it does nothing: the reader subscribes every channel of the node
// on the next connection, and nothing is dropped meanwhile.
func (b *Broker) updateInterests() {
	if !b.state.isUp() {
		return
	}
	b.imu.Lock()
	ps := b.current()
	subs := b.takeQueued()
	var unsubs []string
	now := time.Now()
	for ch, in := range b.idle {
		if now.Sub(in.idleSince) >= b.linger && in.pending == 0 && !in.queued {
			delete(b.idle, ch)
			delete(b.interests, ch)
			unsubs = append(unsubs, ch)
		}
	}
	b.imu.Unlock()
	if ps == nil || (len(subs) == 0 && len(unsubs) == 0) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.health)
	defer cancel()
	// A failed write means the connection broke: the reader notices,
	// and subscribes on the next one the channels the node still wants.
	for c := range slices.Chunk(unsubs, maxChannelsPerCommand) {
		if err := ps.Unsubscribe(ctx, c...); err != nil {
			return
		}
	}
	for c := range slices.Chunk(subs, maxChannelsPerCommand) {
		if err := ps.Subscribe(ctx, c...); err != nil {
			return
		}
	}
}

// takeQueued returns the channels waiting for a SUBSCRIBE and counts it
// as sent; b.imu is held.
func (b *Broker) takeQueued() []string {
	var subs []string
	for _, ch := range b.toSubscribe {
		if in := b.interests[ch]; in != nil && in.queued {
			in.queued = false
			in.pending++
			subs = append(subs, ch)
		}
	}
	clear(b.toSubscribe)
	b.toSubscribe = b.toSubscribe[:0]
	return subs
}

// confirm records Redis's confirmation of a SUBSCRIBE to ch, waking the
// Watches that wait for it. Confirmations of the broadcast and control
// channels, and of channels dropped since, are no interest's.
func (b *Broker) confirm(ch string) {
	b.imu.Lock()
	defer b.imu.Unlock()
	in := b.interests[ch]
	if in == nil || in.pending == 0 {
		return
	}
	in.pending--
	if !in.confirmed {
		in.confirmed = true
		close(in.ready)
	}
}

// watchedChannels returns every channel the node must be subscribed to on
// a new pub/sub connection, and counts a SUBSCRIBE as pending for each
// interest, since the new connection has none; b.imu is held.
func (b *Broker) watchedChannels() []string {
	channels := make([]string, 0, 2+len(b.interests))
	channels = append(channels, b.broadcastCh, b.controlCh)
	for ch, in := range b.interests {
		in.pending = 1
		in.queued = false
		channels = append(channels, ch)
	}
	clear(b.toSubscribe)
	b.toSubscribe = b.toSubscribe[:0]
	return channels
}

// Watching returns how many users the node is subscribed to (or about
// to be), lingering ones included, and how many of them have no
// connection left: what an operator's metrics would show.
func (b *Broker) Watching() (users, idle int) {
	b.imu.Lock()
	defer b.imu.Unlock()
	return len(b.interests), len(b.idle)
}
