// Package registrytest is the behaviour suite every herald.Registry must
// pass: leases and their lapse, Sync, Reset and Leave, and the three reads.
// It uses only the herald.Registry interface, so the memory and PostgreSQL
// registries (and any later one) run the very same tests:
//
//	func TestRegistry(t *testing.T) {
//		registrytest.Run(t, func(t *testing.T, ttl time.Duration) herald.Registry { … })
//	}
//
// # What the suite requires beyond the interface's doc
//
//   - Timestamps keep at least microseconds: ConnectedAt and LastActiveAt
//     come back Equal to what was given once both are truncated to the
//     microsecond (PostgreSQL's timestamptz keeps microseconds).
//   - A zero LastActiveAt is stored as ConnectedAt: the registry knows
//     nothing better. A non-zero one comes back as given.
//   - Every other ConnInfo field comes back exactly as given (valid UTF-8),
//     except Node, which is always the node the entry was written for.
//   - "Oldest first" is ConnectedAt (to the microsecond), then ID in byte
//     order for equal times.
//   - The same id twice in one Sync or Reset is written as the last of them;
//     an id written again later replaces its entry (an upsert, not an
//     error). Removing an id that is not registered, or is registered by
//     another node, is no error and leaves the other node's entry alone.
//   - Sync and Reset for a node without a live lease succeed, but list
//     nothing until the node's Heartbeat (which then reports fresh).
//   - Every method returns an error wrapping context.Canceled when called
//     with a context that is already cancelled.
//
// Leases lapse on the real clock: one test opens its registry with a TTL of
// one second and polls (for at most 30 s) until a node that stopped
// heartbeating is gone; every other test uses a TTL of ten minutes, so that
// nothing lapses however slow the machine is. No test asserts how soon
// anything happens.
package registrytest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-gw/herald"
)

// Open returns an empty registry whose leases last ttl, for one test, and
// arranges for it to be released when the test ends.
type Open func(t *testing.T, ttl time.Duration) herald.Registry

// LongTTL is the TTL of every test but the lease lapse's: long enough that
// no lease lapses during a test.
const LongTTL = 10 * time.Minute

// ShortTTL is the TTL of the lease lapse test.
const ShortTTL = time.Second

// Run runs the whole suite, each case in parallel on a registry of its own.
func Run(t *testing.T, open func(t *testing.T, ttl time.Duration) herald.Registry) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Open)
	}{
		{"HeartbeatFresh", testHeartbeatFresh},
		{"SyncOpenClose", testSyncOpenClose},
		{"SyncUpsert", testSyncUpsert},
		{"SyncCloseOtherNode", testSyncCloseOtherNode},
		{"SyncBeforeHeartbeat", testSyncBeforeHeartbeat},
		{"Reset", testReset},
		{"Leave", testLeave},
		{"Nodes", testNodes},
		{"ConnNotFound", testConnNotFound},
		{"UserConnsOrder", testUserConnsOrder},
		{"Count", testCount},
		{"FieldsRoundTrip", testFieldsRoundTrip},
		{"LeaseLapse", testLeaseLapse},
		{"ConcurrentSync", testConcurrentSync},
		{"LargeReset", testLargeReset},
		{"CancelledContext", testCancelledContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open)
		})
	}
}

// t0 is the suite's ConnectedAt: whole seconds, so "oldest first" does
// not depend on sub-microsecond digits.
var t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// Conn returns a connection of user with id, opened at.
func Conn(id herald.ConnID, user herald.UserID, at time.Time) herald.ConnInfo {
	return herald.ConnInfo{
		ID: id, User: user, Protocol: herald.SubprotocolV1, ConnectedAt: at,
		SourceIP: "192.0.2.7", UserAgent: "registrytest/1.0",
	}
}

// MustHeartbeat renews node's lease and returns fresh, failing the test on
// error.
func MustHeartbeat(t testing.TB, r herald.Registry, node string) bool {
	t.Helper()
	fresh, err := r.Heartbeat(context.Background(), node)
	if err != nil {
		t.Fatalf("Heartbeat(%q): %v", node, err)
	}
	return fresh
}

