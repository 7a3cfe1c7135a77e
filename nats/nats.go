// Package nats is a herald.Broker over NATS core publish/subscribe, with
// the official client github.com/nats-io/nats.go: the bus between the
// nodes of a Herald cluster when HERALD_BROKER is a nats:// URL.
//
// # Core NATS, not JetStream
//
// The Broker contract is best effort, never duplicating: the Store is the
// source of truth and a session that notices an offset gap fills it from
// there. Core NATS is exactly that kind of bus — at most once, in
// publish order per publisher and subject, nothing kept — at the cost of
// one hop through the server's memory. JetStream would add a disk (or
// replicated) write and an acknowledgement per message to keep what the
// Store already keeps, and its redelivery is at least once, which the
// contract forbids and sessions would then have to absorb. Herald keeps
// history in the Store precisely so that the bus need not, so this
// package uses no stream, consumer or key-value bucket.
//
// # Subjects and the wire
//
// Under a prefix (Options.Prefix, "herald" by default) a user's messages
// and the controls about a user go to <prefix>.u.<user as base64url>,
// broadcasts to <prefix>.b, and the controls about one connection to
// <prefix>.c (see subjects). Each NATS message carries one envelope (see
// envelope.go): the publishing node's id, what it carries and every field
// of the herald.Message or herald.Control. A Publish sends one envelope per
// user (more when the server's max_payload demands), in the order of the
// batch, so each user's messages arrive in order: one connection per node,
// and NATS keeps the order of one connection's messages on one subject.
//
// # A node's own publications
//
// Each Broker has its own connection and asks the server not to echo its
// publications back (the NoEcho option), so they never cross the network
// twice; a receiver also drops any envelope bearing its own node id, which
// covers two connections of one node id.
//
// # Not blocking
//
// Publish appends to the client's buffer and returns; a write to the
// socket (which a publisher filling the buffer makes itself) that stalls
// for 2 s fails the connection, which is then re-established, so a
// publisher is never held for long.
// While the connection is down, publications queue in a reconnect buffer
// of 8 MiB, sent after the subscriptions are restored; once it is full,
// Publish fails with an EUnavailable *herald.Error, and the sessions of
// other nodes fill the gap from the Store.
//
// Received messages go to a queue of each NATS subscription (the client's
// reading goroutine only appends to it), and a goroutine per subscription
// decodes them and calls the handler, which hands over to the hub without
// blocking. The user subjects share one such queue and goroutine (see
// interest.go). A queue is bounded (65,536 NATS messages or 64 MiB):
// beyond that what arrives is dropped and this package logs a slow
// consumer, which is allowed, since the Store fills the gaps.
//
// # Outages
//
// The client reconnects by itself, forever, every half second or so, and
// restores every subscription before sending what it buffered; each step
// is logged. Ready reports an error while the connection is down, so
// /readyz fails meanwhile. What was published while a node was away is lost
// to it; its sessions find out from the next message's offset (or when
// their clients reconnect).
//
// # Per-user interest
//
// A node subscribes to the subjects of the users it holds a connection of
// (herald.BrokerInterest: the node's hub calls Watch and Unwatch per
// connection; see interest.go), so the server sends a user's messages and
// user controls to the nodes that need them and to no other: with N nodes
// a notification costs one delivery instead of N-1, and a node spends
// nothing on users it does not hold. A subject stays subscribed
// Options.Linger after the user's last connection on the node closed, so
// that a reloading tab costs no UNSUB and SUB. Broadcasts and the
// controls about a connection go to every node.
//
// A node of an earlier version, which subscribes to <prefix>.u.*, works
// with these during a rolling upgrade: it receives everything, as before,
// and the subjects are the same.
package nats

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/gate"
)

