package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-gw/herald/servicetest"
)

// clusterEngines are the broker choices a cluster is tested on, each with
// PostgreSQL as the shared store.
var clusterEngines = []struct {
	name string
	bus  func(t *testing.T) (url, cluster string)
}{
	{"postgres+redis", func(t *testing.T) (string, string) {
		url, prefix := servicetest.Redis(t)
		return url, strings.TrimSuffix(prefix, ":") // the broker adds its own separator
	}},
	{"postgres+nats", func(t *testing.T) (string, string) { return servicetest.NATS(t) }},
}

// startCluster runs n Herald processes sharing one PostgreSQL schema and
// one broker namespace, each with the settings of extra (name, value
// pairs) too.
func startCluster(t *testing.T, n int, busURL, cluster, dsn string, extra ...string) []*proc {
	t.Helper()
	nodes := make([]*proc, n)
	for i := range nodes {
		env := append([]string{
			"HERALD_DB", filepath.Join(t.TempDir(), "unused.db"),
			"HERALD_STORE", dsn, "HERALD_BROKER", busURL, "HERALD_CLUSTER", cluster,
			"HERALD_NODE_ID", fmt.Sprintf("node%d", i+1),
		}, extra...)
		nodes[i] = startProcess(t, testEnv(t, env...))
	}
	return nodes
}

// nextEnvelope reads herald.v1 frames until a message (skipping pings and
// other controls) and returns it.
func nextEnvelope(t *testing.T, c *websocket.Conn) envelope {
	t.Helper()
	for {
		_, b := read(t, c)
		var e envelope
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("frame %s: %v", b, err)
		}
		if e.Type == "message" {
			return e
		}
	}
}

