// Package stream is the delivery path between the API and the hub: it gives
// each message an id, appends it to its user's stream in the Store (so it
// has an offset and survives reconnects and restarts), and once the Store
// committed it, hands it to this node's hub and to the Broker for the
// hubs of the other nodes. It also receives what other nodes publish and
// hands that to this node's hub.
//
// Nothing here keeps per-user order: two Publish calls racing for one user
// may reach the hub in either order, and a broker may lose or reorder
// messages. Sessions put that right by offset (package session): they
// drop what they have and fetch from the Store what they lack.
package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/wire"
)

// Service publishes messages. It is safe for concurrent use.
type Service struct {
	store   herald.Store
	hub     *hub.Hub
	broker  herald.Broker
	cluster Cluster // nil: this node is alone
	log     *slog.Logger
	now     func() time.Time

	// Broadcasts write in the background, one after another in the order
	// they were accepted: each waits for the previous one's done.
	bmu       sync.Mutex
	lastBcast chan struct{} // closed when the last accepted broadcast is written
	bslots    chan struct{} // bounds the broadcasts accepted and not yet written

	acks ackWaits // ?wait=ack waiters for other nodes' answers (ackwait.go)
}

// MaxPendingBroadcasts is how many broadcasts a node accepts before their
// writes are done; one more waits for the oldest to finish. Each holds
// only its message, so the bound is about not piling up goroutines when a
// sender outpaces the sockets.
const MaxPendingBroadcasts = 16

// Cluster counts the connections the other nodes of a cluster hold
// (cluster.Node), so that replies count the whole cluster.
type Cluster interface {
	// CountElsewhere returns how many connections each of users holds
	// on the other nodes; users with none are absent.
	CountElsewhere(ctx context.Context, users []herald.UserID) (map[herald.UserID]int, error)
	// TotalElsewhere returns how many connections the other nodes hold.
	TotalElsewhere(ctx context.Context) (int, error)
}

// CountsHandler may be implemented by a Cluster that keeps a replica of
// the other nodes' counts (cluster.Node): the Service's subscription hands
// it what they send with herald.ControlCounts, and, when it also
// implements herald.BrokerResync, tells it of a restored subscription.
type CountsHandler interface {
	HandleCounts(data []byte)
}

// Option configures a Service.
type Option func(*Service)

// WithCluster has the counts of Publish and DisconnectUser include the
// connections c says the other nodes hold.
func WithCluster(c Cluster) Option { return func(s *Service) { s.cluster = c } }