// Options configure a Broker. The zero value is valid.
type Options struct {
	// Prefix starts every subject the broker uses, so that several
	// clusters (or tests) can share one NATS server. Empty means
	// DefaultPrefix. Every node of a cluster must use the same.
	Prefix string
	// Node identifies this node on the bus; it must differ between the
	// nodes of a cluster. Empty means a random id.
	Node string
	// Log receives connection events (connected, disconnected,
	// reconnected, slow consumer); nil means slog.Default(). No payload
	// is ever logged.
	Log *slog.Logger
	// Linger is how long the node stays subscribed to a user's subject
	// after the user's last connection on it closed (Unwatch), so that a
	// connection that comes back at once (a reloaded tab) costs no UNSUB
	// and SUB; DefaultLinger when <= 0. The subject is unsubscribed
	// between Linger and Linger plus a second after.
	Linger time.Duration
}

// Connection settings. They are not options because each follows from
// the broker's place on the publish path rather than from a deployment.
const (
	// reconnectWait (plus up to reconnectJitter, so that nodes do not
	// knock in step) separates attempts to reach a server that went
	// away: a restarted NATS is back in use within about a second.
	reconnectWait   = 500 * time.Millisecond
	reconnectJitter = 500 * time.Millisecond
	// A server that stops answering (a dead peer, a silent network) is
	// noticed after maxPingsOut unanswered pings, pingInterval apart:
	// within about 20 s rather than the client's default of minutes.
	pingInterval = 5 * time.Second
	maxPingsOut  = 3
	// flusherTimeout bounds a write to the socket. A publisher that
	// fills the client's buffer writes it out itself, so this is how
	// long a Publish can be held by a stuck connection; past it the
	// connection is dropped and re-established.
	flusherTimeout = 2 * time.Second
	// reconnectBufSize is how much Publish may queue while disconnected.
	reconnectBufSize = 8 << 20
	// pendingMsgs and pendingBytes bound each subscription's queue of
	// received messages. A node that falls this far behind (tens of
	// thousands of batches: seconds of work for a hub that never
	// blocks) is better off dropping and letting sessions read the
	// Store than holding ever more memory.
	pendingMsgs  = 65536
	pendingBytes = 64 << 20
	// subscribeTimeout bounds Subscribe's round trip to the server when
	// its ctx has no deadline.
	subscribeTimeout = 10 * time.Second
	// maxNodeLen bounds Options.Node, which every envelope carries.
	maxNodeLen = 128
	// logEvery spaces the log lines about events that can come by the
	// thousand: envelopes that cannot be decoded (something else
	// publishing under the prefix), slow-consumer episodes.
	logEvery = 10 * time.Second
	// maxPooledBuffer is the largest encoding buffer kept for reuse: a
	// rare huge batch should not pin its buffer for ever.
	maxPooledBuffer = 1 << 20
)

// ErrClosed is returned by the calls of a Broker after its Close. It
// carries herald.EUnavailable, so an API handler reports 503.
var ErrClosed error = herald.Errorf(herald.EUnavailable, "NATS broker is closed")

// Broker is one node's handle on a NATS bus; it implements herald.Broker.
// It is safe for concurrent use.
type Broker struct {
	nc   *natsgo.Conn
	subj subjects
	node string
	log  *slog.Logger
	url  string // redacted, for messages

	// pendingMsgs and pendingBytes are the queue limits of each NATS
	// subscription made from now on (tests lower them).
	pendingMsgs, pendingBytes int

	mu     sync.Mutex
	closed atomic.Bool // set under mu, so that no Subscribe slips in after Close
	subs   map[*subscription]struct{}
	hs     atomic.Pointer[[]*subscription] // subs as a slice, for the deliveries; set under mu

	// Per-user interest (interest.go). imu guards interests, idle,
	// unconfirmed, toSubscribe and resync.
	linger      time.Duration
	imu         sync.Mutex
	interests   map[string]*interest // by subject
	idle        map[string]*interest // the interests with no connection left
	unconfirmed map[string]*interest // the interests the server has not confirmed
	toSubscribe []*interest          // waiting for the manager
	resync      bool                 // reconnected: the manager tells the handlers
	kick        chan struct{}        // wakes the manager
	link        link
	inbox       chan *natsgo.Msg // what the user subscriptions receive
	users       userQueue
	done        chan struct{} // closed by Close: the goroutines below end
	wg          sync.WaitGroup

	bufs  sync.Pool // *[]byte, the encoding buffers
	drops throttle  // log lines about undecodable envelopes
	slow  throttle  // log lines about slow consumers
}

