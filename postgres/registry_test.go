package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/registrytest"
	"github.com/herald-gw/herald/servicetest"
)

func TestRegistry(t *testing.T) {
	registrytest.Run(t, func(t *testing.T, ttl time.Duration) herald.Registry {
		return openTest(t, servicetest.Postgres(t)).Registry(ttl)
	})
}

// TestRegistryTwoStores is two nodes as two processes would be: two Stores
// (two pools) on one schema, each writing its own connections and reading
// the other's.
func TestRegistryTwoStores(t *testing.T) {
	dsn := servicetest.Postgres(t)
	a := openTest(t, dsn).Registry(registrytest.LongTTL)
	b := openTest(t, dsn).Registry(registrytest.LongTTL)
	ctx := context.Background()
	if !registrytest.MustHeartbeat(t, a, "a") || !registrytest.MustHeartbeat(t, b, "b") {
		t.Fatal("first Heartbeats not fresh")
	}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	registrytest.MustSync(t, a, "a", []herald.ConnInfo{registrytest.Conn("a1", "u", t0), registrytest.Conn("a2", "v", t0)})
	registrytest.MustReset(t, b, "b", registrytest.Conn("b1", "u", t0.Add(time.Second)))

	for _, tc := range []struct {
		name string
		r    herald.Registry
		self string
		want map[herald.UserID]int // Count of u and v on the other node
	}{
		{"a reads b", a, "a", map[herald.UserID]int{"u": 1}},
		{"b reads a", b, "b", map[herald.UserID]int{"u": 1, "v": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := registrytest.UserConnIDs(t, tc.r, "u"); !slices.Equal(got, []herald.ConnID{"a1", "b1"}) {
				t.Fatalf("UserConns(u) = %q, want [a1 b1]", got)
			}
			for id, node := range map[herald.ConnID]string{"a1": "a", "a2": "a", "b1": "b"} {
				c, err := tc.r.Conn(ctx, id)
				if err != nil || c.Node != node {
					t.Fatalf("Conn(%q) = %+v, %v; want it on %q", id, c, err, node)
				}
			}
			got, err := tc.r.Count(ctx, []herald.UserID{"u", "v"}, tc.self)
			if err != nil || !maps.Equal(got, tc.want) {
				t.Fatalf("Count except %q = %v, %v; want %v", tc.self, got, err, tc.want)
			}
		})
	}
	if err := b.Leave(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Conn(ctx, "b1"); herald.ErrorCodeOf(err) != herald.ENotFound {
		t.Fatalf("a reads b1 after b left: %v", err)
	}
}

// TestRegistrySweep lets a node with more connections than one sweep
// deletes lapse while another heartbeats: each Heartbeat of the live node
// deletes at most sweepConns of the dead one's rows, and in the end none
// of them, nor its lease row, is left.
func TestRegistrySweep(t *testing.T) {
	dsn := servicetest.Postgres(t)
	log, logs := newLog(t)
	s := openTest(t, dsn, WithLogger(log))
	r := s.Registry(time.Second)
	c := admin(t, dsn)
	ctx := context.Background()

	const dead = 2*sweepConns + sweepConns/2 // three sweeps at least
	conns := make([]herald.ConnInfo, dead)
	for i := range conns {
		conns[i] = registrytest.Conn(herald.NewConnID(), "u", time.Now())
	}
	registrytest.MustHeartbeat(t, r, "dead")
	registrytest.MustReset(t, r, "dead", conns...)
	rows := func() (conns, nodes int) {
		t.Helper()
		err := c.QueryRow(ctx, `SELECT (SELECT count(*) FROM registry_conns WHERE node = 'dead'),
			(SELECT count(*) FROM registry_nodes WHERE node = 'dead')`).Scan(&conns, &nodes)
		if err != nil {
			t.Fatal(err)
		}
		return conns, nodes
	}
	if n, _ := rows(); n != dead {
		t.Fatalf("%d rows of dead, want %d", n, dead)
	}
	heartbeats, sweeps := 0, 0
	poll(t, "the dead node's rows to be swept", func() bool {
		before, _ := rows()
		registrytest.MustHeartbeat(t, r, "live")
		heartbeats++
		after, nodes := rows()
		if before-after > sweepConns {
			t.Fatalf("one Heartbeat swept %d rows, more than %d", before-after, sweepConns)
		}
		if after < before {
			sweeps++
		}
		return after == 0 && nodes == 0
	})
	if sweeps < 3 {
		t.Fatalf("%d rows were swept in %d sweeps, want at least 3 of at most %d", dead, sweeps, sweepConns)
	}
	if logs.count("registry swept") < sweeps {
		t.Fatalf("sweeps were not logged")
	}
	t.Logf("%d rows swept in %d sweeps over %d heartbeats", dead, sweeps, heartbeats)
	var live int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM registry_nodes WHERE node = 'live'").Scan(&live); err != nil || live != 1 {
		t.Fatalf("the live node's lease row: %d, %v", live, err)
	}
}

