package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/brokertest"
	"github.com/herald-gw/herald/servicetest"
)

// userChannels returns the user channels under b's prefix that some
// connection subscribes to, as Redis sees them (PUBSUB CHANNELS).
func userChannels(t testing.TB, raw *goredis.Client, b *Broker) []string {
	t.Helper()
	chs, err := raw.PubSubChannels(context.Background(), b.prefix+"u:*").Result()
	if err != nil {
		t.Fatalf("PUBSUB CHANNELS: %v", err)
	}
	slices.Sort(chs)
	return chs
}

// TestWatchSubscribesChannels checks what Redis sees: a channel per
// watched user, subscribed when Watch returns, and unsubscribed once the
// user's last connection has left (after the linger). A user with a
// connection left is not unsubscribed: u1, left once of two, is still
// subscribed when u2, left after it, is gone.
func TestWatchSubscribesChannels(t *testing.T) {
	url, prefix := servicetest.Redis(t)
	raw := rawClient(t, url)
	b := newNode(t, url, Options{Prefix: prefix, Linger: 20 * time.Millisecond})
	brokertest.Watch(t, b, "u1", "u1", "u2")
	want := []string{b.userChannel("u1"), b.userChannel("u2")}
	slices.Sort(want)
	if got := userChannels(t, raw, b); !slices.Equal(got, want) {
		t.Fatalf("after Watch returned, Redis has user channels %q, want %q", got, want)
	}
	if users, idle := b.Watching(); users != 2 || idle != 0 {
		t.Errorf("Watching() = %d, %d; want 2, 0", users, idle)
	}

	b.Unwatch("u1")
	b.Unwatch("u2")
	brokertest.Eventually(t, "u2's channel to be unsubscribed", func() bool {
		return !slices.Contains(userChannels(t, raw, b), b.userChannel("u2"))
	})
	if got := userChannels(t, raw, b); !slices.Equal(got, []string{b.userChannel("u1")}) {
		t.Fatalf("with u1 watched once and u2 left, Redis has user channels %q", got)
	}
	b.Unwatch("u1")
	brokertest.Eventually(t, "every user channel to be unsubscribed", func() bool {
		return len(userChannels(t, raw, b)) == 0
	})
	if users, idle := b.Watching(); users != 0 || idle != 0 {
		t.Errorf("Watching() = %d, %d; want 0, 0", users, idle)
	}
}

// TestWatchRoundTrip stalls Redis for a node (a proxy holds its bytes): a
// Watch of a user the node already watches returns nil all the same, as
// does one of a user whose last connection left within the linger, since
// neither needs Redis; a Watch of a new user fails, since Redis cannot
// confirm it, but counts: once Redis answers, the user's messages arrive.
func TestWatchRoundTrip(t *testing.T) {
	url, prefix := servicetest.Redis(t)
	p, purl := proxied(t, url)
	a := newNode(t, url, Options{Prefix: prefix})
	b := newNode(t, purl, Options{Prefix: prefix, Linger: time.Hour})
	rec := &brokertest.Recorder{}
	subscribe(t, b, rec)
	brokertest.Watch(t, b, "u", "left")
	b.Unwatch("left")

	p.setPaused(true)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, u := range []herald.UserID{"u", "left"} {
		if err := b.Watch(ctx, u); err != nil {
			t.Errorf("Watch(%q) with Redis stalled: %v, want nil (no round trip)", u, err)
		}
	}
	short, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	err := b.Watch(short, "new")
	if err == nil {
		t.Fatal("Watch of a new user returned nil while Redis could not confirm it")
	}
	if !errors.Is(err, context.DeadlineExceeded) && herald.ErrorCodeOf(err) != herald.EUnavailable {
		t.Errorf("Watch of a new user with Redis stalled: %v, want the deadline or an EUnavailable error", err)
	}

	p.setPaused(false)
	deliverTo(t, a, rec, "new", "after")
}

// TestWatchWhileDown takes Redis away from a node: a Watch of a new user
// fails at once with EUnavailable (one of a watched user still returns
// nil), and once Redis is back the node subscribes to the new user's
// channel before telling its handler of the resubscription.
func TestWatchWhileDown(t *testing.T) {
	url, prefix := servicetest.Redis(t)
	p, purl := proxied(t, url)
	a := newNode(t, url, Options{Prefix: prefix})
	b := newNode(t, purl, Options{Prefix: prefix, HealthInterval: 100 * time.Millisecond})
	resync := &resyncRecorder{}
	subscribe(t, b, resync)
	brokertest.Watch(t, b, "u")

	p.setDown(true)
	brokertest.Eventually(t, "the node to report the outage", func() bool { return b.Ready() != nil })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := b.Watch(ctx, "u"); err != nil {
		t.Errorf("Watch of a watched user while Redis is down: %v, want nil", err)
	}
	if err := b.Watch(ctx, "new"); herald.ErrorCodeOf(err) != herald.EUnavailable {
		t.Errorf("Watch of a new user while Redis is down: %v, want an EUnavailable error", err)
	}

	p.setDown(false)
	brokertest.Eventually(t, "the handler told of the resubscription", func() bool { return resync.resyncs.Load() >= 1 })
	// Told after the channel was subscribed: a message published now
	// arrives at once.
	m := brokertest.Msg("new", 1)
	if err := a.Publish(context.Background(), []*herald.Message{m}); err != nil {
		t.Fatal(err)
	}
	resync.WaitMessages(t, 1)
	deliverTo(t, a, &resync.Recorder, "u", "after")
}

// BenchmarkWatch measures what a connection costs the node in Watch: for
// a user new to the node, a SUBSCRIBE and the wait for Redis's
// confirmation, one at a time ("new-user") and from many goroutines at
// once ("new-user-parallel", which the manager sends in batches); for a
// user the node already watches, no round trip ("watched").
//
//	go test -run '^$' -bench BenchmarkWatch -benchtime 5000x ./redis/
func BenchmarkWatch(b *testing.B) {
	url, prefix := servicetest.Redis(b)
	node := newNode(b, url, Options{Prefix: prefix})
	ctx := context.Background()
	var next atomic.Int64
	newUser := func() herald.UserID { return herald.UserID(fmt.Sprintf("user-%d", next.Add(1))) }
	b.Run("new-user", func(b *testing.B) {
		for b.Loop() {
			if err := node.Watch(ctx, newUser()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("new-user-parallel", func(b *testing.B) {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := node.Watch(ctx, newUser()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("watched", func(b *testing.B) {
		if err := node.Watch(ctx, "watched"); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := node.Watch(ctx, "watched"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