var _ herald.Broker = (*Broker)(nil)

// New connects to the NATS server(s) at url (a nats:// URL, or several
// separated by commas) and returns this node's Broker. It waits for the
// first connection until ctx is done, so that a node started before its
// NATS server (a Compose file, a Kubernetes rollout) comes up with it; it
// fails when ctx ends first, or at once when url or opts are invalid.
func New(ctx context.Context, url string, opts Options) (*Broker, error) {
	return connect(ctx, url, opts)
}

// connect is New with extra client options, which tests use to stay on
// one server.
func connect(ctx context.Context, rawURL string, opts Options, extra ...natsgo.Option) (*Broker, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nats: connect: %w", err)
	}
	if strings.TrimSpace(rawURL) == "" {
		return nil, errors.New("nats: connect: no server URL")
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if err := checkPrefix(prefix); err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	node := opts.Node
	if node == "" {
		node = randomNode()
	}
	if len(node) > maxNodeLen {
		return nil, fmt.Errorf("nats: node id is %d bytes; the limit is %d", len(node), maxNodeLen)
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("broker", "nats", "node", node)
	linger := opts.Linger
	if linger <= 0 {
		linger = DefaultLinger
	}
	b := &Broker{
		subj:         subjects{prefix: prefix},
		node:         node,
		log:          log,
		url:          redactURLs(rawURL),
		pendingMsgs:  pendingMsgs,
		pendingBytes: pendingBytes,
		subs:         make(map[*subscription]struct{}),
		linger:       linger,
		interests:    make(map[string]*interest),
		idle:         make(map[string]*interest),
		unconfirmed:  make(map[string]*interest),
		kick:         make(chan struct{}, 1),
		inbox:        make(chan *natsgo.Msg, inboxLen),
		done:         make(chan struct{}),
	}
	b.link.init()
	b.users.init(pendingMsgs, pendingBytes)

	connected := make(chan struct{})
	var once sync.Once
	options := []natsgo.Option{
		natsgo.Name("herald " + node),
		natsgo.NoEcho(),
		natsgo.RetryOnFailedConnect(true),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(reconnectWait),
		natsgo.ReconnectJitter(reconnectJitter, reconnectJitter),
		natsgo.PingInterval(pingInterval),
		natsgo.MaxPingsOutstanding(maxPingsOut),
		natsgo.FlusherTimeout(flusherTimeout),
		natsgo.ReconnectBufSize(reconnectBufSize),
		natsgo.NoCallbacksAfterClientClose(),
		natsgo.ConnectHandler(func(nc *natsgo.Conn) {
			log.Info("NATS connected", "server", nc.ConnectedUrlRedacted())
			once.Do(func() { close(connected) })
		}),
		natsgo.DisconnectErrHandler(func(nc *natsgo.Conn, err error) {
			b.link.disconnected()
			log.Warn("NATS disconnected; reconnecting. Messages published meanwhile are lost to this node; its sessions fill the gaps from the store",
				"err", err)
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			log.Info("NATS reconnected; subscriptions restored",
				"server", nc.ConnectedUrlRedacted(), "subscriptions", nc.NumSubscriptions())
			b.link.reconnected()
			// The manager confirms the subscriptions with a round
			// trip, subscribes what was watched meanwhile, and then
			// tells the handlers.
			b.imu.Lock()
			b.resync = true
			b.kickManager()
			b.imu.Unlock()
		}),
		natsgo.ErrorHandler(b.asyncError),
	}
	nc, err := natsgo.Connect(rawURL, append(options, extra...)...)
	if err != nil { // a bad URL or option: retrying cannot help
		return nil, fmt.Errorf("nats: connect to %s: %w", b.url, err)
	}
	b.nc = nc
	b.wg.Add(3)
	go b.manage()
	go b.pump()
	go b.deliverUsers()
	select {
	case <-connected:
		return b, nil
	case <-ctx.Done():
		last := nc.LastError()
		nc.Close()
		b.stopWorkers()
		return nil, &herald.Error{Code: herald.EUnavailable, Message: "NATS is not reachable",
			Err: fmt.Errorf("nats: connect to %s: %w (last error: %v)", b.url, ctx.Err(), last)}
	}
}

// Node returns this node's id on the bus.
func (b *Broker) Node() string { return b.node }

// Ready reports whether the broker can reach NATS: nil while connected, an
// EUnavailable *herald.Error saying why otherwise (closed, or the
// connection down and being re-established).
func (b *Broker) Ready() error {
	if b.closed.Load() {
		return ErrClosed
	}
	st := b.nc.Status()
	if st == natsgo.CONNECTED {
		return nil
	}
	err := fmt.Errorf("nats: not connected to %s (%v)", b.url, st)
	if last := b.nc.LastError(); last != nil {
		err = fmt.Errorf("%w; last error: %w", err, last)
	}
	return &herald.Error{Code: herald.EUnavailable, Message: "the message broker is not connected", Err: err}
}

// check returns the error an operation named op must fail with before
// sending anything: b closed, or ctx done.
func (b *Broker) check(ctx context.Context, op string) error {
	if b.closed.Load() {
		return fmt.Errorf("nats: broker %s: %w", op, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats: broker %s: %w", op, err)
	}
	return nil
}

// maxPayload is the largest NATS message the server takes.
func (b *Broker) maxPayload() int {
	if n := b.nc.MaxPayload(); n > 0 {
		return int(n)
	}
	return 1 << 20 // the server's default, should the client not know yet
}

// send publishes one envelope. The client copies data into its buffer, so
// the caller may reuse it.
func (b *Broker) send(subject string, data []byte) error {
	err := b.nc.Publish(subject, data)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, natsgo.ErrMaxPayload):
		return err // the server's limit shrank since the check: not an outage
	case b.closed.Load():
		return ErrClosed
	}
	// The reconnect buffer is full, the connection closed under us, or
	// the like: the bus is unavailable, and the caller's 503 says so.
	return &herald.Error{Code: herald.EUnavailable, Message: "the message broker is not accepting messages", Err: err}
}

