package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/cluster"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/memory"
	"github.com/herald-gw/herald/stream"
	"github.com/herald-gw/herald/wire"
)

// conn is a hub.Conn that records what reaches it.
type conn struct {
	id   herald.ConnID
	user herald.UserID
	at   time.Time
	h    *hub.Hub

	mu     sync.Mutex
	got    [][]byte
	closed uint16
	acked  atomic.Uint64
}

func (c *conn) ID() herald.ConnID   { return c.id }
func (c *conn) User() herald.UserID { return c.user }
func (c *conn) Format() wire.Format { return wire.FormatRaw }
func (c *conn) Info() herald.ConnInfo {
	return herald.ConnInfo{ID: c.id, User: c.user, Protocol: "raw", ConnectedAt: c.at, SourceIP: "127.0.0.1", UserAgent: "test"}
}
func (c *conn) Send(b []byte, _ uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, append([]byte(nil), b...))
	return true
}
func (c *conn) Acked() uint64 { return c.acked.Load() }

// ack acknowledges offset, as a herald.v1 client's ack does.
func (c *conn) ack(offset uint64) {
	c.acked.Store(offset)
	c.h.NotifyAck(c.user, offset)
}
func (c *conn) Close(code uint16, _ string) {
	c.mu.Lock()
	c.closed = code
	c.mu.Unlock()
	c.h.Remove(c)
}
func (c *conn) received() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.got...)
}
func (c *conn) closeCode() uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// node is one cluster member: a hub watched by a cluster.Node.
type node struct {
	*cluster.Node
	hub    *hub.Hub
	broker herald.Broker
	stream *stream.Service // the node's one, subscribed to the broker
	stop   func()
}

type fixture struct {
	t     *testing.T
	reg   herald.Registry
	bus   *memory.Bus
	store herald.Store
	n     int
}

func newFixture(t *testing.T, reg herald.Registry) *fixture {
	return &fixture{t: t, reg: reg, bus: memory.NewBus(), store: memory.New()}
}

// start runs a node named name until the test ends (or stop).
func (f *fixture) start(name string) *node {
	f.t.Helper()
	return f.startWith(name, f.bus.Node())
}

// startWith runs a node named name on broker b until the test ends (or
// stop).
func (f *fixture) startWith(name string, b herald.Broker) *node {
	f.t.Helper()
	m := cluster.New(cluster.Config{Node: name, Registry: f.reg, TTL: 3 * time.Second, Broker: b, FlushEvery: 5 * time.Millisecond})
	h := hub.New(0, hub.WithWatcher(m))
	st := stream.New(f.store, h, b, slog.New(slog.DiscardHandler), stream.WithCluster(m))
	stopSub, err := st.Subscribe(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx, h); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done; stopSub() }) }
	f.t.Cleanup(stop)
	return &node{Node: m, hub: h, broker: b, stream: st, stop: stop}
}

func (f *fixture) connect(n *node, user string) *conn {
	f.n++
	c := &conn{id: herald.ConnID(fmt.Sprintf("c%d", f.n)), user: herald.UserID(user), at: time.Unix(int64(1000+f.n), 0).UTC(), h: n.hub}
	n.hub.Add(c)
	return c
}

// eventually polls cond until it holds, failing after a generous bound:
// registry writes are batched, so what one node did shows on another a
// flush later.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ids(infos []herald.ConnInfo) string {
	s := ""
	for _, i := range infos {
		s += fmt.Sprintf("%s@%s ", i.ID, i.Node)
	}
	return s
}