// MustSync calls Sync and fails the test on error.
func MustSync(t testing.TB, r herald.Registry, node string, opened []herald.ConnInfo, closed ...herald.ConnID) {
	t.Helper()
	if err := r.Sync(context.Background(), node, opened, closed); err != nil {
		t.Fatalf("Sync(%q, %d opened, %d closed): %v", node, len(opened), len(closed), err)
	}
}

// MustReset calls Reset and fails the test on error.
func MustReset(t testing.TB, r herald.Registry, node string, conns ...herald.ConnInfo) {
	t.Helper()
	if err := r.Reset(context.Background(), node, conns); err != nil {
		t.Fatalf("Reset(%q, %d conns): %v", node, len(conns), err)
	}
}

// UserConnIDs returns the ids UserConns lists for user, in its order.
func UserConnIDs(t testing.TB, r herald.Registry, user herald.UserID) []herald.ConnID {
	t.Helper()
	conns, err := r.UserConns(context.Background(), user)
	if err != nil {
		t.Fatalf("UserConns(%q): %v", user, err)
	}
	return ids(conns)
}

func ids(conns []herald.ConnInfo) []herald.ConnID {
	out := make([]herald.ConnID, len(conns))
	for i, c := range conns {
		out[i] = c.ID
	}
	return out
}

// mustCount calls Count and fails the test on error.
func mustCount(t *testing.T, r herald.Registry, users []herald.UserID, except string) map[herald.UserID]int {
	t.Helper()
	got, err := r.Count(context.Background(), users, except)
	if err != nil {
		t.Fatalf("Count(%q, except %q): %v", users, except, err)
	}
	return got
}

// checkCount fails the test unless Count returns want (nil and empty are
// the same).
func checkCount(t *testing.T, r herald.Registry, users []herald.UserID, except string, want map[herald.UserID]int) {
	t.Helper()
	if got := mustCount(t, r, users, except); !maps.Equal(got, want) {
		t.Fatalf("Count(%q, except %q) = %v, want %v", users, except, got, want)
	}
}

// present fails the test unless Conn finds id on node.
func present(t *testing.T, r herald.Registry, id herald.ConnID, node string) herald.ConnInfo {
	t.Helper()
	c, err := r.Conn(context.Background(), id)
	if err != nil {
		t.Fatalf("Conn(%q): %v, want it listed on %q", id, err, node)
	}
	if c.ID != id || c.Node != node {
		t.Fatalf("Conn(%q) = id %q on node %q, want node %q", id, c.ID, c.Node, node)
	}
	return c
}

// absent fails the test unless Conn reports id as ENotFound.
func absent(t *testing.T, r herald.Registry, id herald.ConnID) {
	t.Helper()
	c, err := r.Conn(context.Background(), id)
	if herald.ErrorCodeOf(err) != herald.ENotFound {
		t.Fatalf("Conn(%q) = %+v, %v; want an %s error", id, c, err, herald.ENotFound)
	}
}

// isAbsent reports whether Conn says ENotFound for id, failing the test on
// any other error.
func isAbsent(t *testing.T, r herald.Registry, id herald.ConnID) bool {
	t.Helper()
	_, err := r.Conn(context.Background(), id)
	switch herald.ErrorCodeOf(err) {
	case "":
		return false
	case herald.ENotFound:
		return true
	}
	t.Fatalf("Conn(%q): %v", id, err)
	return false
}

// sameConn fails the test unless got is want as the registry stores it
// (see the package doc) on node.
func sameConn(t *testing.T, got, want herald.ConnInfo, node string) {
	t.Helper()
	wantLast := want.LastActiveAt
	if wantLast.IsZero() {
		wantLast = want.ConnectedAt
	}
	us := time.Microsecond
	if got.ID != want.ID || got.User != want.User || got.Protocol != want.Protocol ||
		got.SourceIP != want.SourceIP || got.UserAgent != want.UserAgent || got.Node != node ||
		!got.ConnectedAt.Truncate(us).Equal(want.ConnectedAt.Truncate(us)) ||
		!got.LastActiveAt.Truncate(us).Equal(wantLast.Truncate(us)) {
		t.Fatalf("got  %+v\nwant %+v on node %q (LastActiveAt %v)", got, want, node, wantLast)
	}
}

