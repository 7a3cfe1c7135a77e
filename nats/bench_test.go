package nats

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/servicetest"
)

// quietLog returns a logger that discards the brokers' log lines, for
// benchmarks.
func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// counter is a handler that counts messages and lets a publisher wait
// until no more than a window of them is in flight.
type counter struct {
	mu   sync.Mutex
	cond sync.Cond
	n    int
}

func newCounter() *counter {
	c := &counter{}
	c.cond.L = &c.mu
	return c
}

func (c *counter) HandleMessages(msgs []*herald.Message) {
	c.mu.Lock()
	c.n += len(msgs)
	c.cond.Broadcast()
	c.mu.Unlock()
}
func (c *counter) HandleBroadcast(*herald.Message) {}
func (c *counter) HandleControl(herald.Control)    {}

// waitFor waits until at least n messages have arrived, or deadline.
func (c *counter) waitFor(n int, deadline time.Time) bool {
	// Wake the waiter at the deadline even if nothing arrives.
	t := time.AfterFunc(time.Until(deadline), func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer t.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.n < n {
		if time.Now().After(deadline) {
			return false
		}
		c.cond.Wait()
	}
	return true
}

// BenchmarkPublish measures messages per second from one node to another
// through the NATS server: Publish on one, HandleMessages on the other,
// with at most a window of messages in flight so that the receiver's queue
// never overflows (a drop would be a loss, not throughput). Messages carry
// a 200-byte payload and go to 100 users, in Publish calls of batch
// messages each.
//
//	go test -run '^$' -bench BenchmarkPublish -benchtime 200000x ./nats
func BenchmarkPublish(b *testing.B) {
	for _, batch := range []int{1, 16} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			url, prefix := servicetest.NATS(b)
			quiet := quietLog()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			pub, err := New(ctx, url, Options{Prefix: prefix, Node: "pub", Log: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer pub.Close()
			sub, err := New(ctx, url, Options{Prefix: prefix, Node: "sub", Log: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Close()
			c := newCounter()
			stop, err := sub.Subscribe(ctx, c)
			if err != nil {
				b.Fatal(err)
			}
			defer stop()

			const users, window = 100, 8192
			payload := []byte(`{"type":"notification","title":"A new comment on your post","body":"` +
				"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt" +
				`","url":"/posts/1234#c5678"}`)
			msgs := make([]herald.Message, batch)
			ptrs := make([]*herald.Message, batch)
			offsets := make([]uint64, users)
			ids := make([]herald.UserID, users)
			for u := range ids {
				ids[u] = herald.UserID(fmt.Sprint(u))
				if err := sub.Watch(ctx, ids[u]); err != nil { // the receiver holds every user
					b.Fatal(err)
				}
			}
			now := time.Now()
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			for sent := 0; sent < b.N; {
				n := min(batch, b.N-sent)
				for i := range n {
					u := (sent + i) % users
					offsets[u]++
					msgs[i] = herald.Message{ID: "m", User: ids[u], Offset: offsets[u],
						Epoch: "bench", Time: now, Data: payload}
					ptrs[i] = &msgs[i]
				}
				if err := pub.Publish(context.Background(), ptrs[:n]); err != nil {
					b.Fatal(err)
				}
				sent += n
				if !c.waitFor(sent-window, time.Now().Add(30*time.Second)) {
					b.Fatalf("receiver stuck %d messages behind", sent-c.n)
				}
			}
			if !c.waitFor(b.N, time.Now().Add(30*time.Second)) {
				b.Fatalf("%d of %d messages arrived", c.n, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