// New returns a Service over store, this node's hub h and broker b, which
// carries what this node publishes to the other nodes.
func New(store herald.Store, h *hub.Hub, b herald.Broker, log *slog.Logger, opts ...Option) *Service {
	s := &Service{store: store, hub: h, broker: b, log: log, now: time.Now, bslots: make(chan struct{}, MaxPendingBroadcasts)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// elsewhere is how many connections each of users holds on the other
// nodes, or nil when that is unknown (a single node, or the registry
// failed: the counts are then this node's, which the log says).
func (s *Service) elsewhere(ctx context.Context, users []herald.UserID) map[herald.UserID]int {
	if s.cluster == nil {
		return nil
	}
	m, err := s.cluster.CountElsewhere(ctx, users)
	if err != nil {
		s.log.Warn("connection counts are this node's only: the registry failed", "err", err)
		return nil
	}
	return m
}

// Publish stores msgs (one durable batch), then queues each to its user's
// open connections on this node and hands the batch to the broker for the
// other nodes. When it returns without error every message has an ID and
// Offset and is committed; the results say where each went live on this
// node. A message is never on a socket before it is durable, so a client
// that resumes from any offset it saw cannot miss what came before.
func (s *Service) Publish(ctx context.Context, msgs []*herald.Message) ([]hub.Result, error) {
	now := s.now()
	for _, m := range msgs {
		if m.ID == "" {
			m.ID = herald.NewMessageID(now)
		}
		if m.Time.IsZero() {
			m.Time = now
		}
	}
	if err := s.store.Append(ctx, msgs); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	res := make([]hub.Result, len(msgs))
	for i, m := range msgs {
		res[i] = s.hub.SendUser(m)
	}
	// The messages are committed: a broker failure delays them on the other
	// nodes (until the next message reveals the gap, or a reconnect) but
	// loses nothing, so it is logged, not reported as a failed publish.
	if err := s.broker.Publish(context.WithoutCancel(ctx), msgs); err != nil {
		s.log.Warn("broker publish failed; other nodes catch up from the store", "messages", len(msgs), "err", err)
	}
	if s.cluster != nil {
		users := make([]herald.UserID, len(msgs))
		for i, m := range msgs {
			users[i] = m.User
		}
		if n := s.elsewhere(ctx, users); n != nil {
			for i, m := range msgs {
				res[i].Connections += n[m.User]
			}
		}
	}
	return res, nil
}

// Broadcast sends data to every open connection on this node and, through
// the broker, on the others. Broadcasts are not stored: there is no
// per-user stream for "everyone".
//
// It returns once the message is accepted, not when it is written: this
// node's socket writes run in the background (at 10,000 connections they
// take tens of milliseconds, growing with the count), one broadcast after
// another in the order they were accepted. The count is of the
// connections open when it was accepted — this node's, and what the
// registry lists on the others; one that closes meanwhile misses it. When
// MaxPendingBroadcasts are still being written, Broadcast waits for the
// oldest (or for ctx, and then sends nothing and returns a nil message).
func (s *Service) Broadcast(ctx context.Context, data []byte) (*herald.Message, int) {
	select {
	case s.bslots <- struct{}{}:
	case <-ctx.Done():
		return nil, 0
	}
	now := s.now()
	m := &herald.Message{ID: herald.NewMessageID(now), Time: now, Data: data}
	n := s.hub.Len()
	s.bmu.Lock()
	prev := s.lastBcast
	done := make(chan struct{})
	s.lastBcast = done
	s.bmu.Unlock()
	go func() {
		defer func() { <-s.bslots }()
		defer close(done)
		if prev != nil {
			<-prev
		}
		s.hub.Broadcast(m)
	}()
	if err := s.broker.Broadcast(context.WithoutCancel(ctx), m); err != nil {
		s.log.Warn("broker broadcast failed", "err", err)
	}
	if s.cluster != nil {
		if others, err := s.cluster.TotalElsewhere(ctx); err != nil {
			s.log.Warn("broadcast count is this node's only: the registry failed", "err", err)
		} else {
			n += others
		}
	}
	return m, n
}

// DisconnectUser closes every connection of user, here and on the other
// nodes, with 4003, and reports how many there were in the cluster.
func (s *Service) DisconnectUser(ctx context.Context, user herald.UserID) int {
	const reason = "disconnected by the server"
	// Counted before the close, which the other nodes carry out later.
	others := s.elsewhere(ctx, []herald.UserID{user})[user]
	n := others + s.hub.CloseUser(user, wire.CloseDisconnected, reason)
	c := herald.Control{Kind: herald.ControlDisconnectUser, User: user, Code: wire.CloseDisconnected, Reason: reason}
	if err := s.broker.Control(context.WithoutCancel(ctx), c); err != nil {
		s.log.Warn("broker control failed", "kind", c.Kind, "err", err)
	}
	return n
}

// push sends a control message to every connection of user, here and on
// the other nodes.
func (s *Service) push(ctx context.Context, user herald.UserID, typ string, body []byte) {
	s.hub.SendControl(user, typ, body)
	c := herald.Control{Kind: herald.ControlPush, User: user, Data: body}
	if err := s.broker.Control(context.WithoutCancel(ctx), c); err != nil {
		s.log.Warn("broker control failed", "kind", c.Kind, "err", err)
	}
}

// Subscribe hands what the other nodes publish to this node's hub until
// stop is called.
func (s *Service) Subscribe(ctx context.Context) (stop func(), err error) {
	r := remote{s: s}
	r.counts, _ = s.cluster.(CountsHandler)
	return s.broker.Subscribe(ctx, r)
}

// remote delivers what other nodes publish to this node's hub, and their
// counts to the cluster's replica.
type remote struct {
	s      *Service
	counts CountsHandler // nil: nobody keeps a replica
}

func (r remote) HandleMessages(msgs []*herald.Message) {
	for _, m := range msgs {
		r.s.hub.SendUser(m)
	}
}

func (r remote) HandleBroadcast(m *herald.Message) { r.s.hub.Broadcast(m) }

// HandleResubscribed implements herald.BrokerResync: after the broker lost
// its subscription and got it back, every connection on this node checks
// the Store for what it missed meanwhile, instead of waiting for its
// user's next message to reveal the gap. It runs in the background, one
// Store read per connection.
func (r remote) HandleResubscribed() {
	if rs, ok := r.counts.(herald.BrokerResync); ok {
		rs.HandleResubscribed()
	}
	go r.s.hub.Each(func(c hub.Conn) {
		if rc, ok := c.(interface{ Recheck() }); ok {
			rc.Recheck()
		}
	})
}

func (r remote) HandleControl(c herald.Control) {
	switch c.Kind {
	case herald.ControlPush:
		var head struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(c.Data, &head) == nil && head.Type != "" {
			r.s.hub.SendControl(c.User, head.Type, c.Data)
		}
	case herald.ControlDisconnectUser:
		r.s.hub.CloseUser(c.User, c.Code, c.Reason)
	case herald.ControlPostToConn:
		if conn := r.s.hub.Get(c.Conn); conn != nil {
			hub.Post(conn, c.Data, time.Now())
		}
	case herald.ControlDisconnectConn:
		if conn := r.s.hub.Get(c.Conn); conn != nil {
			conn.Close(c.Code, c.Reason)
		}
	case herald.ControlCounts:
		if r.counts != nil {
			r.counts.HandleCounts(c.Data)
		}
	case herald.ControlAckWait:
		r.s.watchAcks(c)
	case herald.ControlAcked:
		r.s.acked(c)
	case herald.ControlAckConn:
		// Counted only for the connection's own user, as POST /v1/ack
		// does on the node holding it; an offset beyond what was sent to
		// the connection is refused by Ack and so not counted either.
		a, ok := r.s.hub.Get(c.Conn).(hub.Acker)
		if !ok || a.User() != c.User {
			return
		}
		if off, err := strconv.ParseUint(string(c.Data), 10, 64); err == nil {
			_ = a.Ack(off)
		}
	}
}