// TestRegistryText covers what PostgreSQL text cannot hold: client text
// is cleaned, ids are refused (or, when looked up, not found), and a node
// must have a name.
func TestRegistryText(t *testing.T) {
	r := openTest(t, servicetest.Postgres(t)).Registry(registrytest.LongTTL)
	ctx := context.Background()
	registrytest.MustHeartbeat(t, r, "a")
	c := registrytest.Conn("c1", "u", time.Now())
	c.UserAgent = "odd\xff\x00agent"
	c.SourceIP = "\x00"
	registrytest.MustSync(t, r, "a", []herald.ConnInfo{c})
	got, err := r.Conn(ctx, "c1")
	if err != nil || got.UserAgent != "odd\uFFFDagent" || got.SourceIP != "" {
		t.Fatalf("Conn = %+v, %v; want the text cleaned", got, err)
	}

	for _, tc := range []struct {
		name string
		err  error
	}{
		{"a NUL in a user id", r.Sync(ctx, "a", []herald.ConnInfo{registrytest.Conn("c2", "u\x00", time.Now())}, nil)},
		{"invalid UTF-8 in an id", r.Reset(ctx, "a", []herald.ConnInfo{registrytest.Conn("c\xff", "u", time.Now())})},
		{"an empty id", r.Sync(ctx, "a", []herald.ConnInfo{registrytest.Conn("", "u", time.Now())}, nil)},
		{"an empty node", r.Sync(ctx, "", nil, []herald.ConnID{"c1"})},
		{"a node with a NUL", func() error { _, err := r.Heartbeat(ctx, "a\x00"); return err }()},
	} {
		if herald.ErrorCodeOf(tc.err) != herald.EInvalidRequest {
			t.Errorf("%s: %v, want an %s error", tc.name, tc.err, herald.EInvalidRequest)
		}
	}
	registrytest.MustSync(t, r, "a", nil, "\x00", "\xff") // closing what cannot be there
	if _, err := r.Conn(ctx, "\x00"); herald.ErrorCodeOf(err) != herald.ENotFound {
		t.Fatalf("Conn of an id with a NUL: %v", err)
	}
	if list, err := r.UserConns(ctx, "u\xff"); err != nil || len(list) != 0 {
		t.Fatalf("UserConns of invalid UTF-8: %v, %v", list, err)
	}
	if n, err := r.Count(ctx, []herald.UserID{"u", "\x00"}, "\xff"); err != nil || !maps.Equal(n, map[herald.UserID]int{"u": 1}) {
		t.Fatalf("Count with invalid text: %v, %v", n, err)
	}
	registrytest.MustHeartbeat(t, r, "a")
	if _, err := r.Conn(ctx, "c1"); err != nil {
		t.Fatalf("the refused writes touched c1: %v", err)
	}
}

// TestRegistryUnreachable cuts the connection to the server: every method
// fails with EUnavailable, and works again once it is back.
func TestRegistryUnreachable(t *testing.T) {
	dsn := servicetest.Postgres(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := servicetest.NewCutProxy(t, u.Host)
	u.Host = p.Addr()
	s := openTest(t, u.String())
	r := s.Registry(registrytest.LongTTL)
	ctx := context.Background()
	registrytest.MustHeartbeat(t, r, "a")
	registrytest.MustSync(t, r, "a", []herald.ConnInfo{registrytest.Conn("c1", "u", time.Now())})

	p.Cut()
	calls := map[string]func() error{
		"Heartbeat": func() error { _, err := r.Heartbeat(ctx, "a"); return err },
		"Sync":      func() error { return r.Sync(ctx, "a", nil, []herald.ConnID{"c1"}) },
		"Reset":     func() error { return r.Reset(ctx, "a", nil) },
		"Leave":     func() error { return r.Leave(ctx, "a") },
		"Conn":      func() error { _, err := r.Conn(ctx, "c1"); return err },
		"UserConns": func() error { _, err := r.UserConns(ctx, "u"); return err },
		"Count":     func() error { _, err := r.Count(ctx, []herald.UserID{"u"}, ""); return err },
	}
	for _, name := range slices.Sorted(maps.Keys(calls)) {
		if err := calls[name](); herald.ErrorCodeOf(err) != herald.EUnavailable {
			t.Errorf("%s while the server is unreachable: %v, want an %s error", name, err, herald.EUnavailable)
		}
	}

	p.Restore()
	poll(t, "the registry to answer again", func() bool {
		_, err := r.Heartbeat(ctx, "a")
		return err == nil
	})
	registrytest.MustReset(t, r, "a", registrytest.Conn("c2", "u", time.Now()))
	if got := registrytest.UserConnIDs(t, r, "u"); !slices.Equal(got, []herald.ConnID{"c2"}) {
		t.Fatalf("UserConns(u) after the outage = %q, want [c2]", got)
	}
}

// TestRegistryClosed: once the Store is closed, its Registry fails with
// ErrClosed (EUnavailable).
func TestRegistryClosed(t *testing.T) {
	s := openTest(t, servicetest.Postgres(t))
	r := s.Registry(0)
	if r.ttl != herald.DefaultRegistryTTL {
		t.Fatalf("Registry(0) has TTL %s, want %s", r.ttl, herald.DefaultRegistryTTL)
	}
	registrytest.MustHeartbeat(t, r, "a")
	s.Close()
	ctx := context.Background()
	if _, err := r.Heartbeat(ctx, "a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Heartbeat after Close: %v", err)
	}
	if err := r.Sync(ctx, "a", nil, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("empty Sync after Close: %v", err)
	}
	if _, err := r.Count(ctx, nil, ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("empty Count after Close: %v", err)
	}
	if _, err := r.Conn(ctx, "c"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Conn after Close: %v", err)
	}
}