// Publish sends msgs to the other nodes: one envelope per user on the
// user's subject, in batch order (more than one when an envelope would
// exceed the server's max_payload). Everything is encoded before anything
// is sent, so a message too large for the server fails the call with
// nothing sent.
func (b *Broker) Publish(ctx context.Context, msgs []*herald.Message) error {
	if err := b.check(ctx, "publish"); err != nil {
		return err
	}
	if err := herald.CheckCommitted(msgs); err != nil {
		return fmt.Errorf("nats: broker publish: %w", err)
	}
	if len(msgs) == 0 {
		return nil
	}
	bp := b.buffer()
	defer b.release(bp)
	parts, err := b.encodeMessages(bp, msgs)
	if err != nil {
		return fmt.Errorf("nats: broker publish: %w", err)
	}
	for _, p := range parts {
		if err := b.send(p.subject, (*bp)[p.start:p.end]); err != nil {
			return fmt.Errorf("nats: broker publish: %w", err)
		}
	}
	return nil
}

// part is one envelope of a Publish: a span of the encoding buffer.
type part struct {
	subject    string
	start, end int
}

// encodeMessages encodes msgs into *bp as envelopes of one user each, and
// returns them in the order to send them.
func (b *Broker) encodeMessages(bp *[]byte, msgs []*herald.Message) ([]part, error) {
	// Grouping by user with a stable sort keeps each user's order; the
	// order between users does not matter.
	byUser := msgs
	if len(msgs) > 1 {
		byUser = slices.Clone(msgs)
		slices.SortStableFunc(byUser, func(x, y *herald.Message) int { return strings.Compare(string(x.User), string(y.User)) })
	}
	limit := b.maxPayload()
	buf := (*bp)[:0]
	var parts []part
	for i := 0; i < len(byUser); {
		user := byUser[i].User
		subject := b.subj.user(user)
		start := len(buf)
		buf = appendUser(appendHeader(buf, kindMessages, b.node), user)
		head := len(buf) - start // header and user, repeated when a batch is split
		n := 0                   // messages in the envelope so far
		for ; i < len(byUser) && byUser[i].User == user; i++ {
			before := len(buf)
			buf = appendBatched(buf, byUser[i])
			if len(buf)-start <= limit {
				n++
				continue
			}
			if n == 0 {
				return nil, fmt.Errorf("message %q is %d bytes on the wire; the NATS server takes at most %d (max_payload)",
					byUser[i].ID, len(buf)-start, limit)
			}
			// Close the envelope before this message and start another
			// with it.
			parts = append(parts, part{subject, start, before})
			msg := slices.Clone(buf[before:])
			buf = append(buf[:before], buf[start:start+head]...)
			start = before
			buf = append(buf, msg...)
			n = 1
			if len(buf)-start > limit {
				return nil, fmt.Errorf("message %q is %d bytes on the wire; the NATS server takes at most %d (max_payload)",
					byUser[i].ID, len(buf)-start, limit)
			}
		}
		parts = append(parts, part{subject, start, len(buf)})
	}
	*bp = buf
	return parts, nil
}

