// Package redis is a herald.Broker over Redis pub/sub: the nodes of a Herald
// cluster reach each other through one Redis server, each node with one
// writer that publishes (one pipeline at a time) and one connection that
// subscribes.
//
// # Channels
//
// Everything lives under a prefix (Options.Prefix, "herald:" by default;
// pub/sub channels are global to a Redis server, whatever database the URL
// names, so the prefix is what keeps two clusters on one Redis apart):
//
//	<prefix>u:<base64url(user)>   the committed messages of one user, and the
//	                              controls about that user (push, disconnect)
//	<prefix>b                     broadcasts
//	<prefix>c                     the controls about one connection (post, disconnect,
//	                              ack) and the nodes' connection counts
//
// A user's messages, and the controls about a user (ControlPush,
// ControlDisconnectUser), travel on the user's channel, and a node
// subscribes to the channels of the users it holds a connection of
// (herald.BrokerInterest: the node's hub calls Watch and Unwatch per
// connection; see interest.go). Redis then sends a user's messages to the
// nodes that need them and to no other: with N nodes a notification costs
// one delivery instead of N-1, and a node spends nothing on users it does
// not hold. A channel stays subscribed Options.Linger after the user's
// last connection on the node closed, so that a reloading tab costs no
// UNSUBSCRIBE and SUBSCRIBE. Broadcasts and the controls about one
// connection share the channels every node subscribes to: only the node
// holding a connection knows it holds it.
//
// A node of an earlier version, which subscribes to every user's channel
// with the pattern <prefix>u:* and sends the controls about a user on
// <prefix>c, works with these nodes during a rolling upgrade: it receives
// everything, as before, and they receive its user controls on <prefix>c.
//
// # Order, loss, duplicates
//
// Publish, Broadcast and Control encode an envelope (see wire.go) and
// queue it; one writer goroutine sends what is queued as pipelines of
// PUBLISH commands, one pipeline at a time. Redis runs the commands of one
// connection in order and delivers to a subscriber connection in the
// order it ran the PUBLISHes, so a node's publications reach every other
// node in queue order: the messages of one user in publish order. The
// queue is bounded (Options.QueueSize, QueueBytes): when Redis cannot keep
// up, Publish fails at once with an EUnavailable error instead of
// blocking the API (the messages are in the Store; sessions fetch them).
//
// Nothing is ever sent twice. go-redis would resend a pipeline whose reply
// was lost to a broken connection, although Redis may have run it, so
// retries are turned off: a pipeline that fails is dropped, logged, and
// its messages are found in the Store by the sessions that notice the gap.
// Pub/sub itself is at most once: what is published while a node's
// subscription is down (Redis restarting, a network cut) never reaches it.
//
// # Reconnecting
//
// When its pub/sub connection breaks the broker opens a new one and
// subscribes again to everything the node needs (the broadcast and
// control channels, and every watched user's channel), logs when the
// subscription is lost and when it is back, and Ready reports the outage
// meanwhile; once Redis has confirmed it all, the handlers are told
// (herald.BrokerResync), so that the node's sessions check the Store for
// what they missed. A connection that breaks silently (a peer gone
// without a reset) would hang until TCP gives up, minutes later, so the
// broker also pings a quiet subscription every Options.HealthInterval and
// replaces it when a ping goes unanswered for another interval.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-gw/herald"
)

// Defaults of Options.
const (
	DefaultPrefix         = "herald:"
	DefaultQueueSize      = 8192
	DefaultQueueBytes     = 64 << 20
	DefaultHealthInterval = 2 * time.Second
)

// resyncToken is the payload of the PING the reader sends after
// subscribing on a new connection: Redis answers in order, so its PONG
// says that every SUBSCRIBE before it is in place.
const resyncToken = "herald-resync"

// flushTimeout bounds how long Close waits for the writer to send what is
// still queued.
const flushTimeout = 5 * time.Second

// Options configures a Broker.
type Options struct {
	// Prefix starts every channel name; DefaultPrefix when empty. The
	// nodes of one cluster use the same prefix, two clusters sharing a
	// Redis server different ones.
	Prefix string
	// Node identifies this node on the bus: it travels in every envelope
	// so that the node drops its own publications, and names the node's
	// Redis connections (CLIENT LIST shows "herald-<node>"). It must
	// differ between the nodes of a cluster; a random id when empty.
	Node string
	// Log receives the broker's log lines; slog.Default() when nil.
	Log *slog.Logger
	// QueueSize bounds how many calls of Publish, Broadcast and Control
	// may wait for the writer; DefaultQueueSize when <= 0.
	QueueSize int
	// QueueBytes bounds the bytes of the envelopes waiting for the
	// writer; DefaultQueueBytes when <= 0.
	QueueBytes int
	// HealthInterval is how often a quiet subscription is pinged, and how
	// long a ping may go unanswered before the connection is replaced;
	// DefaultHealthInterval when <= 0. A handler call that blocks for
	// longer also leaves the ping unread, and costs a reconnection.
	HealthInterval time.Duration
	// Linger is how long the node stays subscribed to a user's channel
	// after the user's last connection on it closed (Unwatch), so that a
	// connection that comes back at once (a reloaded tab) costs no
	// UNSUBSCRIBE and SUBSCRIBE; DefaultLinger when <= 0. The channel is
	// unsubscribed between Linger and Linger plus a second after.
	Linger time.Duration
}

