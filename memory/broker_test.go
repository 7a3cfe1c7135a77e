package memory

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/brokertest"
)

func TestBrokerBehaviour(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, n int) []herald.Broker {
		bus := NewBus()
		nodes := make([]herald.Broker, n)
		for i := range nodes {
			nodes[i] = bus.Node()
		}
		return nodes
	})
}

// The bus is synchronous: when Publish, Broadcast or Control returns, every
// other node's handlers have run. Tests of other packages rely on it to
// assert without waiting.
func TestBrokerDeliversBeforeReturning(t *testing.T) {
	bus := NewBus()
	a, b := bus.Node(), bus.Node()
	rec := &brokertest.Recorder{}
	stop, err := b.Subscribe(context.Background(), rec)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx := context.Background()
	if err := a.Publish(ctx, []*herald.Message{brokertest.Msg("u", 1)}); err != nil {
		t.Fatal(err)
	}
	if err := a.Broadcast(ctx, &herald.Message{Data: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	if err := a.Control(ctx, herald.Control{Kind: herald.ControlDisconnectConn, Conn: "c"}); err != nil {
		t.Fatal(err)
	}
	if m, bc, c := len(rec.Messages()), len(rec.Broadcasts()), len(rec.Controls()); m != 1 || bc != 1 || c != 1 {
		t.Fatalf("after the calls returned: %d messages, %d broadcasts, %d controls; want 1 of each", m, bc, c)
	}
}

// Nodes of different buses are different clusters.
func TestBrokerBusesAreSeparate(t *testing.T) {
	a, b := NewBus().Node(), NewBus().Node()
	rec := &brokertest.Recorder{}
	stop, err := b.Subscribe(context.Background(), rec)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := a.Publish(context.Background(), []*herald.Message{brokertest.Msg("u", 1)}); err != nil {
		t.Fatal(err)
	}
	if n := rec.Calls(); n != 0 {
		t.Fatalf("a node of another bus got %d calls", n)
	}
}

// relay republishes what it receives on its own node, once: a handler that
// publishes from inside a call, as no lock is held while handlers run.
type relay struct {
	brokertest.Recorder
	node *Broker
	done atomic.Bool // not a sync.Once: the relayed message comes back into this handler while it relays
}

func (r *relay) HandleMessages(msgs []*herald.Message) {
	r.Recorder.HandleMessages(msgs)
	if r.done.Swap(true) {
		return
	}
	m := *msgs[0]
	m.ID += "-relayed"
	if err := r.node.Publish(context.Background(), []*herald.Message{&m}); err != nil {
		panic(err) // in the publisher's goroutine: fails the test loudly
	}
}

func TestBrokerHandlerMayPublish(t *testing.T) {
	bus := NewBus()
	a, b := bus.Node(), bus.Node()
	ra, rb := &relay{node: a}, &relay{node: b}
	for _, s := range []struct {
		n *Broker
		h herald.BrokerHandler
	}{{a, ra}, {b, rb}} {
		stop, err := s.n.Subscribe(context.Background(), s.h)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
	}
	if err := a.Publish(context.Background(), []*herald.Message{brokertest.Msg("u", 1)}); err != nil {
		t.Fatal(err)
	}
	// a → b, b relays → a, a relays → b; then both have relayed once.
	if got := len(rb.Messages()); got != 2 {
		t.Errorf("node b: %d messages, want 2", got)
	}
	if got := len(ra.Messages()); got != 1 {
		t.Errorf("node a: %d messages, want 1", got)
	}
}

// A node alone on the bus, or whose peers subscribe nothing, publishes
// without allocating: its cost must not show in a single-node deployment.
func TestBrokerPublishWithoutPeersAllocatesNothing(t *testing.T) {
	bus := NewBus()
	a := bus.Node()
	bus.Node() // a peer with no subscription costs nothing either
	stop, err := a.Subscribe(context.Background(), &brokertest.Recorder{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	msgs := []*herald.Message{brokertest.Msg("u", 1), brokertest.Msg("v", 1)}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		if err := a.Publish(ctx, msgs); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Publish without peers: %v allocations, want 0", allocs)
	}
}

// discard is a handler that does nothing, so a benchmark measures the bus.
type discard struct{}

func (discard) HandleMessages([]*herald.Message) {}
func (discard) HandleBroadcast(*herald.Message)  {}
func (discard) HandleControl(herald.Control)     {}

// BenchmarkBrokerPublish publishes a batch from one node with 0 or 2
// subscribed peers. With peers, the cost is the deep copy each peer gets.
func BenchmarkBrokerPublish(b *testing.B) {
	for _, peers := range []int{0, 2} {
		for _, size := range []int{1, 16} {
			b.Run(fmt.Sprintf("peers=%d/batch=%d", peers, size), func(b *testing.B) {
				bus := NewBus()
				pub := bus.Node()
				for range peers {
					stop, err := bus.Node().Subscribe(context.Background(), discard{})
					if err != nil {
						b.Fatal(err)
					}
					defer stop()
				}
				msgs := make([]*herald.Message, size)
				for i := range msgs {
					msgs[i] = brokertest.Msg(herald.UserID(fmt.Sprintf("user-%d", i)), 1)
				}
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if err := pub.Publish(ctx, msgs); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