func TestListsEveryNodesConnections(t *testing.T) {
	f := newFixture(t, memory.NewRegistry(3*time.Second, nil))
	a, b := f.start("a"), f.start("b")
	f.connect(a, "u")
	f.connect(b, "u")
	c3 := f.connect(b, "u")
	f.connect(b, "v")
	ctx := context.Background()
	for _, n := range []*node{a, b} {
		eventually(t, "node "+n.Name()+" lists all of u's connections", func() bool {
			got, err := n.UserConns(ctx, "u")
			return err == nil && ids(got) == "c1@a c2@b c3@b "
		})
	}
	counts, err := a.CountElsewhere(ctx, []herald.UserID{"u", "v", "w"})
	if err != nil || counts["u"] != 2 || counts["v"] != 1 || len(counts) != 2 {
		t.Fatalf("CountElsewhere from a = %v, %v", counts, err)
	}
	if info, err := a.Conn(ctx, "c3"); err != nil || info.Node != "b" || info.UserAgent != "test" {
		t.Fatalf("a.Conn(c3) = %+v, %v", info, err)
	}
	// A node does not look up what it would hold itself.
	if _, err := b.Conn(ctx, "c3"); herald.ErrorCodeOf(err) != herald.ENotFound {
		t.Fatalf("b.Conn(c3) = %v, want not found (b's hub answers for it)", err)
	}

	c3.Close(wire.CloseDisconnected, "bye")
	eventually(t, "c3 leaves the registry", func() bool {
		_, err := a.Conn(ctx, "c3")
		return herald.ErrorCodeOf(err) == herald.ENotFound
	})
}

func TestRepliesCountTheCluster(t *testing.T) {
	reg := &counting{Registry: memory.NewRegistry(3*time.Second, nil)}
	f := newFixture(t, reg)
	a, b := f.start("a"), f.start("b")
	f.connect(a, "u")
	f.connect(b, "u")
	f.connect(b, "u")
	// Counted from the replica, which the replies below use: the registry
	// may list a connection a moment before the replica counts it.
	eventually(t, "b's connections are counted", func() bool { return fromReplica(reg, a, "u", 2, 2) })
	st := stream.New(f.store, a.hub, a.broker, slog.New(slog.DiscardHandler), stream.WithCluster(a))
	res, err := st.Publish(context.Background(), []*herald.Message{{User: "u", Data: []byte(`1`)}})
	if err != nil || res[0].Connections != 3 {
		t.Fatalf("Publish reached %+v, %v; want 3 connections", res, err)
	}
	if m, n := st.Broadcast(context.Background(), []byte(`2`)); m == nil || n != 3 {
		t.Fatalf("Broadcast reached %d, want 3", n)
	}
	if n := st.DisconnectUser(context.Background(), "u"); n != 3 {
		t.Fatalf("DisconnectUser closed %d, want 3", n)
	}
}

