package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/memory"
)

// TestWaitAckCountsOtherNodes: a ?wait=ack notify on node a returns when
// the user's connection on node b acknowledges the offset, and counts it
// with a's own; without any ack it waits out its time and still counts
// the connections of the whole cluster.
func TestWaitAckCountsOtherNodes(t *testing.T) {
	reg := &counting{Registry: memory.NewRegistry(3*time.Second, nil)}
	f := newFixture(t, reg)
	a, b, c := f.start("a"), f.start("b"), f.start("c")
	f.connect(a, "u") // never acks
	onB := f.connect(b, "u")
	f.connect(c, "u") // never acks
	ctx := context.Background()
	// From the replica: the registry may list a connection a moment
	// before the replica counts it, never the other way round for long.
	eventually(t, "a counts b's and c's connections", func() bool { return fromReplica(reg, a, "u", 2, 2) })
	st := a.stream
	res, err := st.Publish(ctx, []*herald.Message{{User: "u", Data: []byte(`1`)}})
	if err != nil || res[0].Connections != 3 {
		t.Fatalf("Publish: %+v, %v", res, err)
	}
	type result struct{ conns, acked int }
	got := make(chan result, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		conns, acked := st.WaitAck(wctx, "u", 1)
		got <- result{conns, acked}
	}()
	// b's connection acks: possibly before b heard of the wait (a
	// control is not ordered with anything), which it must see too.
	onB.ack(1)
	select {
	case r := <-got:
		if r.conns != 3 || r.acked != 1 {
			t.Fatalf("WaitAck = %d connections, %d acked; want 3, 1", r.conns, r.acked)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("WaitAck did not return after b's connection acked")
	}

	// Nobody acks offset 2: the wait ends with its context.
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if conns, acked := st.WaitAck(wctx, "u", 2); conns != 3 || acked != 0 {
		t.Fatalf("WaitAck without an ack = %d, %d; want 3, 0", conns, acked)
	}
}
