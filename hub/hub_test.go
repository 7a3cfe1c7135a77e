package hub

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/wire"
)

// testConn records what the hub hands it. The hub never touches sockets,
// so a recording Conn exercises all of it.
type testConn struct {
	id     herald.ConnID
	user   herald.UserID
	format wire.Format
	h      *Hub
	full   bool
	mu     sync.Mutex
	frames [][]byte
	closed uint16
}

func (c *testConn) ID() herald.ConnID     { return c.id }
func (c *testConn) User() herald.UserID   { return c.user }
func (c *testConn) Format() wire.Format   { return c.format }
func (c *testConn) Info() herald.ConnInfo { return herald.ConnInfo{ID: c.id, User: c.user} }
func (c *testConn) Send(f []byte, _ uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.full || c.closed != 0 {
		return false
	}
	c.frames = append(c.frames, f)
	return true
}
func (c *testConn) Acked() uint64 { return 0 }
func (c *testConn) Close(code uint16, _ string) {
	c.mu.Lock()
	c.closed = code
	c.mu.Unlock()
	c.h.Remove(c)
}

func newConn(h *Hub, user string, id int) *testConn {
	return &testConn{id: herald.ConnID(fmt.Sprint("c", id)), user: herald.UserID(user), h: h}
}

func TestAddRemoveGet(t *testing.T) {
	h := New(0)
	a1, a2, b1 := newConn(h, "a", 1), newConn(h, "a", 2), newConn(h, "b", 3)
	for _, c := range []*testConn{a1, a2, b1} {
		h.Add(c)
	}
	if h.Len() != 3 || len(h.UserConns("a")) != 2 || h.Get("c3") != b1 {
		t.Fatalf("len %d, a %d", h.Len(), len(h.UserConns("a")))
	}
	h.Remove(a1)
	h.Remove(a1) // idempotent
	if h.Len() != 2 || len(h.UserConns("a")) != 1 || h.Get("c1") != nil {
		t.Fatalf("after remove: len %d", h.Len())
	}
	h.Remove(a2)
	if h.UserConns("a") != nil {
		t.Fatal("user entry not deleted")
	}
}

func TestMaxPerUserEvictsOldest(t *testing.T) {
	h := New(2)
	c1, c2, c3 := newConn(h, "u", 1), newConn(h, "u", 2), newConn(h, "u", 3)
	h.Add(c1)
	h.Add(c2)
	h.Add(c3)
	if c1.closed != wire.CloseTooManyConns || c2.closed != 0 || c3.closed != 0 {
		t.Fatalf("closed: %d %d %d", c1.closed, c2.closed, c3.closed)
	}
	if got := h.UserConns("u"); len(got) != 2 || got[0] != c2 || got[1] != c3 {
		t.Fatalf("conns %v", got)
	}
}

func TestSendUserEncodesOncePerProtocol(t *testing.T) {
	h := New(0)
	raw1, raw2 := newConn(h, "u", 1), newConn(h, "u", 2)
	v1 := newConn(h, "u", 3)
	v1.format = wire.FormatV1
	full := newConn(h, "u", 4)
	full.full = true
	sse1, sse2 := newConn(h, "u", 5), newConn(h, "u", 6)
	sse1.format, sse2.format = wire.FormatSSE, wire.FormatSSE
	for _, c := range []*testConn{raw1, raw2, v1, full, sse1, sse2} {
		h.Add(c)
	}
	res := h.SendUser(&herald.Message{ID: "m", User: "u", Offset: 1, Epoch: "e", Data: []byte(`{"a":1}`)})
	if res.Connections != 5 || len(res.Failed) != 1 || res.Failed[0].ID != "c4" {
		t.Fatalf("result %+v", res)
	}
	if &sse1.frames[0][0] != &sse2.frames[0][0] {
		t.Fatal("SSE event encoded twice")
	}
	if string(sse1.frames[0]) != "id: e:1\ndata: {\"type\":\"message\",\"id\":\"m\",\"offset\":1,\"epoch\":\"e\",\"data\":{\"a\":1}}\n\n" {
		t.Fatalf("SSE event %q", sse1.frames[0])
	}
	if &raw1.frames[0][0] != &raw2.frames[0][0] {
		t.Fatal("raw frame encoded twice")
	}
	if string(raw1.frames[0][2:]) != `{"a":1}` {
		t.Fatalf("raw frame %q", raw1.frames[0])
	}
	if string(v1.frames[0][2:]) != `{"type":"message","id":"m","offset":1,"epoch":"e","data":{"a":1}}` {
		t.Fatalf("v1 frame %q", v1.frames[0][2:])
	}
}