// buffer returns an encoding buffer from the pool.
func (b *Broker) buffer() *[]byte {
	if p, ok := b.bufs.Get().(*[]byte); ok {
		return p
	}
	p := make([]byte, 0, 4096)
	return &p
}

// release returns an encoding buffer to the pool, unless it grew huge.
func (b *Broker) release(bp *[]byte) {
	if cap(*bp) <= maxPooledBuffer {
		b.bufs.Put(bp)
	}
}

// sendOne encodes one envelope with enc and sends it on subject.
func (b *Broker) sendOne(op, subject string, enc func([]byte) []byte) error {
	bp := b.buffer()
	defer b.release(bp)
	*bp = enc((*bp)[:0])
	if limit := b.maxPayload(); len(*bp) > limit {
		return fmt.Errorf("nats: broker %s: %d bytes on the wire; the NATS server takes at most %d (max_payload)", op, len(*bp), limit)
	}
	if err := b.send(subject, *bp); err != nil {
		return fmt.Errorf("nats: broker %s: %w", op, err)
	}
	return nil
}

// Broadcast sends m to every other node on the broadcast subject.
func (b *Broker) Broadcast(ctx context.Context, m *herald.Message) error {
	if err := b.check(ctx, "broadcast"); err != nil {
		return err
	}
	if m == nil {
		return errors.New("nats: broker broadcast: nil message")
	}
	return b.sendOne("broadcast", b.subj.broadcast(), func(p []byte) []byte {
		return appendBroadcast(appendHeader(p, kindBroadcast, b.node), m)
	})
}

// Control sends c to the other nodes: on the user's subject for a control
// about a user, on the connection subject for one about a connection.
func (b *Broker) Control(ctx context.Context, c herald.Control) error {
	if err := b.check(ctx, "control"); err != nil {
		return err
	}
	if err := herald.CheckControl(c); err != nil {
		return fmt.Errorf("nats: broker control: %w", err)
	}
	return b.sendOne("control", b.subj.control(c), func(p []byte) []byte {
		return appendControl(appendHeader(p, kindControl, b.node), c)
	})
}

