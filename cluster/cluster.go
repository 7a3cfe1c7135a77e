// Package cluster makes one node's hub part of a cluster: it keeps the
// cluster's connection registry (herald.Registry) and the broker's per-user
// subscriptions (herald.BrokerInterest) in step with the connections the
// hub holds, and answers for connections other nodes hold — listing them,
// counting them, and reaching them through the broker's controls.
//
// A Node is the hub's Watcher: the hub tells it of every connection that
// joins or leaves. Registry writes are batched (Run flushes them every
// FlushEvery), so a connect or disconnect never waits for the database; a
// broker subscription is confirmed before the connection joins the hub, so
// the session, which reads its stream's end after joining, misses nothing
// that the other nodes publish.
//
// Nothing here is needed on a single node: cmd/herald wires a Node only
// when a registry is configured.
package cluster

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/coalesce"
	"github.com/herald-gw/herald/hub"
)

// Config is what a Node needs.
type Config struct {
	// Node names this node in the registry and the broker (HERALD_NODE_ID).
	Node string
	// Registry is the cluster's connection directory.
	Registry herald.Registry
	// TTL is the registry's lease: Run renews it every third of it.
	// herald.DefaultRegistryTTL when zero.
	TTL time.Duration
	// Broker carries the controls that act on other nodes' connections;
	// when it implements herald.BrokerInterest, the Node watches the user
	// of every connection it holds.
	Broker herald.Broker
	// FlushEvery is how often opened and closed connections are written
	// to the registry: how long a new connection may stay unlisted
	// elsewhere. 100 ms when zero.
	FlushEvery time.Duration
	// WatchTimeout bounds a broker subscription on connect; 5 s when zero.
	WatchTimeout time.Duration
	Log          *slog.Logger
}

// Node is one node's membership of the cluster. Create it with New, pass it
// to hub.New as the hub's Watcher, then call Run with the hub.
type Node struct {
	cfg      Config
	now      func() time.Time      // the replica's clock; a test's own
	interest herald.BrokerInterest // nil: the broker delivers everything everywhere

	mu      sync.Mutex
	hub     *hub.Hub // set by Run; read by the Directory
	opened  map[herald.ConnID]herald.ConnInfo
	closed  []herald.ConnID
	syncErr bool // a Sync failed: the registry may lack entries until a Reset

	counts *coalesce.Batcher[herald.UserID, int] // the registry's counts, queries shared

	// What this node tells the others of its counts (counts.go), under mu.
	inc      string                // this process's incarnation: random, as a store epoch
	local    map[herald.UserID]int // this node's connections per user
	pend     map[herald.UserID]int // changes since the last delta sent
	seq      uint64                // deltas and snapshots sent
	wantSnap bool                  // another node asked for a snapshot

	// The replica of the others' counts (counts.go).
	pmu          sync.Mutex
	peers        map[string]*peer
	members      []string // the other nodes with a live lease, at the last beat
	membersKnown bool
	askAll       bool // ask every node for a snapshot at the next flush

	fromReplica, fromRegistry atomic.Uint64 // counts answered by each
}

// New returns a Node for cfg.
func New(cfg Config) *Node {
	if cfg.TTL <= 0 {
		cfg.TTL = herald.DefaultRegistryTTL
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = 100 * time.Millisecond
	}
	if cfg.WatchTimeout <= 0 {
		cfg.WatchTimeout = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	n := &Node{
		cfg: cfg, now: time.Now, opened: make(map[herald.ConnID]herald.ConnInfo),
		inc: herald.NewEpoch(), local: make(map[herald.UserID]int), pend: make(map[herald.UserID]int),
		peers: make(map[string]*peer), askAll: true,
	}
	n.interest, _ = cfg.Broker.(herald.BrokerInterest)
	n.counts = coalesce.New(n.countRegistry)
	return n
}

// Name is the node's name in the cluster.
func (n *Node) Name() string { return n.cfg.Node }

// Added implements hub.Watcher: c is about to join the hub.
func (n *Node) Added(c hub.Conn) {
	if n.interest != nil {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.WatchTimeout)
		err := n.interest.Watch(ctx, c.User())
		cancel()
		if err != nil {
			// The broker subscribes when it is back and then has every
			// session check the store (herald.BrokerResync).
			n.cfg.Log.Warn("broker subscription for a new connection failed; it catches up when the broker is back", "conn", c.ID(), "err", err)
		}
	}
	info := c.Info()
	info.Node = n.cfg.Node
	n.mu.Lock()
	n.opened[c.ID()] = info
	n.counted(c.User(), +1)
	n.mu.Unlock()
}