// ErrClosed is returned by the calls of a Broker after its Close. It carries
// herald.EUnavailable, so an API handler answers 503.
var ErrClosed error = herald.Errorf(herald.EUnavailable, "redis broker is closed")

// ErrQueueFull is returned by Publish, Broadcast and Control when the queue
// to Redis is full: Redis is slow or unreachable. It carries
// herald.EUnavailable.
var ErrQueueFull error = herald.Errorf(herald.EUnavailable, "redis broker: publish queue is full")

// Broker is one node's handle on a Redis pub/sub bus; it implements
// herald.Broker. It is safe for concurrent use.
type Broker struct {
	client *goredis.Client
	log    *slog.Logger
	node   string
	// ownHeader is how the node id is encoded in an envelope (length and
	// bytes), to recognise this node's publications without decoding.
	ownHeader string
	health    time.Duration

	// Channel names.
	prefix      string
	broadcastCh string
	controlCh   string

	// Publishing: queue feeds the writer. mu guards closed and the sends
	// on queue, so that Close can close it.
	mu         sync.RWMutex
	closed     bool
	queue      chan item
	queueBytes int64
	queued     atomic.Int64  // bytes in queue
	dropped    atomic.Uint64 // publications lost since publishing started failing
	wctx       context.Context
	wcancel    context.CancelFunc
	writerDone chan struct{}

	// Subscribing: the handlers, copied on write so that the reader reads
	// them with one atomic load.
	subsMu     sync.Mutex
	subsClosed bool
	subs       atomic.Pointer[[]*subscription]

	// The pub/sub connection, replaced when it dies silently. psMu guards
	// ps and closing.
	psMu       sync.Mutex
	ps         *goredis.PubSub
	closing    bool
	traffic    atomic.Uint64 // replies received on the subscription: pings answer here
	badInput   atomic.Uint64 // envelopes dropped because they could not be read
	done       chan struct{} // closed by Close
	readerDone chan struct{}
	healthDone chan struct{}
	closeOnce  sync.Once

	state linkState

	// Per-user interest (interest.go): imu guards interests, idle and
	// toSubscribe; it is taken before psMu when both are.
	linger      time.Duration
	imu         sync.Mutex
	interests   map[string]*interest // by channel
	idle        map[string]*interest // the interests with no connection left
	toSubscribe []string             // channels waiting for the manager
	kick        chan struct{}        // wakes the manager
	managerDone chan struct{}
}

var _ herald.Broker = (*Broker)(nil)

// New connects to the Redis server at url (redis://[user:password@]host:port[/db],
// or rediss:// for TLS; go-redis's options such as dial_timeout may be
// given as query parameters) and returns once this node is subscribed, so
// that it receives what other nodes publish from then on. If ctx ends
// first, New gives up and reports the last error Redis gave.
func New(ctx context.Context, url string, opts Options) (*Broker, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	ropts, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: the broker URL is not valid (want redis://host:port or rediss://...): %s", redactError(err, url))
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Node == "" {
		opts.Node = randomNode()
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = DefaultHealthInterval
	}
	if opts.Linger <= 0 {
		opts.Linger = DefaultLinger
	}
	ropts.ClientName = clientName(opts.Node)
	// Never resend: a pipeline resent after its reply was lost may have
	// run already, and the broker must not duplicate (see the package
	// doc).
	ropts.MaxRetries = -1

	b := &Broker{
		client:      goredis.NewClient(ropts),
		log:         opts.Log.With("broker", "redis", "node", opts.Node, "addr", ropts.Addr),
		node:        opts.Node,
		ownHeader:   string(appendString(nil, opts.Node)),
		health:      opts.HealthInterval,
		prefix:      opts.Prefix,
		broadcastCh: opts.Prefix + "b",
		controlCh:   opts.Prefix + "c",
		queue:       make(chan item, opts.QueueSize),
		queueBytes:  int64(opts.QueueBytes),
		writerDone:  make(chan struct{}),
		done:        make(chan struct{}),
		readerDone:  make(chan struct{}),
		healthDone:  make(chan struct{}),
		linger:      opts.Linger,
		interests:   make(map[string]*interest),
		idle:        make(map[string]*interest),
		kick:        make(chan struct{}, 1),
		managerDone: make(chan struct{}),
	}
	b.state.init()
	b.wctx, b.wcancel = context.WithCancel(context.Background())
	go b.write()
	go b.read()
	go b.watch()
	go b.manage()

	if err := b.state.waitUp(ctx, b.done); err != nil {
		last := b.state.lastError()
		b.Close()
		if last != nil {
			return nil, fmt.Errorf("redis: not subscribed to %s: %w (last error: %v)", ropts.Addr, err, last)
		}
		return nil, fmt.Errorf("redis: not subscribed to %s: %w", ropts.Addr, err)
	}
	return b, nil
}

// Node returns the node's id on the bus.
func (b *Broker) Node() string { return b.node }

// Ready reports whether the broker can carry messages: nil when its
// subscription is in place and its last publish reached Redis, an
// EUnavailable error saying what is wrong otherwise. It does not block.
func (b *Broker) Ready() error {
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	return b.state.ready()
}

// Close stops the node's subscriptions (waiting for handler calls in
// progress, so not from inside a handler), sends what is still queued
// (giving up after a few seconds if Redis does not take it) and closes the
// connections. Later calls fail with ErrClosed. Close is idempotent.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		close(b.queue)
		b.mu.Unlock()
		close(b.done)

		// The reader ends once its PubSub is closed; no handler is
		// called after that.
		b.psMu.Lock()
		b.closing = true
		ps := b.ps
		b.psMu.Unlock()
		if ps != nil {
			_ = ps.Close()
		}
		<-b.readerDone
		<-b.managerDone

		b.subsMu.Lock()
		b.subsClosed = true
		subs := b.handlers()
		b.subs.Store(nil)
		b.subsMu.Unlock()
		for _, s := range subs {
			s.calls.Shut()
		}

		flush := time.AfterFunc(flushTimeout, b.wcancel)
		<-b.writerDone
		flush.Stop()
		b.wcancel()
		<-b.healthDone
		_ = b.client.Close()
	})
	return nil
}