// poll calls cond until it returns true and fails the test if that takes
// more than 30 s.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 30 s waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testHeartbeatFresh(t *testing.T, open Open) {
	r := open(t, LongTTL)
	if !MustHeartbeat(t, r, "a") {
		t.Fatal("first Heartbeat of a: not fresh")
	}
	for i := range 3 {
		if MustHeartbeat(t, r, "a") {
			t.Fatalf("Heartbeat %d of a while its lease is live: fresh", i+2)
		}
	}
	// Another node's lease is its own.
	if !MustHeartbeat(t, r, "b") {
		t.Fatal("first Heartbeat of b (after a's): not fresh")
	}
	if MustHeartbeat(t, r, "a") || MustHeartbeat(t, r, "b") {
		t.Fatal("a Heartbeat of a live lease is fresh")
	}
}

func testSyncOpenClose(t *testing.T, open Open) {
	r := open(t, LongTTL)
	MustHeartbeat(t, r, "a")
	c1, c2, c3 := Conn("c1", "u1", t0), Conn("c2", "u1", t0.Add(time.Second)), Conn("c3", "u2", t0)
	c3.Node = "elsewhere" // Sync sets Node to its node argument
	MustSync(t, r, "a", []herald.ConnInfo{c1, c2, c3})
	sameConn(t, present(t, r, "c1", "a"), c1, "a")
	present(t, r, "c2", "a")
	present(t, r, "c3", "a")
	if got := UserConnIDs(t, r, "u1"); !slices.Equal(got, []herald.ConnID{"c1", "c2"}) {
		t.Fatalf("UserConns(u1) = %q, want [c1 c2]", got)
	}

	// Opened, then closed: c2 goes, c4 comes.
	MustSync(t, r, "a", []herald.ConnInfo{Conn("c4", "u2", t0)}, "c2")
	absent(t, r, "c2")
	present(t, r, "c4", "a")

	// Opened and closed since the last Sync: absent.
	MustSync(t, r, "a", []herald.ConnInfo{Conn("c5", "u1", t0), Conn("c6", "u1", t0)}, "c5")
	absent(t, r, "c5")
	present(t, r, "c6", "a")

	// Closing what is not registered, or closing twice, is fine, and so
	// is a Sync with nothing in it.
	MustSync(t, r, "a", nil, "never-opened", "c2", "c2")
	MustSync(t, r, "a", nil)
	MustSync(t, r, "a", []herald.ConnInfo{}, []herald.ConnID{}...)

	if got := UserConnIDs(t, r, "u1"); !slices.Equal(got, []herald.ConnID{"c1", "c6"}) {
		t.Fatalf("UserConns(u1) = %q, want [c1 c6]", got)
	}
	checkCount(t, r, []herald.UserID{"u1", "u2"}, "", map[herald.UserID]int{"u1": 2, "u2": 2})
}

func testSyncUpsert(t *testing.T, open Open) {
	r := open(t, LongTTL)
	MustHeartbeat(t, r, "a")
	c := Conn("c1", "u", t0)
	c.UserAgent = "one"
	MustSync(t, r, "a", []herald.ConnInfo{c})
	c.UserAgent = "two"
	c.LastActiveAt = t0.Add(time.Minute)
	MustSync(t, r, "a", []herald.ConnInfo{c}) // again: an upsert, not an error
	sameConn(t, present(t, r, "c1", "a"), c, "a")

	// The same id twice in one Sync: one entry, the last given.
	x, y := Conn("c2", "u", t0), Conn("c2", "u", t0)
	x.UserAgent, y.UserAgent = "first", "last"
	MustSync(t, r, "a", []herald.ConnInfo{x, Conn("c3", "u", t0), y})
	sameConn(t, present(t, r, "c2", "a"), y, "a")
	if got := UserConnIDs(t, r, "u"); !slices.Equal(got, []herald.ConnID{"c1", "c2", "c3"}) {
		t.Fatalf("UserConns(u) = %q, want each id once: [c1 c2 c3]", got)
	}
	checkCount(t, r, []herald.UserID{"u"}, "", map[herald.UserID]int{"u": 3})

	// And twice in one Reset.
	MustReset(t, r, "a", x, y)
	sameConn(t, present(t, r, "c2", "a"), y, "a")
	checkCount(t, r, []herald.UserID{"u"}, "", map[herald.UserID]int{"u": 1})
}