// Three nodes on PostgreSQL and a broker: a notify through any node
// reaches every tab of the user on every node exactly once and in order;
// writers on all three nodes at once to one user get offsets 1..N with no
// gap or duplicate, every tab seeing each once, in order; a broadcast
// reaches everyone once.
func TestClusterDelivery(t *testing.T) {
	for _, eng := range clusterEngines {
		t.Run(eng.name, func(t *testing.T) {
			dsn := servicetest.Postgres(t)
			busURL, cluster := eng.bus(t)
			nodes := startCluster(t, 3, busURL, cluster, dsn)

			// Two tabs of user a on each node, one of user b on each.
			var tabsA, tabsB []*websocket.Conn
			for _, n := range nodes {
				tabsA = append(tabsA, n.dial(t, "a", "herald.v1"), n.dial(t, "a", "herald.v1"))
				tabsB = append(tabsB, n.dial(t, "b", "herald.v1"))
			}
			for _, n := range nodes {
				n.waitConns(t, "a", 2*len(nodes)) // the registry lists every node's
			}

			// Sequential notifies through each node in turn.
			const seq = 30
			for i := 1; i <= seq; i++ {
				n := nodes[i%len(nodes)]
				if status, body := n.api(t, "POST", "/v1/notify", fmt.Sprintf(`{"user_id":"a","json":"{\"n\":%d}"}`, i)); status != 200 {
					t.Fatalf("notify %d through %s: %d %s", i, n.URL, status, body)
				}
			}
			for ti, c := range tabsA {
				for i := 1; i <= seq; i++ {
					e := nextEnvelope(t, c)
					if e.Offset != uint64(i) || string(e.Data) != fmt.Sprintf(`{"n":%d}`, i) {
						t.Fatalf("tab %d of a: message %d is offset %d %s", ti, i, e.Offset, e.Data)
					}
				}
			}

			// Concurrent writers on all three nodes to user b.
			const each = 40
			var wg sync.WaitGroup
			errs := make(chan string, len(nodes)*each)
			for ni, n := range nodes {
				wg.Go(func() {
					for i := range each {
						if status, body := n.api(t, "POST", "/v1/notify", fmt.Sprintf(`{"user_id":"b","json":"{\"node\":%d,\"i\":%d}"}`, ni, i)); status != 200 {
							errs <- fmt.Sprintf("node %d: %d %s", ni, status, body)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Fatal(e)
			}
			for ti, c := range tabsB {
				for i := 1; i <= len(nodes)*each; i++ {
					if e := nextEnvelope(t, c); e.Offset != uint64(i) {
						t.Fatalf("tab %d of b: message %d is offset %d (a gap or a duplicate)", ti, i, e.Offset)
					}
				}
			}

			// A broadcast through node 2 reaches every tab once.
			if status, body := nodes[1].api(t, "POST", "/v1/broadcast", `{"data":{"all":true}}`); status != 200 {
				t.Fatalf("broadcast: %d %s", status, body)
			}
			for ti, c := range append(tabsA, tabsB...) {
				if e := nextEnvelope(t, c); string(e.Data) != `{"all":true}` {
					t.Fatalf("tab %d: broadcast got %+v", ti, e)
				}
			}
		})
	}
}

// A node dies (kill -9) while senders notify continuously through the
// others: its clients reconnect to the survivors, resume from the last
// offset they saw, and end up with every acknowledged message exactly
// once, in order — lost and duplicated are both counted, and must be 0.
func TestClusterNodeDeath(t *testing.T) {
	for _, eng := range clusterEngines {
		t.Run(eng.name, func(t *testing.T) {
			dsn := servicetest.Postgres(t)
			busURL, cluster := eng.bus(t)
			nodes := startCluster(t, 3, busURL, cluster, dsn)
			const victim = 2
			var dead atomic.Bool
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			tabs := []*deathTab{{node: victim}, {node: victim}, {node: victim}, {node: 0}}
			var clients sync.WaitGroup
			for _, tb := range tabs {
				clients.Go(func() { tb.run(ctx, t, nodes, victim, &dead) })
			}
			for _, n := range []int{victim, 0} {
				nodes[n].waitConns(t, "k", len(tabs)) // the registry lists every node's
			}
			// A first message, so that every tab has a resume point.
			nodes[0].publish(t, "k", -1)
			waitTabs(t, tabs, 1)

			var mu sync.Mutex
			var maxAcked uint64
			acks := 0
			var senders sync.WaitGroup
			stop := make(chan struct{})
			for _, n := range nodes[:victim] {
				senders.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						status, body, err := tryAPI(n.URL, "/v1/users/k/messages", fmt.Sprintf(`{"i":%d}`, i))
						if err != nil || status != 200 {
							t.Errorf("a survivor refused a notify: %d %s %v", status, body, err)
							return
						}
						var r struct {
							Offset uint64 `json:"offset"`
						}
						_ = json.Unmarshal([]byte(body), &r)
						mu.Lock()
						maxAcked = max(maxAcked, r.Offset)
						acks++
						mu.Unlock()
					}
				})
			}
			acked := func() int { mu.Lock(); defer mu.Unlock(); return acks }
			waitFor(t, "150 acknowledged notifies before the kill", func() bool { return acked() >= 150 })
			dead.Store(true)
			if err := nodes[victim].cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			nodes[victim].wait(t, 15*time.Second)
			waitFor(t, "300 more acknowledged notifies after the kill", func() bool { return acked() >= 450 })
			close(stop)
			senders.Wait()

			mu.Lock()
			final := maxAcked
			mu.Unlock()
			waitTabs(t, tabs, final)
			cancel()
			clients.Wait()
			for i, tb := range tabs {
				tb.mu.Lock()
				if tb.lost != 0 || tb.dup != 0 || tb.last != final {
					t.Errorf("tab %d: last %d of %d, lost %d, duplicated %d, reconnects %d", i, tb.last, final, tb.lost, tb.dup, tb.reconnects)
				}
				tb.mu.Unlock()
			}
			t.Logf("%d acknowledged through the survivors; the victim's tabs reconnected %d, %d, %d times", final, tabs[0].reconnects, tabs[1].reconnects, tabs[2].reconnects)
		})
	}
}

// deathTab is a herald.v1 client of user k that reconnects to another
// node when its connection fails, resuming from the last offset it saw,
// and counts what it lost and got twice.
type deathTab struct {
	node int // where it connects first

	mu         sync.Mutex
	last       uint64
	epoch      string
	lost, dup  int
	reconnects int
}

func (tb *deathTab) run(ctx context.Context, t *testing.T, nodes []*proc, victim int, dead *atomic.Bool) {
	tok := nodes[0].token(t, "k")
	node := tb.node
	for ctx.Err() == nil {
		if dead.Load() && node == victim {
			node = (node + 1) % len(nodes)
		}
		tb.mu.Lock()
		u := nodes[node].WSURL + "/ws?token=" + tok
		if tb.last > 0 {
			u += fmt.Sprintf("&since=%d&epoch=%s", tb.last, tb.epoch)
		}
		tb.mu.Unlock()
		c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{Subprotocols: []string{"herald.v1"}})
		if err != nil {
			node = (node + 1) % len(nodes)
			continue
		}
		c.SetReadLimit(1 << 20)
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				break
			}
			var e envelope
			if json.Unmarshal(b, &e) != nil || e.Type != "message" {
				continue
			}
			tb.mu.Lock()
			switch {
			case e.Offset <= tb.last:
				tb.dup++
			case e.Offset > tb.last+1:
				tb.lost += int(e.Offset - tb.last - 1)
				tb.last, tb.epoch = e.Offset, e.Epoch
			default:
				tb.last, tb.epoch = e.Offset, e.Epoch
			}
			tb.mu.Unlock()
		}
		c.CloseNow()
		tb.mu.Lock()
		tb.reconnects++
		tb.mu.Unlock()
	}
}

// waitTabs waits until every tab has seen offset want.
func waitTabs(t *testing.T, tabs []*deathTab, want uint64) {
	t.Helper()
	waitFor(t, lazy(func() string { return fmt.Sprintf("every tab at offset %d (%s)", want, deathTabs(tabs)) }), func() bool {
		for _, tb := range tabs {
			tb.mu.Lock()
			last := tb.last
			tb.mu.Unlock()
			if last < want {
				return false
			}
		}
		return true
	})
}

// lazy is a description made when printed.
type lazy func() string

func (l lazy) String() string { return l() }

// deathTabs describes the tabs for a failure message, lazily.
type deathTabs []*deathTab

func (d deathTabs) String() string {
	var b strings.Builder
	for i, tb := range d {
		tb.mu.Lock()
		fmt.Fprintf(&b, "tab %d on node %d: last %d, reconnects %d; ", i, tb.node, tb.last, tb.reconnects)
		tb.mu.Unlock()
	}
	return b.String()
}

// waitFor polls cond until it holds, failing the test after a long bound.
func waitFor(t *testing.T, what any, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %v", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