// Subscribe subscribes h to the broadcast and connection subjects (see
// subjects.interest) and returns once the server has the subscriptions
// (h also receives what the user subjects the node watches bring; see
// Watch):
// it waits for the server's answer to a ping sent after them, within ctx
// (or 10 s when ctx has no deadline). While the connection is down it
// fails at once with an EUnavailable error, since the server could not
// confirm anything. On a NATS cluster the interest then spreads to the
// other servers within moments, so a publisher on another server may
// miss the first messages; the Store has them.
func (b *Broker) Subscribe(ctx context.Context, h herald.BrokerHandler) (stop func(), err error) {
	if h == nil {
		return nil, errors.New("nats: broker subscribe: nil handler")
	}
	if err := b.check(ctx, "subscribe"); err != nil {
		return nil, err
	}
	if err := b.Ready(); err != nil {
		return nil, fmt.Errorf("nats: broker subscribe: %w", err)
	}
	s := &subscription{b: b, h: h}
	for _, subject := range b.subj.interest() {
		if err := s.listen(subject); err != nil {
			s.stop()
			return nil, fmt.Errorf("nats: broker subscribe: %w", err)
		}
	}
	b.mu.Lock()
	if b.closed.Load() { // closed since check: Close must not miss s
		b.mu.Unlock()
		s.stop()
		return nil, fmt.Errorf("nats: broker subscribe: %w", ErrClosed)
	}
	b.subs[s] = struct{}{}
	b.publishHandlers()
	b.mu.Unlock()
	stop = func() {
		b.mu.Lock()
		if b.subs != nil {
			delete(b.subs, s)
			b.publishHandlers()
		}
		b.mu.Unlock()
		s.stop()
	}

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, subscribeTimeout)
		defer cancel()
	}
	if err := b.nc.FlushWithContext(ctx); err != nil {
		stop()
		if ctx.Err() == nil && !b.closed.Load() {
			err = &herald.Error{Code: herald.EUnavailable, Message: "the message broker did not confirm the subscription", Err: err}
		} else if b.closed.Load() {
			err = ErrClosed
		}
		return nil, fmt.Errorf("nats: broker subscribe: %w", err)
	}
	return stop, nil
}

// Close stops every subscription of the node, waiting for handler calls in
// progress, and closes the connection after writing out what Publish
// buffered. Later calls fail with ErrClosed; Close is idempotent.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed.Swap(true) {
		b.mu.Unlock()
		return nil
	}
	subs := b.subs
	b.subs = nil
	b.hs.Store(nil)
	b.mu.Unlock()
	for s := range subs {
		s.stop()
	}
	b.nc.Close()
	b.stopWorkers()
	b.log.Info("NATS broker closed")
	return nil
}

// stopWorkers ends the manager, the pump and the delivering goroutine,
// and waits for them.
func (b *Broker) stopWorkers() {
	close(b.done)
	b.users.close()
	b.wg.Wait()
}

// publishHandlers stores b.subs as the slice the deliveries read; b.mu is
// held.
func (b *Broker) publishHandlers() {
	hs := make([]*subscription, 0, len(b.subs))
	for s := range b.subs {
		hs = append(hs, s)
	}
	b.hs.Store(&hs)
}

// handlers returns the subscribed handlers; the slice must not be
// modified.
func (b *Broker) handlers() []*subscription {
	if p := b.hs.Load(); p != nil {
		return *p
	}
	return nil
}

// asyncError logs what the client reports outside any call: above all a
// slow consumer, a subscription whose queue is full and which drops
// messages until it catches up. The client reports each episode once,
// but an overloaded node has many, so the lines are spaced.
func (b *Broker) asyncError(_ *natsgo.Conn, sub *natsgo.Subscription, err error) {
	if errors.Is(err, natsgo.ErrSlowConsumer) && sub != nil {
		episodes, ok := b.slow.allow(time.Now())
		if !ok {
			return
		}
		dropped, _ := sub.Dropped()
		msgs, bytes, _ := sub.Pending()
		b.log.Warn("NATS slow consumer: this node is dropping messages until it catches up; its sessions fill the gaps from the store",
			"subject", sub.Subject, "episodes", episodes, "dropped", dropped, "pending_msgs", msgs, "pending_bytes", bytes)
		return
	}
	b.log.Error("NATS error", "err", err)
}

