package nats

import (
	"context"
	"fmt"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/herald-gw/herald"
)

// Per-user interest (herald.BrokerInterest): the node subscribes to the
// subject of each user it holds a connection of, and to no other user's.
//
// Watch and Unwatch only count, under imu, and never touch the client:
// Watch queues the subject of a user new to the node and waits for the
// server to confirm it. The manager goroutine (manage) makes the queued
// subscriptions, confirms them with one round trip (a flush) for every
// batch, and unsubscribes the subjects whose last connection left more
// than Options.Linger ago. Being the only goroutine that subscribes and
// unsubscribes user subjects, it never holds two subscriptions to one
// subject, which would deliver its messages twice.
//
// Every user subscription delivers into one channel (inbox), in the order
// the client read the messages: a pump moves them into a queue bounded
// like the other subscriptions' (pendingMsgs, pendingBytes), and one
// goroutine hands them to the handlers, so each user's messages keep
// their order and a node holding many users runs three goroutines for
// them, not one per user.

// DefaultLinger is how long a node stays subscribed to a user's subject
// after the user's last connection on it closed, when Options.Linger is
// not set: long enough for a reloading tab to come back without an UNSUB
// and a SUB, short enough that a node soon stops receiving what it no
// longer needs.
const DefaultLinger = 5 * time.Second

// inboxLen is the capacity of the channel the client's reader puts the
// user subjects' messages in: as many as a subscription's queue holds.
// The pump empties it as fast as it is scheduled, and the queue behind it
// holds the backlog, within bounds of messages and bytes; but the pump
// can wait for a CPU while the reader goes on reading (a channel send
// readies it on the reader's own processor) through thousands of
// messages, which a smaller channel would drop (measured with 4,096 under
// BenchmarkPublish on two cores).
const inboxLen = pendingMsgs

// interest is a user subject the node is subscribed to, or about to be.
// Its fields are guarded by Broker.imu, but sub, which only the manager
// touches.
type interest struct {
	subject string
	// conns counts the user's connections on the node: Watches minus
	// Unwatches.
	conns int
	// ready is closed, and confirmed set, once the server has confirmed
	// the subscription. A Watch of a confirmed interest returns at once.
	ready     chan struct{}
	confirmed bool
	// idleSince is when conns fell to 0 (the interest is then in
	// Broker.idle).
	idleSince time.Time
	// gone says the manager dropped the interest.
	gone bool
	sub  *natsgo.Subscription
}

var _ herald.BrokerInterest = (*Broker)(nil)

// Watch adds one connection of user on this node. The first one has the
// node subscribe to the user's subject, and Watch returns once the server
// has confirmed it (a flush, bounded by ctx): from then on, whatever a
// node connected to the same server publishes for the user reaches this
// one. (On a cluster of NATS servers the subscription then spreads to the
// other servers within moments; a message published there meanwhile is
// missed, and found in the Store by the next message's gap.) A user the
// node already watches costs no round trip. Watch counts the connection
// whatever it returns (unless the broker is closed), so every Watch is
// paired with an Unwatch: while NATS is unreachable it fails at once with
// an EUnavailable error, and the subject is subscribed when the
// connection is back, before the handlers are told (herald.BrokerResync).
func (b *Broker) Watch(ctx context.Context, user herald.UserID) error {
	if b.closed.Load() {
		return fmt.Errorf("nats: broker watch: %w", ErrClosed)
	}
	subject := b.subj.user(user)
	b.imu.Lock()
	in := b.interests[subject]
	if in == nil {
		in = &interest{subject: subject, ready: make(chan struct{})}
		b.interests[subject] = in
		b.unconfirmed[subject] = in
		b.toSubscribe = append(b.toSubscribe, in)
		b.kickManager()
	}
	if in.conns == 0 {
		delete(b.idle, subject)
	}
	in.conns++
	confirmed, ready := in.confirmed, in.ready
	b.imu.Unlock()
	if confirmed {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats: broker watch: %w", err)
	}
	lost := b.link.lostChan()
	if err := b.Ready(); err != nil {
		return fmt.Errorf("nats: broker watch (the user's subject is subscribed once NATS is back): %w", err)
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
		return fmt.Errorf("nats: broker watch: waiting for the server to confirm the subscription: %w", ctx.Err())
	case <-lost:
		return &herald.Error{Code: herald.EUnavailable, Message: "the message broker disconnected; the user's subject is subscribed once it is back",
			Err: fmt.Errorf("nats: broker watch: disconnected from %s", b.url)}
	case <-b.done:
		return fmt.Errorf("nats: broker watch: %w", ErrClosed)
	}
}