// testSyncCloseOtherNode: a node closes only its own entries.
func testSyncCloseOtherNode(t *testing.T, open Open) {
	r := open(t, LongTTL)
	MustHeartbeat(t, r, "a")
	MustHeartbeat(t, r, "b")
	MustSync(t, r, "a", []herald.ConnInfo{Conn("c1", "u", t0)})
	MustSync(t, r, "b", nil, "c1")
	present(t, r, "c1", "a")
	MustReset(t, r, "b")
	present(t, r, "c1", "a")
}

// testSyncBeforeHeartbeat: writing for a node without a lease is no
// error, but lists nothing; its Heartbeat then reports fresh.
func testSyncBeforeHeartbeat(t *testing.T, open Open) {
	r := open(t, LongTTL)
	MustSync(t, r, "early", []herald.ConnInfo{Conn("c1", "u", t0)})
	MustReset(t, r, "early-reset", Conn("c2", "u", t0))
	absent(t, r, "c1")
	absent(t, r, "c2")
	if got := UserConnIDs(t, r, "u"); len(got) != 0 {
		t.Fatalf("UserConns(u) = %q before any Heartbeat, want none", got)
	}
	checkCount(t, r, []herald.UserID{"u"}, "", nil)

	if !MustHeartbeat(t, r, "early") {
		t.Fatal("first Heartbeat after a Sync: not fresh")
	}
	MustReset(t, r, "early", Conn("c3", "u", t0))
	present(t, r, "c3", "early")
	absent(t, r, "c1") // replaced by the Reset
	absent(t, r, "c2") // early-reset has no lease
}

// testReset: Reset replaces the node's entries, and only its.
func testReset(t *testing.T, open Open) {
	r := open(t, LongTTL)
	MustHeartbeat(t, r, "a")
	MustHeartbeat(t, r, "b")
	MustSync(t, r, "a", []herald.ConnInfo{Conn("a1", "u", t0), Conn("a2", "v", t0)})
	MustSync(t, r, "b", []herald.ConnInfo{Conn("b1", "u", t0.Add(time.Second))})

	MustReset(t, r, "a", Conn("a3", "u", t0.Add(2*time.Second)), Conn("a4", "w", t0))
	absent(t, r, "a1")
	absent(t, r, "a2")
	present(t, r, "a3", "a")
	present(t, r, "a4", "a")
	present(t, r, "b1", "b")
	if got := UserConnIDs(t, r, "u"); !slices.Equal(got, []herald.ConnID{"b1", "a3"}) {
		t.Fatalf("UserConns(u) = %q, want [b1 a3]", got)
	}

	// Reset to nothing.
	MustReset(t, r, "a")
	absent(t, r, "a3")
	absent(t, r, "a4")
	present(t, r, "b1", "b")
	checkCount(t, r, []herald.UserID{"u", "v", "w"}, "", map[herald.UserID]int{"u": 1})
	if MustHeartbeat(t, r, "a") {
		t.Fatal("Reset ended a's lease: the next Heartbeat is fresh")
	}
}

// testLeave: Leave removes the node's entries at once, and its lease.
func testLeave(t *testing.T, open Open) {
	r := open(t, LongTTL)
	MustHeartbeat(t, r, "a")
	MustHeartbeat(t, r, "b")
	MustSync(t, r, "a", []herald.ConnInfo{Conn("a1", "u", t0), Conn("a2", "v", t0)})
	MustSync(t, r, "b", []herald.ConnInfo{Conn("b1", "u", t0)})
	if err := r.Leave(context.Background(), "a"); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	absent(t, r, "a1")
	absent(t, r, "a2")
	present(t, r, "b1", "b")
	checkCount(t, r, []herald.UserID{"u", "v"}, "", map[herald.UserID]int{"u": 1})
	if MustHeartbeat(t, r, "b") {
		t.Fatal("b's lease is fresh after a left")
	}
	if !MustHeartbeat(t, r, "a") {
		t.Fatal("Heartbeat after Leave: not fresh")
	}
	absent(t, r, "a1") // and coming back does not bring them back
	// Leaving twice, or leaving as a node never seen, is fine.
	for _, node := range []string{"a", "a", "never-seen"} {
		if err := r.Leave(context.Background(), node); err != nil {
			t.Fatalf("Leave(%q): %v", node, err)
		}
	}
}

