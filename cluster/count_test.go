package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/memory"
)

// gatedCount is a registry whose Count waits for the test to open the gate,
// counting its calls.
type gatedCount struct {
	herald.Registry
	gate  chan struct{}
	calls atomic.Int32
}

func (g *gatedCount) Count(ctx context.Context, users []herald.UserID, except string) (map[herald.UserID]int, error) {
	g.calls.Add(1)
	<-g.gate
	return g.Registry.Count(ctx, users, except)
}

// Calls that arrive while a count query runs are answered together by one
// more query, each with its own users' counts.
func TestConcurrentCountsShareAQuery(t *testing.T) {
	ctx := context.Background()
	inner := memory.NewRegistry(time.Hour, nil)
	if _, err := inner.Heartbeat(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	var conns []herald.ConnInfo
	for u := range 10 {
		for i := range u { // user u<k> holds k connections on node b
			conns = append(conns, herald.ConnInfo{ID: herald.ConnID(fmt.Sprintf("u%d-%d", u, i)), User: herald.UserID(fmt.Sprint("u", u))})
		}
	}
	if err := inner.Sync(ctx, "b", conns, nil); err != nil {
		t.Fatal(err)
	}
	reg := &gatedCount{Registry: inner, gate: make(chan struct{})}
	n := New(Config{Node: "a", Registry: reg})

	first := make(chan map[herald.UserID]int)
	go func() {
		m, _ := n.CountElsewhere(ctx, []herald.UserID{"u9"})
		first <- m
	}()
	waitUntil(t, "the first query runs", func() bool { return reg.calls.Load() == 1 })
	const callers = 40
	var wg sync.WaitGroup
	errs := make(chan string, callers)
	for i := range callers {
		wg.Go(func() {
			u := herald.UserID(fmt.Sprint("u", i%10))
			m, err := n.CountElsewhere(ctx, []herald.UserID{u, "nobody"})
			if err != nil || m[u] != i%10 || len(m) != min(1, i%10) {
				errs <- fmt.Sprintf("caller %d: %v %v", i, m, err)
			}
		})
	}
	waitUntil(t, "every caller waits", func() bool { return n.counts.Waiting() == callers })
	close(reg.gate)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if m := <-first; m["u9"] != 9 {
		t.Errorf("first caller got %v", m)
	}
	if c := reg.calls.Load(); c != 2 {
		t.Errorf("%d queries for %d calls, want 2", c, callers+1)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}