// Unwatch removes one connection of user. When it was the last, the
// manager unsubscribes the user's subject Options.Linger later, unless a
// Watch comes first. An Unwatch without a Watch to undo does nothing. It
// never blocks on the network.
func (b *Broker) Unwatch(user herald.UserID) {
	subject := b.subj.user(user)
	b.imu.Lock()
	defer b.imu.Unlock()
	in := b.interests[subject]
	if in == nil || in.conns == 0 {
		return
	}
	in.conns--
	if in.conns == 0 {
		in.idleSince = time.Now()
		b.idle[subject] = in
	}
}

// Watching returns how many users the node is subscribed to (or about
// to be), lingering ones included, and how many of them have no
// connection left: what an operator's metrics would show.
func (b *Broker) Watching() (users, idle int) {
	b.imu.Lock()
	defer b.imu.Unlock()
	return len(b.interests), len(b.idle)
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

// manage is the manager goroutine: it subscribes the queued subjects when
// kicked, confirms them, drops the interests that have lingered long
// enough and, after a reconnection, tells the handlers once the server
// has every subscription again; until Close.
func (b *Broker) manage() {
	defer b.wg.Done()
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

// updateInterests is one round of the manager.
func (b *Broker) updateInterests() {
	b.imu.Lock()
	now := time.Now()
	var expired []*interest
	for subject, in := range b.idle {
		if now.Sub(in.idleSince) >= b.linger {
			delete(b.idle, subject)
			delete(b.interests, subject)
			delete(b.unconfirmed, subject)
			in.gone = true
			expired = append(expired, in)
		}
	}
	queued := b.toSubscribe
	b.toSubscribe = nil
	resync := b.resync
	b.resync = false
	b.imu.Unlock()

	// Unsubscribing first: a user dropped and watched again in the
	// meantime is subscribed anew below, after the UNSUB.
	for _, in := range expired {
		if in.sub != nil {
			_ = in.sub.Unsubscribe() // fails only on a closed connection
		}
	}
	for _, in := range queued {
		if in.gone {
			continue
		}
		// While the connection is down the client records the
		// subscription and sends it when the connection is back.
		sub, err := b.nc.ChanSubscribe(in.subject, b.inbox)
		if err != nil {
			if b.closed.Load() {
				return
			}
			b.log.Error("NATS subscribe to a user's subject failed", "err", err)
			continue
		}
		in.sub = sub
	}

	b.imu.Lock()
	var waiting []*interest
	for _, in := range b.unconfirmed {
		if in.sub != nil {
			waiting = append(waiting, in)
		}
	}
	b.imu.Unlock()
	if len(waiting) == 0 && !resync {
		return
	}
	// A flush's PONG comes after the server has handled every SUB sent
	// before its PING. While disconnected there is nothing to wait for:
	// the next reconnection brings another round.
	err := fmt.Errorf("not connected (%v)", b.nc.Status())
	if b.nc.Status() == natsgo.CONNECTED {
		ctx, cancel := context.WithTimeout(context.Background(), subscribeTimeout)
		err = b.nc.FlushWithContext(ctx)
		cancel()
	}
	if err != nil {
		if resync {
			b.imu.Lock()
			b.resync = true // try again at the next tick
			b.imu.Unlock()
		}
		return
	}
	b.imu.Lock()
	for _, in := range waiting {
		if !in.confirmed {
			in.confirmed = true
			close(in.ready)
		}
		if b.unconfirmed[in.subject] == in {
			delete(b.unconfirmed, in.subject)
		}
	}
	b.imu.Unlock()
	if resync {
		b.resynced()
	}
}

// link follows the connection for the Watches that wait: lost is closed
// when the connection drops, and replaced when it is back.
type link struct {
	mu   sync.Mutex
	lost chan struct{}
	down bool
}

func (l *link) init() { l.lost = make(chan struct{}) }

// lostChan returns the channel closed when the connection is next lost
// (already closed while it is down).
func (l *link) lostChan() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

func (l *link) disconnected() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.down {
		l.down = true
		close(l.lost)
	}
}

func (l *link) reconnected() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		l.down = false
		l.lost = make(chan struct{})
	}
}

