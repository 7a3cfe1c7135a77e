package stream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/memory"
	"github.com/herald-gw/herald/session"
	"github.com/herald-gw/herald/stream"
	"github.com/herald-gw/herald/wire"
)

// recorder is a session transport that keeps the offsets of the herald.v1
// messages written to it.
type recorder struct {
	mu      sync.Mutex
	offsets []uint64
	types   []string
}

func (r *recorder) Write(b []byte) bool {
	var m struct {
		Type   string `json:"type"`
		Offset uint64 `json:"offset"`
	}
	p := b[2:] // the test's messages are short: a 2-byte frame header
	if b[1]&0x7F == 126 {
		p = b[4:]
	}
	if json.Unmarshal(p, &m) == nil {
		r.mu.Lock()
		r.types = append(r.types, m.Type)
		if m.Type == "message" {
			r.offsets = append(r.offsets, m.Offset)
		}
		r.mu.Unlock()
	}
	return true
}
func (r *recorder) Pending() (int, int)  { return 0, 0 }
func (r *recorder) Ping()                {}
func (r *recorder) Close(uint16, string) {}
func (r *recorder) Bidirectional() bool  { return true }

func (r *recorder) got() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.offsets)
}

// lossy drops the publications of the offsets in drop on their way to this
// node: a broker that lost them (a restart, a partition).
type lossy struct {
	herald.Broker
	drop map[uint64]bool
}

func (l lossy) Subscribe(ctx context.Context, h herald.BrokerHandler) (func(), error) {
	return l.Broker.Subscribe(ctx, lossyHandler{h, l.drop})
}

type lossyHandler struct {
	herald.BrokerHandler
	drop map[uint64]bool
}

func (l lossyHandler) HandleMessages(msgs []*herald.Message) {
	var kept []*herald.Message
	for _, m := range msgs {
		if !l.drop[m.Offset] {
			kept = append(kept, m)
		}
	}
	if len(kept) > 0 {
		l.BrokerHandler.HandleMessages(kept)
	}
}

type node struct {
	hub      *hub.Hub
	stream   *stream.Service
	sessions *session.Manager
}

func newNode(t *testing.T, store herald.Store, b herald.Broker) node {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	h := hub.New(0)
	st := stream.New(store, h, b, log)
	stop, err := st.Subscribe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return node{hub: h, stream: st, sessions: session.NewManager(session.Config{}, h, store, nil, log)}
}

func (n node) connect(t *testing.T, user herald.UserID) *recorder {
	r := &recorder{}
	s := n.sessions.New(r, session.Params{ID: herald.ConnID("c-" + string(user)), User: user, Format: wire.FormatV1})
	n.sessions.Start(s)
	t.Cleanup(s.Gone)
	return r
}

// Two nodes share a Store and a bus. What the bus loses on its way to
// node B reaches B's client all the same, in order: the next message
// reveals the gap and the session fills it from the Store.
func TestBrokerLossFilledFromStore(t *testing.T) {
	store := memory.New()
	t.Cleanup(func() { store.Close() })
	bus := memory.NewBus()
	a := newNode(t, store, bus.Node())
	b := newNode(t, store, lossy{bus.Node(), map[uint64]bool{5: true, 6: true, 17: true}})
	onA, onB := a.connect(t, "u"), b.connect(t, "u")

	const n = 30
	for range n {
		if _, err := a.stream.Publish(context.Background(), []*herald.Message{{User: "u", Data: []byte(`{"n":1}`)}}); err != nil {
			t.Fatal(err)
		}
	}
	want := make([]uint64, n)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(onB.got()) < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := onB.got(); !slices.Equal(got, want) {
		t.Fatalf("node B's client got %v, want 1..%d", got, n)
	}
	if got := onA.got(); !slices.Equal(got, want) {
		t.Fatalf("node A's client got %v, want 1..%d", got, n)
	}
}

// Inbox changes and disconnects reach the user's connections on every
// node, through the broker's control messages.
func TestControlsReachOtherNodes(t *testing.T) {
	store := memory.New()
	t.Cleanup(func() { store.Close() })
	bus := memory.NewBus()
	a, b := newNode(t, store, bus.Node()), newNode(t, store, bus.Node())
	onB := b.connect(t, "u")
	msgs := []*herald.Message{{User: "u", Data: []byte(`1`)}}
	if _, err := a.stream.Publish(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.stream.Mark(context.Background(), "u", herald.MarkRead, []string{msgs[0].ID}, false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Contains(onB.typesSeen(), "counts") && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !slices.Contains(onB.typesSeen(), "counts") {
		t.Fatalf("node B's client got no counts push: %v", onB.typesSeen())
	}
	if n := a.stream.DisconnectUser(context.Background(), "u"); n != 0 {
		t.Fatalf("node A closed %d connections of its own; it has none", n)
	}
	for b.hub.Len() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if b.hub.Len() != 0 {
		t.Fatal("node B's connection was not closed")
	}
}

func (r *recorder) typesSeen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.types)
}

// gated is a hub connection whose sends wait for the test to open its gate
// (a socket write that takes its time), recording what it was sent.
type gated struct {
	id   herald.ConnID
	gate chan struct{}
	mu   sync.Mutex
	got  []string
}

func (g *gated) ID() herald.ConnID     { return g.id }
func (g *gated) User() herald.UserID   { return "u" }
func (g *gated) Format() wire.Format   { return wire.FormatRaw }
func (g *gated) Info() herald.ConnInfo { return herald.ConnInfo{ID: g.id} }
func (g *gated) Acked() uint64         { return 0 }
func (g *gated) Close(uint16, string)  {}
func (g *gated) Send(b []byte, _ uint64) bool {
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	g.got = append(g.got, string(b[2:])) // a short raw frame: 2 header bytes
	return true
}

func (g *gated) received() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.got)
}

// A broadcast is answered when it is accepted, with the connections it is
// queued to, while the writes go on; broadcasts are written in the order
// they were accepted; and past MaxPendingBroadcasts a caller whose context
// ends first gets nothing sent.
func TestBroadcastAnswersBeforeTheWrites(t *testing.T) {
	h := hub.New(0)
	c := &gated{id: "c1", gate: make(chan struct{})}
	h.Add(c)
	st := stream.New(memory.New(), h, memory.NewBus().Node(), slog.New(slog.DiscardHandler))
	ctx := context.Background()
	var want []string
	for i := range stream.MaxPendingBroadcasts {
		data := fmt.Sprintf(`{"b":%d}`, i)
		want = append(want, data)
		// The connection's write is blocked: returning at all shows the
		// answer does not wait for it.
		if m, n := st.Broadcast(ctx, []byte(data)); m == nil || n != 1 {
			t.Fatalf("broadcast %d: %v, %d connections", i, m, n)
		}
	}
	full, cancel := context.WithCancel(ctx)
	cancel()
	if m, _ := st.Broadcast(full, []byte(`{"late":1}`)); m != nil {
		t.Fatal("a broadcast was accepted beyond MaxPendingBroadcasts")
	}
	close(c.gate)
	deadline := time.Now().Add(30 * time.Second)
	for len(c.received()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := c.received(); !slices.Equal(got, want) {
		t.Fatalf("the connection got %q, want %q in order", got, want)
	}
}