func testConnNotFound(t *testing.T, open Open) {
	r := open(t, LongTTL)
	absent(t, r, "nothing-registered-yet")
	MustHeartbeat(t, r, "a")
	MustSync(t, r, "a", []herald.ConnInfo{Conn("c1", "u", t0)})
	absent(t, r, "c2")
	absent(t, r, "")
	absent(t, r, "C1") // ids are case-sensitive
	_, err := r.Conn(context.Background(), "c2")
	var e *herald.Error
	if !errors.As(err, &e) {
		t.Fatalf("Conn of an unknown id: %T %v, want a *herald.Error", err, err)
	}
}

// testUserConnsOrder: oldest first across nodes, by ConnectedAt then id.
func testUserConnsOrder(t *testing.T, open Open) {
	r := open(t, LongTTL)
	MustHeartbeat(t, r, "a")
	MustHeartbeat(t, r, "b")
	MustSync(t, r, "a", []herald.ConnInfo{
		Conn("x", "u", t0.Add(2*time.Second)),
		Conn("m", "u", t0.Add(time.Second)),
		Conn("other", "v", t0.Add(-time.Hour)),
	})
	MustSync(t, r, "b", []herald.ConnInfo{
		Conn("z", "u", t0),
		Conn("b", "u", t0.Add(time.Second)),
		Conn("n", "u", t0.Add(time.Second+time.Microsecond)),
	})
	got, err := r.UserConns(context.Background(), "u")
	if err != nil {
		t.Fatal(err)
	}
	want := []herald.ConnID{"z", "b", "m", "n", "x"}
	wantNode := []string{"b", "b", "a", "b", "a"}
	if !slices.Equal(ids(got), want) {
		t.Fatalf("UserConns(u) = %q, want %q (oldest first, then by id)", ids(got), want)
	}
	for i, c := range got {
		if c.Node != wantNode[i] || c.User != "u" {
			t.Fatalf("UserConns(u)[%d] = %q of %q on %q, want on %q", i, c.ID, c.User, c.Node, wantNode[i])
		}
	}
	if got := UserConnIDs(t, r, "nobody"); len(got) != 0 {
		t.Fatalf("UserConns of a user without connections = %q", got)
	}
	if got := UserConnIDs(t, r, "U"); len(got) != 0 {
		t.Fatalf("UserConns(U) = %q: user ids are case-sensitive", got)
	}
}

func testCount(t *testing.T, open Open) {
	r := open(t, LongTTL)
	MustHeartbeat(t, r, "a")
	MustHeartbeat(t, r, "b")
	MustSync(t, r, "a", []herald.ConnInfo{Conn("a1", "u1", t0), Conn("a2", "u1", t0), Conn("a3", "not-asked", t0)})
	MustSync(t, r, "b", []herald.ConnInfo{Conn("b1", "u1", t0), Conn("b2", "u2", t0)})
	users := []herald.UserID{"u1", "u2", "u3", "u1"} // u3 has none; u1 twice
	for _, tc := range []struct {
		except string
		want   map[herald.UserID]int
	}{
		{"", map[herald.UserID]int{"u1": 3, "u2": 1}},
		{"a", map[herald.UserID]int{"u1": 1, "u2": 1}},
		{"b", map[herald.UserID]int{"u1": 2}},
		{"no-such-node", map[herald.UserID]int{"u1": 3, "u2": 1}},
	} {
		checkCount(t, r, users, tc.except, tc.want)
	}
	checkCount(t, r, nil, "", nil)
	checkCount(t, r, []herald.UserID{"u3"}, "", nil)

	// Total counts every user's, on the nodes asked for.
	for except, want := range map[string]int{"": 5, "a": 2, "b": 3, "no-such-node": 5} {
		if got, err := r.Total(context.Background(), except); err != nil || got != want {
			t.Fatalf("Total(except %q) = %d, %v; want %d", except, got, err, want)
		}
	}
}