// benchRegistry opens a Registry on a fresh schema whose nodes
// node-0..node-(nodes-1) hold perNode connections each, spread over users
// users user-0..; connection i of every node is user i%users's.
func benchRegistry(b *testing.B, nodes, perNode, users int) *Registry {
	r := benchStores(b, 1)[0].Registry(registrytest.LongTTL)
	now := time.Now()
	for n := range nodes {
		node := fmt.Sprint("node-", n)
		conns := make([]herald.ConnInfo, perNode)
		for i := range conns {
			conns[i] = registrytest.Conn(herald.NewConnID(), herald.UserID(fmt.Sprint("user-", i%users)), now)
		}
		registrytest.MustHeartbeat(b, r, node)
		registrytest.MustReset(b, r, node, conns...)
	}
	return r
}

// BenchmarkRegistrySync is one node's Sync of a batch: 100 connections
// opened and the 100 of an earlier batch closed, on a node holding 10,000
// (the table's size stays the same). ns/op is one Sync of 200 changes.
func BenchmarkRegistrySync(b *testing.B) {
	const batch = 100
	r := benchRegistry(b, 1, 0, 1)
	ctx := context.Background()
	// Batches still open, oldest first: a ring of 100 batches.
	ring := make([][]herald.ConnID, 100)
	fill := func(i int) []herald.ConnInfo {
		opened := make([]herald.ConnInfo, batch)
		ids := make([]herald.ConnID, batch)
		now := time.Now()
		for k := range opened {
			ids[k] = herald.NewConnID()
			opened[k] = registrytest.Conn(ids[k], herald.UserID(fmt.Sprint("user-", (i*batch+k)%5000)), now)
		}
		ring[i%len(ring)] = ids
		return opened
	}
	for i := range ring {
		registrytest.MustSync(b, r, "node-0", fill(i))
	}
	b.ReportAllocs()
	i := len(ring)
	for b.Loop() {
		closed := ring[i%len(ring)]
		if err := r.Sync(ctx, "node-0", fill(i), closed); err != nil {
			b.Fatal(err)
		}
		i++
	}
	if sec := b.Elapsed().Seconds(); sec > 0 {
		b.ReportMetric(float64(b.N*2*batch)/sec, "changes/s")
	}
}

// benchCount runs Count of 100 users, except one node, on three nodes of
// 10,000 connections each over 10,000 users (each user has three
// connections, two counted), from goroutines callers at once.
func benchCount(b *testing.B, callers int) {
	const (
		users = 10000
		asked = 100
	)
	r := benchRegistry(b, 3, users, users)
	ctx := context.Background()
	var next atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ask := make([]herald.UserID, asked)
		for pb.Next() {
			for k := range ask {
				ask[k] = herald.UserID(fmt.Sprint("user-", (next.Add(1)*7919)%users))
			}
			got, err := r.Count(ctx, ask, "node-1")
			if err != nil {
				b.Error(err)
				return
			}
			if len(got) == 0 {
				b.Error("Count found nobody")
				return
			}
		}
	})
}

// BenchmarkRegistryCount is one caller counting a batch of 100 users: the
// latency of one Count.
func BenchmarkRegistryCount(b *testing.B) { benchCount(b, 1) }

// BenchmarkRegistryCountParallel is 16 callers at once: ns/op is the pool's
// throughput, one Count per connection at a time.
func BenchmarkRegistryCountParallel(b *testing.B) { benchCount(b, 16) }