// userQueue holds the user subjects' messages between the pump and the
// delivering goroutine, bounded in messages and bytes like the other
// subscriptions' queues. The message being delivered counts against the
// bounds until its handler calls return.
type userQueue struct {
	mu       sync.Mutex
	cond     sync.Cond
	msgs     []*natsgo.Msg
	head     int // msgs[head:] are waiting
	n, bytes int // waiting and being delivered
	maxMsgs  int
	maxBytes int
	dropping bool // dropped the last message that came
	dropped  int  // since the queue last took one
	closed   bool
}

func (q *userQueue) init(maxMsgs, maxBytes int) {
	q.cond.L = &q.mu
	q.maxMsgs, q.maxBytes = maxMsgs, maxBytes
}

// setLimits changes the bounds (tests lower them).
func (q *userQueue) setLimits(maxMsgs, maxBytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.maxMsgs, q.maxBytes = maxMsgs, maxBytes
}

// put queues m, or drops it when the queue is full. It reports a drop
// that starts an episode (the first since the queue last took a
// message), with the state of the queue, so that the caller logs it.
func (q *userQueue) put(m *natsgo.Msg) (episode bool, dropped, n, bytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false, 0, 0, 0
	}
	size := len(m.Data)
	if q.n+1 > q.maxMsgs || (q.n > 0 && q.bytes+size > q.maxBytes) {
		q.dropped++
		episode = !q.dropping
		q.dropping = true
		return episode, q.dropped, q.n, q.bytes
	}
	q.dropping, q.dropped = false, 0
	if q.head > 0 && q.head == len(q.msgs) {
		clear(q.msgs)
		q.msgs, q.head = q.msgs[:0], 0
	}
	q.msgs = append(q.msgs, m)
	q.n++
	q.bytes += size
	q.cond.Signal()
	return false, 0, 0, 0
}

// take waits for the next message, or returns nil once the queue is
// closed. The caller calls done(m) once it has delivered m.
func (q *userQueue) take() *natsgo.Msg {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.msgs) && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil
	}
	m := q.msgs[q.head]
	q.msgs[q.head] = nil
	q.head++
	return m
}

func (q *userQueue) done(m *natsgo.Msg) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.n--
	q.bytes -= len(m.Data)
}

func (q *userQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
}

// pump moves what the user subscriptions receive from the inbox channel
// to the queue, until Close. It never blocks on a handler, so the channel
// overflows (the client then drops and reports a slow consumer) only when
// the pump is starved of CPU.
func (b *Broker) pump() {
	defer b.wg.Done()
	for {
		select {
		case <-b.done:
			return
		case m := <-b.inbox:
			if episode, dropped, n, bytes := b.users.put(m); episode {
				b.slowUsers(dropped, n, bytes)
			}
		}
	}
}

// deliverUsers hands the queued user messages to every handler, in the
// order they came, until Close.
func (b *Broker) deliverUsers() {
	defer b.wg.Done()
	for {
		m := b.users.take()
		if m == nil {
			return
		}
		for _, s := range b.handlers() {
			s.receive(m)
		}
		b.users.done(m)
	}
}

// slowUsers logs the start of a slow-consumer episode of the user
// subjects, spaced like the client's reports of the other subscriptions.
func (b *Broker) slowUsers(dropped, n, bytes int) {
	episodes, ok := b.slow.allow(time.Now())
	if !ok {
		return
	}
	b.log.Warn("NATS slow consumer: this node is dropping messages until it catches up; its sessions fill the gaps from the store",
		"subject", b.subj.prefix+".u.<user>", "episodes", episodes, "dropped", dropped, "pending_msgs", n, "pending_bytes", bytes)
}