func testFieldsRoundTrip(t *testing.T, open Open) {
	r := open(t, LongTTL)
	MustHeartbeat(t, r, "node-1")
	// Nanoseconds and a zone other than UTC: what comes back is the same
	// instant to the microsecond.
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	full := herald.ConnInfo{
		ID:           herald.NewConnID(),
		User:         "user with spaces ✓",
		Protocol:     "raw",
		ConnectedAt:  time.Date(2024, 12, 31, 23, 59, 59, 123456789, zone),
		LastActiveAt: time.Date(2025, 1, 1, 0, 0, 1, 987654321, time.UTC),
		SourceIP:     "2001:db8::1",
		UserAgent:    "Mozilla/5.0 (X11; Linux x86_64) «quoted» 日本語",
	}
	// No LastActiveAt: it is stored as ConnectedAt.
	bare := herald.ConnInfo{ID: "bare", User: "42", Protocol: herald.SubprotocolV1, ConnectedAt: t0.Add(999 * time.Nanosecond)}
	MustSync(t, r, "node-1", []herald.ConnInfo{full})
	MustReset(t, r, "node-1", full, bare) // Reset writes the same way
	sameConn(t, present(t, r, full.ID, "node-1"), full, "node-1")
	sameConn(t, present(t, r, "bare", "node-1"), bare, "node-1")
	list, err := r.UserConns(context.Background(), full.User)
	if err != nil || len(list) != 1 {
		t.Fatalf("UserConns(%q) = %v, %v; want one", full.User, list, err)
	}
	sameConn(t, list[0], full, "node-1")
}

// testLeaseLapse: a node that stops heartbeating disappears from every
// read within its TTL, another node's entries stay, and its next Heartbeat
// is fresh.
// testNodes checks that Nodes lists the live leases, sorted: not a node
// that left, nor one whose lease lapsed, nor one never renewed.
func testNodes(t *testing.T, open Open) {
	ctx := context.Background()
	r := open(t, LongTTL)
	nodes := func() []string {
		t.Helper()
		l, err := r.Nodes(ctx)
		if err != nil {
			t.Fatalf("Nodes: %v", err)
		}
		return l
	}
	if l := nodes(); len(l) != 0 {
		t.Fatalf("an empty registry lists %q", l)
	}
	for _, n := range []string{"c", "a", "b"} {
		MustHeartbeat(t, r, n)
	}
	// A Sync before any Heartbeat makes no member.
	if err := r.Sync(ctx, "unleased", []herald.ConnInfo{Conn("x1", "u", t0)}, nil); err != nil {
		t.Fatalf("Sync before Heartbeat: %v", err)
	}
	if l := nodes(); !slices.Equal(l, []string{"a", "b", "c"}) {
		t.Fatalf("Nodes = %q, want [a b c]", l)
	}
	if err := r.Leave(ctx, "b"); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if l := nodes(); !slices.Equal(l, []string{"a", "c"}) {
		t.Fatalf("after b left, Nodes = %q, want [a c]", l)
	}

	// A lapsed lease is not listed: c stops renewing, a goes on.
	r = open(t, ShortTTL)
	MustHeartbeat(t, r, "c")
	poll(t, "only a's lease to stay live", func() bool {
		MustHeartbeat(t, r, "a")
		return slices.Equal(nodes(), []string{"a"})
	})
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.Nodes(cancelled); err == nil {
		t.Error("Nodes with a cancelled context succeeded")
	}
}