// userChannel is the channel of user's messages and user controls. The
// id is base64url encoded so that any id, whatever bytes it holds, makes a
// plain channel name, with no glob character to trip a PSUBSCRIBE of an
// operator's tool.
func (b *Broker) userChannel(u herald.UserID) string {
	return b.prefix + "u:" + base64.RawURLEncoding.EncodeToString([]byte(u))
}

// clientName makes the Redis client name of a node: CLIENT SETNAME takes
// no spaces or control characters, so those become '_'.
func clientName(node string) string {
	b := []byte("herald-" + node)
	for i, c := range b {
		if c <= ' ' || c > '~' {
			b[i] = '_'
		}
	}
	return string(b)
}

// redactError returns err's text without the password of rawURL, which
// go-redis and net/url quote in their errors.
func redactError(err error, rawURL string) string {
	msg := err.Error()
	u, perr := neturl.Parse(rawURL)
	if perr != nil {
		return "the URL cannot be parsed"
	}
	if p, ok := u.User.Password(); ok && p != "" {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
	}
	return msg
}

func randomNode() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// linkState is what the broker knows of its link to Redis, for Ready,
// Subscribe and the log.
type linkState struct {
	mu        sync.Mutex
	subUp     bool
	everUp    bool
	upCh      chan struct{} // closed while the subscription is up
	lostCh    chan struct{} // closed when the subscription that is up is lost
	subErr    error         // why it is down
	downSince time.Time
	writeErr  error // the last publish failure, nil once one succeeds
	lastErr   error // the last error of any kind, for New's report
}

func (s *linkState) init() {
	s.upCh = make(chan struct{})
	s.lostCh = make(chan struct{})
	s.subErr = errors.New("not subscribed yet")
	s.downSince = time.Now()
}

// waitUp waits until the subscription is up, ctx ends or done is closed.
func (s *linkState) waitUp(ctx context.Context, done <-chan struct{}) error {
	s.mu.Lock()
	up := s.upCh
	s.mu.Unlock()
	select { // up wins over a ctx that is also done
	case <-up:
		return nil
	default:
	}
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-done:
		return ErrClosed
	}
}

// subscribed records that the subscription is in place and reports how
// long it was down, and whether it had been up before.
func (s *linkState) subscribed() (down time.Duration, again, changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subUp {
		return 0, false, false
	}
	s.subUp = true
	again = s.everUp
	s.everUp = true
	close(s.upCh)
	s.lostCh = make(chan struct{})
	return time.Since(s.downSince), again, true
}

// lost records that the subscription is down because of err, and reports
// whether it was up until now.
func (s *linkState) lost(err error) (changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err
	if !s.subUp {
		return false
	}
	s.subUp = false
	close(s.lostCh)
	s.upCh = make(chan struct{})
	s.subErr = err
	s.downSince = time.Now()
	return true
}

// wrote records the outcome of a pipeline and reports whether it changed
// the publishing state (from working to failing or back).
func (s *linkState) wrote(err error) (changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed = (s.writeErr == nil) != (err == nil)
	s.writeErr = err
	if err != nil {
		s.lastErr = err
	}
	return changed
}

func (s *linkState) writeFailing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeErr != nil
}

func (s *linkState) isUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subUp
}

// link reports whether the subscription is up and, if so, a channel
// closed when it is lost.
func (s *linkState) link() (up bool, lost <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subUp, s.lostCh
}

func (s *linkState) lastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

func (s *linkState) ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.subUp {
		return &herald.Error{Code: herald.EUnavailable, Message: fmt.Sprintf("redis: not subscribed for %v", time.Since(s.downSince).Round(time.Millisecond)), Err: s.subErr}
	}
	if s.writeErr != nil {
		return &herald.Error{Code: herald.EUnavailable, Message: "redis: publishing fails", Err: s.writeErr}
	}
	return nil
}
