package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/herald-gw/herald"
)

// msg encodes a countsMsg from node b (or another) as HandleCounts gets it.
func msg(t testing.TB, typ, node, inc string, seq uint64, users map[herald.UserID]int) []byte {
	t.Helper()
	b, err := json.Marshal(countsMsg{Type: typ, Node: node, Inc: inc, Seq: seq, Users: users})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type um = map[herald.UserID]int

// TestReplicaFollowsPeers feeds a node what its peers send and checks
// what its replica answers: the counts when it is complete, nothing (the
// registry then answers) when it is not.
func TestReplicaFollowsPeers(t *testing.T) {
	type step struct {
		data    func(t testing.TB) []byte
		resub   bool // the broker subscription was restored
		beat    bool // this node's beat, with members
		members []string
		wait    time.Duration // the clock moves on
	}
	send := func(typ, node, inc string, seq uint64, users um) step {
		return step{data: func(t testing.TB) []byte { return msg(t, typ, node, inc, seq, users) }}
	}
	raw := func(s string) step { return step{data: func(testing.TB) []byte { return []byte(s) }} }
	beat := func(members ...string) step { return step{beat: true, members: members} }
	wait := func(d time.Duration) step { return step{wait: d} }
	const ttl = herald.DefaultRegistryTTL
	tests := []struct {
		name     string
		members  []string
		steps    []step
		complete bool
		want     um // when complete
	}{
		{"a new incarnation is followed from its first beat", []string{"b"},
			[]step{send(countsBeat, "b", "i1", 0, nil), send(countsDelta, "b", "i1", 1, um{"u": 2, "v": 1})}, true, um{"u": 2, "v": 1}},
		{"or from its first delta", []string{"b"},
			[]step{send(countsDelta, "b", "i1", 1, um{"u": 1}), send(countsDelta, "b", "i1", 2, um{"u": 1, "v": 1}), send(countsDelta, "b", "i1", 3, um{"v": -1})}, true, um{"u": 2}},
		{"a node joined midway waits for a snapshot", []string{"b"},
			[]step{send(countsDelta, "b", "i1", 4, um{"u": 1})}, false, nil},
		{"whose snapshot makes it complete", []string{"b"},
			[]step{send(countsDelta, "b", "i1", 4, um{"u": 1}), send(countsSnapshot, "b", "i1", 4, um{"u": 3, "w": 0}), send(countsDelta, "b", "i1", 5, um{"u": -1})}, true, um{"u": 2}},
		{"a gap waits for the snapshot", []string{"b"},
			[]step{send(countsBeat, "b", "i1", 0, nil), send(countsDelta, "b", "i1", 1, um{"u": 1}), send(countsDelta, "b", "i1", 3, um{"u": 1})}, false, nil},
		{"a beat reveals a lost last delta", []string{"b"},
			[]step{send(countsDelta, "b", "i1", 1, um{"u": 1}), send(countsBeat, "b", "i1", 2, nil)}, false, nil},
		{"a beat in step changes nothing", []string{"b"},
			[]step{send(countsDelta, "b", "i1", 1, um{"u": 1}), send(countsBeat, "b", "i1", 1, nil)}, true, um{"u": 1}},
		{"a delta older than the snapshot is ignored", []string{"b"},
			[]step{send(countsSnapshot, "b", "i1", 5, um{"u": 3}), send(countsDelta, "b", "i1", 5, um{"u": 1}), send(countsDelta, "b", "i1", 6, um{"v": 1})}, true, um{"u": 3, "v": 1}},
		{"a restarted node starts over", []string{"b"},
			[]step{send(countsDelta, "b", "i1", 1, um{"u": 2}), send(countsBeat, "b", "i2", 0, nil)}, true, um{}},
		{"a node that left is not counted", nil,
			[]step{send(countsDelta, "b", "i1", 1, um{"u": 2}), send(countsLeave, "b", "i1", 0, nil)}, true, um{}},
		{"the registry's member that never spoke makes it incomplete", []string{"b", "c"},
			[]step{send(countsBeat, "b", "i1", 0, nil)}, false, nil},
		{"until it speaks", []string{"b", "c"},
			[]step{send(countsBeat, "b", "i1", 0, nil), send(countsDelta, "c", "j", 1, um{"u": 1}), send(countsDelta, "b", "i1", 1, um{"u": 1})}, true, um{"u": 2}},
		{"a node heard but not yet listed counts too", []string{"b"},
			[]step{send(countsBeat, "b", "i1", 0, nil), send(countsDelta, "c", "j", 1, um{"u": 1})}, true, um{"u": 1}},
		{"members unknown until the first beat", nil,
			[]step{send(countsBeat, "b", "i1", 0, nil)}, false, nil},
		{"a restored subscription waits for snapshots", []string{"b"},
			[]step{send(countsDelta, "b", "i1", 1, um{"u": 1}), {resub: true}}, false, nil},
		{"and takes them", []string{"b"},
			[]step{send(countsDelta, "b", "i1", 1, um{"u": 1}), {resub: true}, send(countsSnapshot, "b", "i1", 1, um{"u": 1})}, true, um{"u": 1}},
		{"a node quiet for half a TTL is left to the registry", []string{"b"},
			[]step{send(countsDelta, "b", "i1", 1, um{"u": 1}), wait(ttl/2 + time.Millisecond)}, false, nil},
		{"but not before", []string{"b"},
			[]step{send(countsDelta, "b", "i1", 1, um{"u": 1}), wait(ttl / 2)}, true, um{"u": 1}},
		{"until it speaks again", []string{"b"},
			[]step{send(countsDelta, "b", "i1", 1, um{"u": 1}), wait(ttl/2 + time.Millisecond), beat("b"), send(countsBeat, "b", "i1", 1, nil)}, true, um{"u": 1}},
		{"a node quiet for a TTL is dropped", []string{"b"},
			[]step{send(countsDelta, "b", "i1", 1, um{"u": 1}), wait(ttl), beat()}, true, um{}},
		{"and its lapsed lease waited for", []string{"b"},
			[]step{send(countsDelta, "b", "i1", 1, um{"u": 1}), wait(ttl), beat("b")}, false, nil},
		{"its own messages and unreadable ones are dropped", []string{"b"},
			[]step{send(countsBeat, "b", "i1", 0, nil), send(countsDelta, "a", "x", 1, um{"u": 1}), raw(`{"t":"delta","n":"b","i":"i1","s":1,"u":{"u":"many"}}`),
				raw(`{"t":"delta","n":"b","i":"i1","u":{"u":1}}`), raw(`{"t":"snapshot","n":"b","i":"i1","s":1,"u":{"u":-1}}`), raw(`{"t":"what","n":"b","i":"i1"}`), raw(`[`)}, true, um{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := New(Config{Node: "a", TTL: ttl})
			clk := time.Unix(1e9, 0)
			n.now = func() time.Time { return clk }
			n.askAll = false
			if tc.name != "members unknown until the first beat" {
				n.beatPeers(append([]string{"a"}, tc.members...), true)
			}
			for _, s := range tc.steps {
				switch {
				case s.resub:
					n.HandleResubscribed()
				case s.beat:
					n.beatPeers(s.members, true)
				case s.wait > 0:
					clk = clk.Add(s.wait)
				default:
					n.HandleCounts(s.data(t))
				}
			}
			got, ok := n.replicaCounts([]herald.UserID{"u", "v", "w"})
			if ok != tc.complete {
				t.Fatalf("complete = %v, want %v (peers %+v)", ok, tc.complete, n.peers)
			}
			if ok && !maps.Equal(got, tc.want) {
				t.Fatalf("counts %v, want %v", got, tc.want)
			}
			if total, ok := n.replicaTotal(); ok {
				sum := 0
				for _, c := range tc.want {
					sum += c
				}
				if total != sum {
					t.Fatalf("total %d, want %d", total, sum)
				}
			}
		})
	}
}

// TestSnapshotRequests checks who is asked for a snapshot, and that a
// node asked answers with what it holds, numbered after its last delta.
func TestSnapshotRequests(t *testing.T) {
	n := New(Config{Node: "a"})
	n.HandleCounts(msg(t, countsRequest, "b", "i", 0, nil))
	if !n.wantSnap {
		t.Fatal("a request to every node did not ask this one")
	}
	n.wantSnap = false
	b, _ := json.Marshal(countsMsg{Type: countsRequest, Node: "b", Inc: "i", To: "c"})
	n.HandleCounts(b)
	if n.wantSnap {
		t.Fatal("a request to c asked a")
	}
	b, _ = json.Marshal(countsMsg{Type: countsRequest, Node: "b", Inc: "i", To: "a"})
	n.HandleCounts(b)
	if !n.wantSnap {
		t.Fatal("a request to a did not ask it")
	}

	// What a sends then, and its peer c following it.
	rec := &recorder{}
	n.cfg.Broker = rec
	n.askAll, n.wantSnap = false, false
	n.mu.Lock()
	n.counted("u", +1)
	n.counted("u", +1)
	n.counted("v", +1)
	n.counted("v", -1)
	n.mu.Unlock()
	ctx := context.Background()
	n.sendCounts(ctx, false) // a delta
	n.sendCounts(ctx, false) // nothing new: nothing
	n.HandleCounts(msg(t, countsRequest, "c", "j", 0, nil))
	n.sendCounts(ctx, false) // the snapshot asked for
	n.sendCounts(ctx, true)  // a beat
	// Between them go a's requests for the snapshots it lacks, of b and
	// c (heard from by their requests only): once each, again at the beat.
	want := []string{`delta 1 map[u:2]`, `request to b`, `snapshot 2 map[u:2]`, `request to c`, `beat 2 map[]`, `request to b`, `request to c`}
	got := rec.summary(t)
	slices.Sort(got[5:]) // the beat's requests go in no particular order
	if !slices.Equal(got, want) {
		t.Fatalf("a sent %q, want %q", got, want)
	}
	c := New(Config{Node: "c"})
	c.beatPeers([]string{"a"}, true)
	for _, data := range rec.sent[1:] { // c joins after the delta: the snapshot brings it in
		c.HandleCounts(data)
	}
	if got, ok := c.replicaCounts([]herald.UserID{"u", "v"}); !ok || !maps.Equal(got, um{"u": 2}) {
		t.Fatalf("c's replica of a: %v, %v", got, ok)
	}
}

// recorder is a Broker that keeps the counts controls sent through it.
type recorder struct {
	herald.Broker
	sent [][]byte
}

func (r *recorder) Control(_ context.Context, c herald.Control) error {
	if c.Kind == herald.ControlCounts {
		r.sent = append(r.sent, c.Data)
	}
	return nil
}

func (r *recorder) summary(t *testing.T) []string {
	var out []string
	for _, data := range r.sent {
		m, err := decodeCounts(data)
		if err != nil {
			t.Fatal(err)
		}
		if m.Node != "a" || m.Inc == "" {
			t.Fatalf("sent as %q/%q", m.Node, m.Inc)
		}
		if m.Type == countsRequest {
			out = append(out, "request to "+m.To)
			continue
		}
		out = append(out, fmt.Sprintf("%s %d %v", m.Type, m.Seq, map[herald.UserID]int(m.Users)))
	}
	return out
}

// FuzzDecodeCounts checks that whatever reaches the bus is refused with an
// error or taken into the replica without a panic, and that the replica
// stays consistent: no user below zero when complete.
func FuzzDecodeCounts(f *testing.F) {
	for _, s := range []string{
		`{"t":"delta","n":"b","i":"i1","s":1,"u":{"u":2}}`,
		`{"t":"snapshot","n":"b","i":"i1","s":4,"u":{"u":3,"v":0}}`,
		`{"t":"beat","n":"b","i":"i1","s":7}`,
		`{"t":"request","n":"b","i":"i1","to":"a"}`,
		`{"t":"leave","n":"b","i":"i1"}`,
		`{"t":"snapshot","n":"b","i":"i1","s":4,"m":true,"u":{"u":3}}`,
		`{"t":"snapshot","n":"b","i":"i1","s":4,"p":1,"u":{"v":1}}`,
		`{"t":"delta","n":"b","i":"i1","s":2,"p":1,"u":{"v":1}}`,
		`{"t":"delta","n":"b","i":"i1","s":18446744073709551615,"u":{"u":-9223372036854775808}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeCounts(data)
		if err != nil {
			return
		}
		if m.Node == "" || m.Inc == "" {
			t.Fatalf("accepted %q without node or incarnation", data)
		}
		n := New(Config{Node: "a"})
		n.beatPeers(nil, true)
		n.HandleCounts(data)
		n.HandleCounts(data)
		if got, ok := n.replicaCounts([]herald.UserID{"u", "v"}); ok {
			for u, c := range got {
				if c <= 0 {
					t.Fatalf("%q: user %q counted %d", data, u, c)
				}
			}
		}
		for name, p := range n.peers {
			sum := 0
			for _, c := range p.counts {
				sum += c
			}
			if p.synced && sum != p.total {
				t.Fatalf("%q: peer %s total %d, its counts sum to %d", data, name, p.total, sum)
			}
		}
	})
}

// TestLargeCountsGoInParts: a node with more users than one message may
// carry (NATS refuses over 1 MiB) sends its delta as several and its
// snapshot in parts, each under the bound; a peer following it, or
// joining at the snapshot, counts every user, and a lost part leaves the
// peer waiting for the next snapshot rather than counting half.
func TestLargeCountsGoInParts(t *testing.T) {
	const users = 40000
	rec := &recorder{}
	a := New(Config{Node: "a", Broker: rec})
	a.askAll = false
	a.mu.Lock()
	for i := range users {
		a.counted(herald.UserID(fmt.Sprintf("user-%08d-with-a-longer-id", i)), +1)
	}
	a.mu.Unlock()
	ctx := context.Background()
	a.sendCounts(ctx, false) // the deltas
	deltas := len(rec.sent)
	a.HandleCounts(msg(t, countsRequest, "c", "j", 0, nil))
	a.sendCounts(ctx, false)            // the snapshot
	parts := len(rec.sent) - deltas - 1 // less a's request to c
	if deltas < 2 || parts < 2 {
		t.Fatalf("%d deltas and %d snapshot parts for %d users; want several of each", deltas, parts, users)
	}
	for i, data := range rec.sent {
		if len(data) > 1<<20 {
			t.Fatalf("message %d is %d bytes, over NATS's default 1 MiB", i, len(data))
		}
	}

	follow := func(msgs [][]byte) (int, bool) {
		c := New(Config{Node: "c"})
		c.beatPeers([]string{"a"}, true)
		for _, data := range msgs {
			c.HandleCounts(data)
		}
		return c.replicaTotal()
	}
	if total, ok := follow(rec.sent[:deltas]); !ok || total != users {
		t.Errorf("following the deltas: %d users, complete %v; want %d", total, ok, users)
	}
	snapshot := rec.sent[deltas:]
	if total, ok := follow(snapshot); !ok || total != users {
		t.Errorf("joining at the snapshot: %d users, complete %v; want %d", total, ok, users)
	}
	lost := slices.Concat(snapshot[:1], snapshot[2:])
	if total, ok := follow(lost); ok {
		t.Errorf("a snapshot with a part lost made the replica complete (%d users)", total)
	}
}