func testLeaseLapse(t *testing.T, open Open) {
	r := open(t, ShortTTL)
	ctx := context.Background()
	aConns := []herald.ConnInfo{Conn("a1", "only-a", t0), Conn("s-a", "shared", t0)}
	bConns := []herald.ConnInfo{Conn("b1", "only-b", t0), Conn("s-b", "shared", t0.Add(time.Second))}
	// renew does what a node does: Heartbeat, and Reset when told fresh.
	// With a TTL of a second, a slow machine may let a lease lapse between
	// two calls; a node that is kept alive this way is listed again after
	// its next renewal, so the conditions below are polled, not asserted.
	renew := func(node string, conns []herald.ConnInfo) {
		if MustHeartbeat(t, r, node) {
			MustReset(t, r, node, conns...)
		}
	}
	users := []herald.UserID{"only-a", "only-b", "shared"}
	poll(t, "both nodes' entries listed", func() bool {
		renew("a", aConns)
		renew("b", bConns)
		return slices.Equal(UserConnIDs(t, r, "shared"), []herald.ConnID{"s-a", "s-b"})
	})

	// a stops renewing; b goes on.
	poll(t, "a's entries to lapse while b's stay", func() bool {
		renew("b", bConns)
		if !isAbsent(t, r, "a1") || isAbsent(t, r, "b1") {
			return false
		}
		if !slices.Equal(UserConnIDs(t, r, "shared"), []herald.ConnID{"s-b"}) {
			return false
		}
		if n, err := r.Total(ctx, ""); err != nil || n != 2 {
			return false
		}
		return maps.Equal(mustCount(t, r, users, ""), map[herald.UserID]int{"only-b": 1, "shared": 1})
	})
	// Nothing renewed a's lease since it lapsed, so this is certain.
	if fresh, err := r.Heartbeat(ctx, "a"); err != nil || !fresh {
		t.Fatalf("Heartbeat of a after its lease lapsed = %v, %v; want fresh", fresh, err)
	}
	// a Resets, as a fresh node must: what it lists now is what it holds.
	a2 := Conn("a2", "only-a", t0)
	MustReset(t, r, "a", a2)
	absent(t, r, "a1")
	aConns = []herald.ConnInfo{a2}
	poll(t, "a's new entries listed", func() bool {
		renew("a", aConns)
		renew("b", bConns)
		return !isAbsent(t, r, "a2") && maps.Equal(mustCount(t, r, users, "b"), map[herald.UserID]int{"only-a": 1})
	})
	absent(t, r, "a1")
	absent(t, r, "s-a")
}