// Removed implements hub.Watcher: c left the hub.
func (n *Node) Removed(c hub.Conn) {
	if n.interest != nil {
		n.interest.Unwatch(c.User())
	}
	// Taken back even when its opening is still pending: a Reset may
	// have written it from the hub meanwhile.
	n.mu.Lock()
	delete(n.opened, c.ID())
	n.closed = append(n.closed, c.ID())
	n.counted(c.User(), -1)
	n.mu.Unlock()
}

// Run keeps the registry in step with h until ctx is done, then takes the
// node out of it (Leave). Call it once, after the hub exists and before
// it takes connections; it returns when the node has left.
func (n *Node) Run(ctx context.Context, h *hub.Hub) {
	n.mu.Lock()
	n.hub = h
	n.mu.Unlock()
	beat := time.NewTicker(n.cfg.TTL / 3)
	defer beat.Stop()
	flush := time.NewTicker(n.cfg.FlushEvery)
	defer flush.Stop()
	var failing bool // the registry is unreachable: log once per incident
	heartbeat := func() {
		// The counts go out before the registry lists anything new (the
		// Reset below, the Syncs of the flush), so that another node's
		// replica knows of a connection no later than its registry does.
		n.sendCounts(ctx, true)
		fresh, err := n.cfg.Registry.Heartbeat(ctx, n.cfg.Node)
		if err == nil {
			n.mu.Lock()
			fresh = fresh || n.syncErr
			n.mu.Unlock()
		}
		if err == nil && fresh {
			err = n.reset(ctx, h)
		}
		n.refreshMembers(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			failing = true
			n.cfg.Log.Error("connection registry unreachable: other nodes stop listing this node's connections after the TTL", "ttl", n.cfg.TTL, "err", err)
		case err == nil && failing:
			failing = false
			n.cfg.Log.Info("connection registry reachable again; this node's connections are listed again")
		}
	}
	heartbeat()
	for {
		select {
		case <-ctx.Done():
			n.leave()
			return
		case <-beat.C:
			heartbeat()
		case <-flush.C:
			n.sendCounts(ctx, false) // first: see heartbeat
			n.flush(ctx)
		}
	}
}

// flush writes the connections opened and closed since the last flush.
func (n *Node) flush(ctx context.Context) {
	n.mu.Lock()
	if len(n.opened) == 0 && len(n.closed) == 0 {
		n.mu.Unlock()
		return
	}
	opened := make([]herald.ConnInfo, 0, len(n.opened))
	for _, info := range n.opened {
		opened = append(opened, info)
	}
	closed := n.closed
	n.opened = make(map[herald.ConnID]herald.ConnInfo)
	n.closed = nil
	n.mu.Unlock()
	if err := n.cfg.Registry.Sync(ctx, n.cfg.Node, opened, closed); err != nil {
		// What was lost here is restored by the Reset of the next
		// successful heartbeat, from the hub itself.
		n.mu.Lock()
		n.syncErr = true
		n.mu.Unlock()
		if ctx.Err() == nil {
			n.cfg.Log.Debug("connection registry sync failed; the next heartbeat resets this node's entries", "err", err)
		}
	}
}

// reset replaces the node's registry entries with what the hub holds. The
// pending changes stay pending: a connection whose Added came before this
// snapshot but which joined the hub after it is written by the next flush.
func (n *Node) reset(ctx context.Context, h *hub.Hub) error {
	n.mu.Lock()
	n.syncErr = false
	n.mu.Unlock()
	conns := make([]herald.ConnInfo, 0, h.Len())
	h.Each(func(c hub.Conn) {
		info := c.Info()
		info.Node = n.cfg.Node
		conns = append(conns, info)
	})
	if err := n.cfg.Registry.Reset(ctx, n.cfg.Node, conns); err != nil {
		n.mu.Lock()
		n.syncErr = true
		n.mu.Unlock()
		return err
	}
	n.cfg.Log.Info("connection registry: this node's entries reset", "connections", len(conns))
	return nil
}

// leave takes the node out of the registry at shutdown, so that its
// connections stop being listed at once rather than after the TTL.
func (n *Node) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n.sendCountsMsg(ctx, countsMsg{Type: countsLeave})
	if err := n.cfg.Registry.Leave(ctx, n.cfg.Node); err != nil {
		n.cfg.Log.Warn("could not leave the connection registry; entries expire after the TTL", "ttl", n.cfg.TTL, "err", err)
	}
}
