package cluster_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/memory"
	"github.com/herald-gw/herald/wire"
)

// counting is a registry that counts the reads a reply's count makes.
type counting struct {
	herald.Registry
	reads atomic.Int64
}

func (r *counting) Count(ctx context.Context, users []herald.UserID, except string) (map[herald.UserID]int, error) {
	r.reads.Add(1)
	return r.Registry.Count(ctx, users, except)
}

func (r *counting) Total(ctx context.Context, except string) (int, error) {
	r.reads.Add(1)
	return r.Registry.Total(ctx, except)
}

// fromReplica reports whether n counts u as want, and total as wantTotal,
// without reading the registry: from its replica of the others' counts.
func fromReplica(reg *counting, n *node, u herald.UserID, want, wantTotal int) bool {
	before := reg.reads.Load()
	m, err := n.CountElsewhere(context.Background(), []herald.UserID{u, "nobody"})
	if err != nil || m[u] != want || len(m) != min(want, 1) {
		return false
	}
	total, err := n.TotalElsewhere(context.Background())
	return err == nil && total == wantTotal && reg.reads.Load() == before
}

// TestRepliesCountFromTheReplica: once every node heard from the others,
// replies count the cluster from the replica, with no registry read, and
// it follows connections opening and closing on the other nodes.
func TestRepliesCountFromTheReplica(t *testing.T) {
	reg := &counting{Registry: memory.NewRegistry(3*time.Second, nil)}
	f := newFixture(t, reg)
	a, b, c := f.start("a"), f.start("b"), f.start("c")
	f.connect(b, "u")
	f.connect(c, "u")
	cv := f.connect(c, "v")
	eventually(t, "a counts b's and c's connections from its replica", func() bool {
		return fromReplica(reg, a, "u", 2, 3)
	})
	eventually(t, "b counts c's from its replica", func() bool { return fromReplica(reg, b, "u", 1, 2) })

	cv.Close(wire.CloseDisconnected, "bye")
	f.connect(b, "u")
	eventually(t, "a's replica follows", func() bool { return fromReplica(reg, a, "u", 3, 3) })
	if !fromReplica(reg, a, "v", 0, 3) {
		t.Fatal("a still counts v's closed connection")
	}

	// c stops: it says so, and a's replica drops it at once.
	c.stop()
	eventually(t, "a stops counting c's connections", func() bool { return fromReplica(reg, a, "u", 2, 2) })
}

// lossy is a broker that drops the counts controls while drop is set, as
// a broker may (best effort): the fault the replica must heal from.
type lossy struct {
	herald.Broker
	drop    atomic.Bool
	dropped atomic.Int64
}

func (l *lossy) Control(ctx context.Context, c herald.Control) error {
	if c.Kind == herald.ControlCounts && l.drop.Load() {
		l.dropped.Add(1)
		return nil
	}
	return l.Broker.Control(ctx, c)
}

// TestReplicaHealsALostDelta: a node whose counts were lost is counted
// from the registry until the gap shows and its snapshot arrives, then
// from the replica again, right.
func TestReplicaHealsALostDelta(t *testing.T) {
	reg := &counting{Registry: memory.NewRegistry(3*time.Second, nil)}
	f := newFixture(t, reg)
	bus := &lossy{Broker: f.bus.Node()}
	a, b := f.start("a"), f.startWith("b", bus)
	f.connect(b, "u")
	eventually(t, "a counts b's connection from its replica", func() bool { return fromReplica(reg, a, "u", 1, 1) })

	bus.drop.Store(true)
	f.connect(b, "u")
	eventually(t, "b's delta is lost", func() bool { return bus.dropped.Load() > 0 })
	bus.drop.Store(false)
	f.connect(b, "u")
	// The next delta (or b's next beat) shows a the gap; a asks b for a
	// snapshot. Meanwhile a's counts come from the registry, and right.
	eventually(t, "a counts b's three connections from its replica again", func() bool { return fromReplica(reg, a, "u", 3, 3) })
}

// TestReplicaWaitsForASilentMember: a node the registry lists that has not
// been heard from (an older version, a broker cut) is counted from the
// registry.
func TestReplicaWaitsForASilentMember(t *testing.T) {
	reg := &counting{Registry: memory.NewRegistry(time.Hour, nil)}
	f := newFixture(t, reg)
	ctx := context.Background()
	if _, err := reg.Heartbeat(ctx, "silent"); err != nil {
		t.Fatal(err)
	}
	if err := reg.Sync(ctx, "silent", []herald.ConnInfo{{ID: "s1", User: "u"}}, nil); err != nil {
		t.Fatal(err)
	}
	a, b := f.start("a"), f.start("b")
	f.connect(b, "u")
	eventually(t, "a counts both nodes' connections", func() bool {
		m, err := a.CountElsewhere(ctx, []herald.UserID{"u"})
		return err == nil && m["u"] == 2
	})
	// a follows b, but not "silent": its replica is incomplete, so unused.
	before := reg.reads.Load()
	if m, err := a.CountElsewhere(ctx, []herald.UserID{"u"}); err != nil || m["u"] != 2 || reg.reads.Load() == before {
		t.Fatalf("a counted %v (%v) with %d registry reads; want 2 from the registry", m, err, reg.reads.Load()-before)
	}
}