func TestPostAndDisconnectAnotherNodesConnection(t *testing.T) {
	f := newFixture(t, memory.NewRegistry(3*time.Second, nil))
	a, b := f.start("a"), f.start("b")
	c := f.connect(b, "u")
	ctx := context.Background()
	if err := a.Post(ctx, c.ID(), []byte(`{"hi":1}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the post reaches b's connection", func() bool {
		got := c.received()
		// A WebSocket text frame: header bytes, then the payload as posted.
		return len(got) == 1 && bytes.HasSuffix(got[0], []byte(`{"hi":1}`))
	})
	if err := a.Disconnect(ctx, c.ID(), wire.CloseDisconnected, "bye"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b closes its connection", func() bool { return c.closeCode() == wire.CloseDisconnected })
}

func TestLeaveAtShutdown(t *testing.T) {
	f := newFixture(t, memory.NewRegistry(time.Hour, nil))
	a, b := f.start("a"), f.start("b")
	f.connect(b, "u")
	ctx := context.Background()
	eventually(t, "b's connection is listed", func() bool {
		l, _ := a.UserConns(ctx, "u")
		return len(l) == 1
	})
	b.stop()
	// With an hour's TTL only the Leave can have taken it out.
	if l, err := a.UserConns(ctx, "u"); err != nil || len(l) != 0 {
		t.Fatalf("after b left, a lists %s (%v)", ids(l), err)
	}
}

// clock is a test clock the memory registry's leases run on.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestDeadNodeExpires(t *testing.T) {
	var clk clock
	clk.ns.Store(time.Unix(1e9, 0).UnixNano())
	reg := memory.NewRegistry(3*time.Second, clk.now)
	f := newFixture(t, reg)
	a := f.start("a")
	ctx := context.Background()
	// "dead" registered a connection and then stopped renewing its
	// lease, as a killed process does.
	if _, err := reg.Heartbeat(ctx, "dead"); err != nil {
		t.Fatal(err)
	}
	if err := reg.Sync(ctx, "dead", []herald.ConnInfo{{ID: "ghost", User: "u"}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Conn(ctx, "ghost"); err != nil {
		t.Fatalf("a live node's connection: %v", err)
	}
	clk.advance(3 * time.Second)
	if _, err := a.Conn(ctx, "ghost"); herald.ErrorCodeOf(err) != herald.ENotFound {
		t.Fatalf("a dead node's connection after the TTL: %v, want not found", err)
	}
	if l, _ := a.UserConns(ctx, "u"); len(l) != 0 {
		t.Fatalf("a dead node's connection is listed: %s", ids(l))
	}
}

// flaky is a registry whose writes fail while down is set.
type flaky struct {
	herald.Registry
	down      atomic.Bool
	syncFails atomic.Int32
}

var errDown = herald.Errorf(herald.EUnavailable, "registry down")

func (r *flaky) Heartbeat(ctx context.Context, node string) (bool, error) {
	if r.down.Load() {
		return false, errDown
	}
	return r.Registry.Heartbeat(ctx, node)
}

func (r *flaky) Sync(ctx context.Context, node string, o []herald.ConnInfo, c []herald.ConnID) error {
	if r.down.Load() {
		r.syncFails.Add(1)
		return errDown
	}
	return r.Registry.Sync(ctx, node, o, c)
}

func (r *flaky) Reset(ctx context.Context, node string, conns []herald.ConnInfo) error {
	if r.down.Load() {
		return errDown
	}
	return r.Registry.Reset(ctx, node, conns)
}

func TestRegistryOutageHeals(t *testing.T) {
	reg := &flaky{Registry: memory.NewRegistry(time.Hour, nil)}
	f := newFixture(t, reg)
	a, b := f.start("a"), f.start("b")
	ctx := context.Background()
	f.connect(b, "u")
	eventually(t, "b's first connection is listed", func() bool {
		l, _ := a.UserConns(ctx, "u")
		return len(l) == 1
	})
	reg.down.Store(true)
	// Opened and closed while the registry is down: the writes fail and
	// are dropped.
	c2 := f.connect(b, "u")
	f.connect(b, "u")
	c2.Close(wire.CloseDisconnected, "bye")
	eventually(t, "a write fails and is dropped", func() bool { return reg.syncFails.Load() > 0 })
	reg.down.Store(false)
	// The next heartbeat (every TTL/3 = 1s here) resets b's entries from
	// its hub.
	eventually(t, "b's entries are reset to what its hub holds", func() bool {
		l, err := a.UserConns(ctx, "u")
		return err == nil && ids(l) == "c1@b c3@b "
	})
}

func TestAddedBeforeRemovedEvenWhenRacing(t *testing.T) {
	f := newFixture(t, memory.NewRegistry(time.Hour, nil))
	a, b := f.start("a"), f.start("b")
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			c := &conn{id: herald.ConnID(fmt.Sprintf("r%d", i)), user: "u", h: b.hub}
			go c.Close(wire.CloseDisconnected, "racing") // may run before, during or after Add
			b.hub.Add(c)
			b.hub.Remove(c)
		})
	}
	wg.Wait()
	keep := f.connect(b, "u")
	eventually(t, "only the kept connection is listed", func() bool {
		l, err := a.UserConns(context.Background(), "u")
		return err == nil && len(l) == 1 && l[0].ID == keep.ID()
	})
}