// throttle spaces log lines about events that can come by the thousand:
// the first is logged, then at most one per logEvery, each saying how
// many events it stands for.
type throttle struct {
	mu      sync.Mutex
	last    time.Time
	pending int // events since the last line
}

// allow counts an event and reports whether to log it now, with the
// number of events the line stands for.
func (t *throttle) allow(now time.Time) (events int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending++
	if !t.last.IsZero() && now.Sub(t.last) < logEvery {
		return 0, false
	}
	events = t.pending
	t.pending, t.last = 0, now
	return events, true
}

// undecodable drops an envelope that could not be decoded, and logs it
// (throttled).
func (b *Broker) undecodable(subject string, err error) {
	n, ok := b.drops.allow(time.Now())
	if !ok {
		return
	}
	b.log.Warn("NATS envelope dropped: it cannot be decoded (another Herald version, or something else publishing under the prefix?)",
		"subject", subject, "err", err, "dropped", n)
}

// subscription is one handler subscribed on one node: a NATS subscription
// per subject of interest, all calling receive. Deliveries enter and leave
// it so that stop can wait for the calls in progress: once stop returns the
// handler is never called again (unsubscribing alone does not wait for a
// callback that has started).
type subscription struct {
	b *Broker
	h herald.BrokerHandler

	calls gate.Gate // the calls of h in progress

	mu   sync.Mutex // guards subs, and orders listen against stop
	subs []*natsgo.Subscription
}

// listen adds a NATS subscription to subject, with the broker's queue
// limits.
func (s *subscription) listen(subject string) error {
	ns, err := s.b.nc.Subscribe(subject, s.receive)
	if err != nil {
		if s.b.closed.Load() || errors.Is(err, natsgo.ErrConnectionClosed) {
			return ErrClosed
		}
		return err
	}
	if err := ns.SetPendingLimits(s.b.pendingMsgs, s.b.pendingBytes); err != nil {
		_ = ns.Unsubscribe()
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls.Closed() {
		_ = ns.Unsubscribe()
		return ErrClosed
	}
	s.subs = append(s.subs, ns)
	return nil
}

// resynced tells the handlers that want it (herald.BrokerResync) that the
// subscriptions are back, so that their node checks what it may have
// missed while disconnected.
func (b *Broker) resynced() {
	for _, s := range b.handlers() {
		if rs, ok := s.h.(herald.BrokerResync); ok && s.calls.Enter() {
			rs.HandleResubscribed()
			s.calls.Leave()
		}
	}
}

// receive is the callback of every NATS subscription of s, run by the
// subscription's own goroutine in arrival order, and is called for each
// message of the user subjects by the goroutine that delivers them.
func (s *subscription) receive(m *natsgo.Msg) {
	env, err := decode(m.Data)
	if err != nil {
		s.b.undecodable(m.Subject, err)
		return
	}
	if env.node == s.b.node {
		return
	}
	if !s.calls.Enter() {
		return
	}
	defer s.calls.Leave() // even when h panics or exits its goroutine
	switch env.kind {
	case kindMessages:
		s.h.HandleMessages(env.msgs)
	case kindBroadcast:
		s.h.HandleBroadcast(env.msgs[0])
	case kindControl:
		s.h.HandleControl(env.control)
	}
}

// stop unsubscribes, prevents new calls and waits for those in progress.
// It is idempotent.
func (s *subscription) stop() {
	s.mu.Lock()
	s.calls.Close()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, ns := range subs {
		_ = ns.Unsubscribe() // fails only on a closed connection, which has none left
	}
	s.calls.Wait()
}

// randomNode returns a random node id.
func randomNode() string {
	var b [9]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported systems
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// redactURLs hides the passwords of a comma-separated list of URLs, for
// messages and logs.
func redactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if u, err := url.Parse(p); err == nil && u.User != nil {
			// A NATS token travels as the user name: hide it all.
			u.User = url.User("redacted")
			parts[i] = u.String()
		} else if err != nil {
			parts[i] = "(unparsable URL)"
		} else {
			parts[i] = p
		}
	}
	return strings.Join(parts, ",")
}
