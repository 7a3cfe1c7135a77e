package nats

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/brokertest"
	"github.com/herald-gw/herald/servicetest"
)

// deliverTo publishes messages of user on from until one reaches rec,
// failing the test after brokertest.WaitTimeout: it proves delivery works
// now, whatever was lost before.
func deliverTo(t *testing.T, from *Broker, rec *brokertest.Recorder, user herald.UserID) {
	t.Helper()
	off := uint64(0)
	brokertest.Eventually(t, fmt.Sprintf("a message of %q to arrive", user), func() bool {
		for _, m := range rec.Messages() {
			if m.User == user {
				return true
			}
		}
		off++
		mustPublish(t, from, brokertest.Msg(user, off))
		return false
	})
}

// userSubs returns how many user subjects the node's client is
// subscribed to, and whether it is subscribed to user's.
func userSubs(b *Broker, user herald.UserID) (n int, has bool) {
	b.imu.Lock()
	defer b.imu.Unlock()
	_, has = b.interests[b.subj.user(user)]
	return b.nc.NumSubscriptions() - 2*len(b.handlers()), has
}

// TestWatchSubscribesSubjects checks the client's subscriptions: one per
// watched user, and none once the user's last connection has left (after
// the linger). A user with a connection left is not unsubscribed: u1,
// left once of two, is still subscribed when u2, left after it, is gone.
func TestWatchSubscribesSubjects(t *testing.T) {
	url, prefix := servicetest.NATS(t)
	b := newNode(t, url, Options{Prefix: prefix, Linger: 20 * time.Millisecond})
	subscribe(t, b, &brokertest.Recorder{})
	brokertest.Watch(t, b, "u1", "u1", "u2")
	if n, _ := userSubs(b, ""); n != 2 {
		t.Fatalf("%d user subscriptions after watching two users, want 2", n)
	}
	if users, idle := b.Watching(); users != 2 || idle != 0 {
		t.Errorf("Watching() = %d, %d; want 2, 0", users, idle)
	}

	b.Unwatch("u1")
	b.Unwatch("u2")
	brokertest.Eventually(t, "u2's subject to be unsubscribed", func() bool {
		n, has := userSubs(b, "u2")
		return n == 1 && !has
	})
	if _, has := userSubs(b, "u1"); !has {
		t.Fatal("u1, still watched once, was unsubscribed")
	}
	b.Unwatch("u1")
	brokertest.Eventually(t, "every user subject to be unsubscribed", func() bool {
		n, _ := userSubs(b, "")
		users, idle := b.Watching()
		return n == 0 && users == 0 && idle == 0
	})
}

// TestWatchRoundTrip stalls the server for a node (a proxy holds its
// bytes): a Watch of a user the node already watches returns nil all the
// same, as does one of a user whose last connection left within the
// linger, since neither needs the server; a Watch of a new user fails,
// since the server cannot confirm it, but counts: once the server
// answers, the user's messages arrive.
func TestWatchRoundTrip(t *testing.T) {
	url, prefix := servicetest.NATS(t)
	p := startProxy(t, hostOf(t, url))
	near := newNode(t, url, Options{Prefix: prefix, Node: "near"})
	far := newNode(t, p.url(url), Options{Prefix: prefix, Node: "far", Linger: time.Hour}, natsgo.IgnoreDiscoveredServers())
	rec := &brokertest.Recorder{}
	subscribe(t, far, rec)
	brokertest.Watch(t, far, "u", "left")
	far.Unwatch("left")

	p.setPaused(true)
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.WaitTimeout)
	defer cancel()
	for _, u := range []herald.UserID{"u", "left"} {
		if err := far.Watch(ctx, u); err != nil {
			t.Errorf("Watch(%q) with the server stalled: %v, want nil (no round trip)", u, err)
		}
	}
	short, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	err := far.Watch(short, "new")
	if err == nil {
		t.Fatal("Watch of a new user returned nil while the server could not confirm it")
	}
	if !errors.Is(err, context.DeadlineExceeded) && !isUnavailable(err) {
		t.Errorf("Watch of a new user with the server stalled: %v, want the deadline or an EUnavailable error", err)
	}

	p.setPaused(false)
	deliverTo(t, near, rec, "new")
}

// TestWatchWhileDown cuts a node from the server: a Watch of a new user
// fails at once with EUnavailable (one of a watched user still returns
// nil), and once the connection is back the node subscribes to the new
// user's subject before telling its handler of the resubscription.
func TestWatchWhileDown(t *testing.T) {
	url, prefix := servicetest.NATS(t)
	p := startProxy(t, hostOf(t, url))
	near := newNode(t, url, Options{Prefix: prefix, Node: "near"})
	far := newNode(t, p.url(url), Options{Prefix: prefix, Node: "far"}, natsgo.IgnoreDiscoveredServers())
	resync := &resyncRecorder{}
	subscribe(t, far, resync)
	brokertest.Watch(t, far, "u")

	p.setCut(true)
	brokertest.Eventually(t, "Ready to report the cut", func() bool { return far.Ready() != nil })
	ctx, cancel := context.WithTimeout(context.Background(), brokertest.WaitTimeout)
	defer cancel()
	if err := far.Watch(ctx, "u"); err != nil {
		t.Errorf("Watch of a watched user while cut: %v, want nil", err)
	}
	if err := far.Watch(ctx, "new"); !isUnavailable(err) {
		t.Errorf("Watch of a new user while cut: %v, want an EUnavailable error", err)
	}

	p.setCut(false)
	brokertest.Eventually(t, "the handler told of the resubscription", func() bool { return resync.resyncs.Load() >= 1 })
	// Told after the subscription was confirmed: a message published
	// now arrives at once.
	mustPublish(t, near, brokertest.Msg("new", 1))
	resync.WaitMessages(t, 1)
	deliverTo(t, near, &resync.Recorder, "u")
}

// BenchmarkWatch measures what a connection costs the node in Watch: for
// a user new to the node, a subscription and the wait for the server's
// confirmation, one at a time ("new-user") and from many goroutines at
// once ("new-user-parallel", which the manager confirms in batches); for
// a user the node already watches, no round trip ("watched").
//
//	go test -run '^$' -bench BenchmarkWatch -benchtime 5000x ./nats
func BenchmarkWatch(b *testing.B) {
	url, prefix := servicetest.NATS(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, err := New(ctx, url, Options{Prefix: prefix, Log: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	defer node.Close()
	var next atomic.Int64
	newUser := func() herald.UserID { return herald.UserID(fmt.Sprintf("user-%d", next.Add(1))) }
	bg := context.Background()
	b.Run("new-user", func(b *testing.B) {
		for b.Loop() {
			if err := node.Watch(bg, newUser()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("new-user-parallel", func(b *testing.B) {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := node.Watch(bg, newUser()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("watched", func(b *testing.B) {
		if err := node.Watch(bg, "watched"); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := node.Watch(bg, "watched"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