func TestBroadcastAndConcurrency(t *testing.T) {
	h := New(0)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			c := newConn(h, fmt.Sprint("u", i%20), i)
			h.Add(c)
			if i%3 == 0 {
				h.Remove(c)
			}
		})
	}
	wg.Wait()
	want := 200 - 67
	if h.Len() != want {
		t.Fatalf("len %d, want %d", h.Len(), want)
	}
	if n := h.Broadcast(&herald.Message{ID: "b", Data: []byte(`1`)}); n != want {
		t.Fatalf("broadcast reached %d", n)
	}
}

func BenchmarkSendUser(b *testing.B) {
	h := New(0)
	const users = 10_000
	for i := range users {
		h.Add(&discardConn{id: herald.ConnID(fmt.Sprint("c", i)), user: herald.UserID(fmt.Sprint("u", i))})
	}
	m := &herald.Message{ID: "m", Offset: 1, Epoch: "e", Data: []byte(`{"n":1}`)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.User = herald.UserID(fmt.Sprint("u", i%users))
		h.SendUser(m)
		i++
	}
}

func BenchmarkBroadcast10k(b *testing.B) {
	h := New(0)
	for i := range 10_000 {
		h.Add(&discardConn{id: herald.ConnID(fmt.Sprint("c", i)), user: herald.UserID(fmt.Sprint("u", i))})
	}
	m := &herald.Message{ID: "m", Data: []byte(`{"n":1}`)}
	b.ReportAllocs()
	for b.Loop() {
		h.Broadcast(m)
	}
	b.ReportMetric(float64(b.N)*10_000/b.Elapsed().Seconds(), "deliveries/s")
}

type discardConn struct {
	id   herald.ConnID
	user herald.UserID
}

func (c *discardConn) ID() herald.ConnID        { return c.id }
func (c *discardConn) User() herald.UserID      { return c.user }
func (c *discardConn) Format() wire.Format      { return wire.FormatRaw }
func (c *discardConn) Info() herald.ConnInfo    { return herald.ConnInfo{} }
func (c *discardConn) Send([]byte, uint64) bool { return true }
func (c *discardConn) Acked() uint64            { return 0 }
func (c *discardConn) Close(uint16, string)     {}

// events records what a Watcher hears, in order.
type events struct {
	mu  sync.Mutex
	log []string
	// inHub is asked, during Added, whether the hub already lists the
	// connection: it must not, or a racing Remove could be heard first.
	h      *Hub
	listed bool
}

func (e *events) Added(c Conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.h != nil && e.h.Get(c.ID()) != nil {
		e.listed = true
	}
	e.log = append(e.log, "+"+string(c.ID()))
}

func (e *events) Removed(c Conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.log = append(e.log, "-"+string(c.ID()))
}

func TestWatcherHearsEachConnectionOnce(t *testing.T) {
	e := &events{}
	h := New(2, WithWatcher(e))
	e.h = h
	a, b, c := newConn(h, "u", 1), newConn(h, "u", 2), newConn(h, "u", 3)
	h.Add(a)
	h.Add(b)
	h.Add(c) // evicts a
	h.Remove(b)
	h.Remove(b) // idempotent: heard once
	h.Remove(c)
	want := []string{"+c1", "+c2", "+c3", "-c1", "-c2", "-c3"}
	if !slices.Equal(e.log, want) {
		t.Fatalf("watcher heard %v, want %v", e.log, want)
	}
	if e.listed {
		t.Fatal("a connection was already in the hub when Added was called")
	}
}