// testConcurrentSync runs Syncs from several goroutines on several nodes
// at once, each opening and closing its own connections; in the end every
// read agrees with what the goroutines left open.
func testConcurrentSync(t *testing.T, open Open) {
	r := open(t, LongTTL)
	const (
		nodes      = 3
		goroutines = 3 // per node
		rounds     = 30
	)
	users := make([]herald.UserID, 8)
	for i := range users {
		users[i] = herald.UserID(fmt.Sprint("user-", i))
	}
	for n := range nodes {
		MustHeartbeat(t, r, fmt.Sprint("node-", n))
	}
	var (
		mu   sync.Mutex
		want = map[herald.ConnID]herald.ConnInfo{} // what is open at the end, with its node
		wg   sync.WaitGroup
	)
	for n := range nodes {
		node := fmt.Sprint("node-", n)
		for g := range goroutines {
			wg.Go(func() {
				mine := map[herald.ConnID]herald.ConnInfo{}
				var prev herald.ConnID
				for i := range rounds {
					var opened []herald.ConnInfo
					for k := range 3 {
						id := herald.ConnID(fmt.Sprintf("%s-g%d-r%d-k%d", node, g, i, k))
						opened = append(opened, Conn(id, users[(n*5+g*3+i+k)%len(users)], t0.Add(time.Duration(i)*time.Second)))
					}
					// Close one of the previous round's, one opened in
					// this very Sync, and one never opened.
					closed := []herald.ConnID{opened[2].ID, "never-opened"}
					if prev != "" {
						closed = append(closed, prev)
					}
					if err := r.Sync(context.Background(), node, opened, closed); err != nil {
						t.Errorf("%s: Sync: %v", node, err)
						return
					}
					for _, c := range opened[:2] {
						c.Node = node
						mine[c.ID] = c
					}
					delete(mine, prev)
					prev = opened[0].ID
				}
				mu.Lock()
				maps.Copy(want, mine)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, except := range []string{"", "node-1"} {
		count := map[herald.UserID]int{}
		for _, c := range want {
			if c.Node != except {
				count[c.User]++
			}
		}
		checkCount(t, r, users, except, count)
	}
	for _, u := range users {
		var wantIDs []herald.ConnID
		for id, c := range want {
			if c.User == u {
				wantIDs = append(wantIDs, id)
			}
		}
		got, err := r.UserConns(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		gotIDs := ids(got)
		slices.Sort(gotIDs)
		slices.Sort(wantIDs)
		if !slices.Equal(gotIDs, wantIDs) {
			t.Fatalf("UserConns(%q) holds %d ids, want %d:\n got  %q\n want %q", u, len(gotIDs), len(wantIDs), gotIDs, wantIDs)
		}
		for _, c := range got {
			if c.Node != want[c.ID].Node {
				t.Fatalf("%q listed on %q, written by %q", c.ID, c.Node, want[c.ID].Node)
			}
		}
	}
}

// testLargeReset: a node with 20,000 connections Resets them all, twice.
func testLargeReset(t *testing.T, open Open) {
	r := open(t, LongTTL)
	const (
		total   = 20000
		perUser = 200
	)
	users := make([]herald.UserID, total/perUser)
	for i := range users {
		users[i] = herald.UserID(fmt.Sprint("user-", i))
	}
	make20k := func(prefix string) []herald.ConnInfo {
		conns := make([]herald.ConnInfo, total)
		for i := range conns {
			// Times go backwards as ids go up, so ordering by id alone
			// would be wrong.
			conns[i] = Conn(herald.ConnID(fmt.Sprintf("%s-%05d", prefix, i)), users[i%len(users)], t0.Add(-time.Duration(i)*time.Millisecond))
		}
		return conns
	}
	MustHeartbeat(t, r, "big")
	MustHeartbeat(t, r, "small")
	MustSync(t, r, "small", []herald.ConnInfo{Conn("small-1", users[0], t0)})
	for _, prefix := range []string{"first", "second"} {
		MustReset(t, r, "big", make20k(prefix)...)
		counts := mustCount(t, r, users, "")
		for _, u := range users {
			want := perUser
			if u == users[0] {
				want++ // small-1
			}
			if counts[u] != want {
				t.Fatalf("after the %s Reset, Count(%q) = %d, want %d", prefix, u, counts[u], want)
			}
		}
		got := UserConnIDs(t, r, users[7])
		if len(got) != perUser {
			t.Fatalf("UserConns(%q): %d, want %d", users[7], len(got), perUser)
		}
		// users[7] has conns 7, 107, 207, ...: the last is the oldest.
		if first, last := got[0], got[len(got)-1]; first != herald.ConnID(fmt.Sprintf("%s-%05d", prefix, total-100+7)) ||
			last != herald.ConnID(fmt.Sprintf("%s-%05d", prefix, 7)) {
			t.Fatalf("UserConns(%q) runs %q .. %q, want oldest first", users[7], first, last)
		}
		present(t, r, herald.ConnID(prefix+"-12345"), "big")
	}
	absent(t, r, "first-12345")
	present(t, r, "small-1", "small")
}

func testCancelledContext(t *testing.T, open Open) {
	r := open(t, LongTTL)
	MustHeartbeat(t, r, "a")
	MustSync(t, r, "a", []herald.ConnInfo{Conn("c1", "u", t0)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]func() error{
		"Heartbeat":       func() error { _, err := r.Heartbeat(ctx, "a"); return err },
		"Sync":            func() error { return r.Sync(ctx, "a", []herald.ConnInfo{Conn("c2", "u", t0)}, []herald.ConnID{"c1"}) },
		"Sync of nothing": func() error { return r.Sync(ctx, "a", nil, nil) },
		"Reset":           func() error { return r.Reset(ctx, "a", nil) },
		"Leave":           func() error { return r.Leave(ctx, "a") },
		"Conn":            func() error { _, err := r.Conn(ctx, "c1"); return err },
		"UserConns":       func() error { _, err := r.UserConns(ctx, "u"); return err },
		"Count":           func() error { _, err := r.Count(ctx, []herald.UserID{"u"}, ""); return err },
	}
	for _, name := range slices.Sorted(maps.Keys(calls)) {
		if err := calls[name](); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v, want context.Canceled", name, err)
		}
	}
	// None of them did anything.
	present(t, r, "c1", "a")
	absent(t, r, "c2")
	if MustHeartbeat(t, r, "a") {
		t.Fatal("a's lease is fresh: a cancelled call ended it")
	}
}
