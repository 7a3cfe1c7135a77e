package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/herald-gw/herald"
)

// The count replica.
//
// Every reply to a notify says how many connections the message reached,
// cluster-wide, so every reply needs the other nodes' connection counts of
// its users. Asking the registry for them (one query per batch of replies)
// was a fifth of a three-node cluster's CPU per notification. Instead,
// each node tells the others of the changes to its own per-user counts,
// over the broker, and keeps a replica of theirs: a reply is then a few
// map lookups.
//
// What a node sends (herald.ControlCounts, encoded by countsMsg):
//
//   - delta: the per-user changes since its previous delta, numbered: seq
//     counts the node's deltas and snapshots, so a receiver that misses
//     one sees the gap at the next.
//   - snapshot: every user's count at seq, sent when another node asked.
//   - beat: the current seq, every TTL/3, so that a lost last delta is
//     noticed even when nothing changes, and a node that stopped speaking
//     can be dropped.
//   - request: a node wants a snapshot (of one node, or of every node:
//     at start, and after its broker subscription was restored).
//   - leave: a clean shutdown.
//
// Each process has an incarnation (random), so a node restarted under the
// same name is a new replica: it starts empty at seq 0, which is why a
// receiver may begin following a new incarnation at its first delta or
// beat without a snapshot.
//
// The replica is used only when it is complete: every node with a live
// lease in the registry (Registry.Nodes, read every TTL/3) and every node
// heard from is followed without a gap. Otherwise — at start, after a gap
// until the snapshot arrives, while a node the registry lists has not
// spoken — CountElsewhere asks the registry as before, so the replica can
// make a count faster but never more wrong than the registry's.

// Message types of countsMsg.
const (
	countsDelta    = "delta"
	countsSnapshot = "snapshot"
	countsBeat     = "beat"
	countsRequest  = "request"
	countsLeave    = "leave"
)

// countsMsg is the Data of a herald.ControlCounts.
type countsMsg struct {
	Type string `json:"t"`
	Node string `json:"n"`
	// Inc is the sender's incarnation: one per process.
	Inc string `json:"i"`
	// Seq numbers deltas and snapshots (the state after it); a beat's
	// is the last one sent.
	Seq uint64 `json:"s,omitempty"`
	// To is the node a request asks; empty asks every node.
	To string `json:"to,omitempty"`
	// Part numbers the parts of a snapshot too large for one message
	// (from 0), and More says that another follows; all carry its Seq.
	Part int  `json:"p,omitempty"`
	More bool `json:"m,omitempty"`
	// Users maps a user to the change of its count (delta) or to its
	// count (snapshot).
	Users map[herald.UserID]int `json:"u,omitempty"`
}

// maxCountsUsers bounds the users of one countsMsg a node accepts.
const maxCountsUsers = 1 << 22

// maxCountsBytes bounds a countsMsg a node sends, by an estimate of its
// users' JSON: NATS refuses a message over 1 MiB by default, so a large
// delta goes as several (each numbered) and a large snapshot in parts.
const maxCountsBytes = 256 << 10

// chunk splits users into maps whose JSON stays under maxCountsBytes; it
// returns at least one map, which may be empty.
func chunk(users map[herald.UserID]int) []map[herald.UserID]int {
	var out []map[herald.UserID]int
	cur, size := make(map[herald.UserID]int), 0
	for u, c := range users {
		sz := 2*len(u) + 24 // quotes, escapes, a colon, a number and a comma
		if size+sz > maxCountsBytes && len(cur) > 0 {
			out = append(out, cur)
			cur, size = make(map[herald.UserID]int), 0
		}
		cur[u] = c
		size += sz
	}
	return append(out, cur)
}

// decodeCounts parses and checks a countsMsg: another node's bytes, or
// anything that reached the bus.
func decodeCounts(data []byte) (countsMsg, error) {
	var m countsMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return countsMsg{}, fmt.Errorf("counts: %w", err)
	}
	switch {
	case m.Node == "" || m.Inc == "":
		return countsMsg{}, errors.New("counts: no node or incarnation")
	case len(m.Users) > maxCountsUsers:
		return countsMsg{}, fmt.Errorf("counts: %d users", len(m.Users))
	case m.Part < 0 || (m.Part > 0 || m.More) && m.Type != countsSnapshot:
		return countsMsg{}, fmt.Errorf("counts: part %d of a %s", m.Part, m.Type)
	}
	switch m.Type {
	case countsDelta:
		if m.Seq == 0 {
			return countsMsg{}, errors.New("counts: a delta numbered 0")
		}
	case countsSnapshot:
		for u, c := range m.Users {
			if c < 0 {
				return countsMsg{}, fmt.Errorf("counts: user %q has %d connections", u, c)
			}
		}
		if m.Users == nil {
			m.Users = make(map[herald.UserID]int) // a node without connections
		}
	case countsBeat, countsRequest, countsLeave:
	default:
		return countsMsg{}, fmt.Errorf("counts: unknown type %q", m.Type)
	}
	return m, nil
}

// peer is the replica of one other node's counts.
type peer struct {
	inc    string
	seq    uint64
	synced bool // counts hold the state after seq
	counts map[herald.UserID]int
	total  int
	heard  time.Time // when it last sent anything
	// requested: a snapshot was asked for since it went out of sync.
	requested bool
	// The parts of a snapshot received so far: Seq and last Part.
	building  map[herald.UserID]int
	buildSeq  uint64
	buildPart int
}

// follow makes counts, the state after seq, what the peer's replica
// holds, in sync.
func (p *peer) follow(counts map[herald.UserID]int, seq uint64) {
	p.counts, p.total, p.seq, p.synced, p.requested = counts, 0, seq, true, false
	for _, c := range counts {
		p.total += c
	}
}

// apply adds a delta. A count never goes below zero, whatever a delta
// says, and the total stays their sum.
func (p *peer) apply(users map[herald.UserID]int) {
	for u, d := range users {
		old := p.counts[u]
		c := max(old+d, 0)
		if d < 0 && c > old { // wrapped around
			c = 0
		}
		if c == 0 {
			delete(p.counts, u)
		} else {
			p.counts[u] = c
		}
		p.total += c - old
	}
}

// counted records that a connection of user opened (+1) or closed (-1)
// on this node, for the next delta; n.mu is held.
func (n *Node) counted(user herald.UserID, d int) {
	if c := n.local[user] + d; c > 0 {
		n.local[user] = c
	} else {
		delete(n.local, user)
	}
	if c := n.pend[user] + d; c != 0 {
		n.pend[user] = c
	} else {
		delete(n.pend, user)
	}
}

// sendCounts sends what the others need to hear from this node: a
// snapshot when one was asked for, else the delta of what changed, and a
// request for the snapshots this node lacks. Only Run calls it, so what
// it sends leaves in seq order.
func (n *Node) sendCounts(ctx context.Context, beat bool) {
	n.mu.Lock()
	var out []countsMsg
	switch {
	case n.wantSnap:
		n.seq++
		parts := chunk(n.local) // copies: n.local changes after the unlock
		for i, users := range parts {
			out = append(out, countsMsg{Type: countsSnapshot, Seq: n.seq, Part: i, More: i < len(parts)-1, Users: users})
		}
		clear(n.pend)
		n.wantSnap = false
	case len(n.pend) > 0:
		for _, users := range chunk(n.pend) {
			n.seq++
			out = append(out, countsMsg{Type: countsDelta, Seq: n.seq, Users: users})
		}
		n.pend = make(map[herald.UserID]int)
	case beat:
		out = append(out, countsMsg{Type: countsBeat, Seq: n.seq})
	}
	n.mu.Unlock()
	out = append(out, n.requests(beat)...)
	for _, m := range out {
		n.sendCountsMsg(ctx, m)
	}
}

// requests returns the snapshot requests to send: one to every node after
// a lost subscription, else one per peer out of sync, asked again at each
// beat while it stays out of sync.
func (n *Node) requests(beat bool) []countsMsg {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	if n.askAll {
		n.askAll = false
		for _, p := range n.peers {
			p.requested = true
		}
		return []countsMsg{{Type: countsRequest}}
	}
	var out []countsMsg
	for name, p := range n.peers {
		if !p.synced && (!p.requested || beat) {
			p.requested = true
			out = append(out, countsMsg{Type: countsRequest, To: name})
		}
	}
	return out
}

func (n *Node) sendCountsMsg(ctx context.Context, m countsMsg) {
	m.Node, m.Inc = n.cfg.Node, n.inc
	data, err := json.Marshal(m)
	if err == nil {
		err = n.cfg.Broker.Control(context.WithoutCancel(ctx), herald.Control{Kind: herald.ControlCounts, Data: data})
	}
	if err != nil {
		// A lost delta or snapshot is a gap the others see at the next
		// message and mend with a snapshot; meanwhile they ask the
		// registry.
		n.cfg.Log.Debug("could not send this node's connection counts", "type", m.Type, "err", err)
	}
}

// HandleCounts takes what another node sent with herald.ControlCounts
// into the replica. It is called from the broker's goroutine and never
// sends anything itself: what it asks for goes out with Run's next flush.
func (n *Node) HandleCounts(data []byte) {
	m, err := decodeCounts(data)
	if err != nil {
		n.cfg.Log.Debug("dropped an unreadable counts control", "err", err)
		return
	}
	if m.Node == n.cfg.Node {
		return
	}
	if m.Type == countsRequest {
		if m.To == "" || m.To == n.cfg.Node {
			n.mu.Lock()
			n.wantSnap = true
			n.mu.Unlock()
		}
	}
	n.pmu.Lock()
	defer n.pmu.Unlock()
	if m.Type == countsLeave {
		delete(n.peers, m.Node)
		return
	}
	p := n.peers[m.Node]
	if p == nil || p.inc != m.Inc {
		// A node not followed yet, or restarted: its new incarnation
		// began empty at seq 0.
		p = &peer{inc: m.Inc}
		n.peers[m.Node] = p
	}
	p.heard = n.now()
	switch m.Type {
	case countsSnapshot:
		switch {
		case m.Part == 0:
			p.building, p.buildSeq = m.Users, m.Seq
		case p.building != nil && p.buildSeq == m.Seq && p.buildPart+1 == m.Part:
			maps.Copy(p.building, m.Users)
		default: // a part was lost: wait for the next snapshot
			p.building = nil
			return
		}
		p.buildPart = m.Part
		if m.More {
			return
		}
		users := p.building
		p.building = nil
		if !p.synced || m.Seq >= p.seq {
			p.follow(users, m.Seq)
		}
	case countsDelta:
		switch {
		case p.synced && m.Seq <= p.seq:
			// Older than what a snapshot already holds.
		case p.synced && m.Seq == p.seq+1, !p.synced && m.Seq == 1:
			if !p.synced {
				p.follow(make(map[herald.UserID]int), 0)
			}
			p.apply(m.Users)
			p.seq = m.Seq
		default:
			p.synced = false // a gap: wait for the snapshot
		}
	case countsBeat:
		switch {
		case !p.synced && m.Seq == 0 && p.seq == 0:
			p.follow(make(map[herald.UserID]int), 0)
		case p.synced && m.Seq != p.seq:
			p.synced = false // a delta or snapshot was lost
		}
	}
}

// HandleResubscribed implements herald.BrokerResync: counts may have been
// lost while the broker's subscription was down, so every peer is
// followed again from a snapshot.
func (n *Node) HandleResubscribed() {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	for _, p := range n.peers {
		p.synced = false
	}
	n.askAll = true
}

// beatPeers runs at every beat: it drops the peers not heard from for a
// TTL (the registry no longer lists a dead node after that either) and
// takes the registry's members.
func (n *Node) beatPeers(members []string, ok bool) {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	now := n.now()
	for name, p := range n.peers {
		if now.Sub(p.heard) >= n.cfg.TTL {
			delete(n.peers, name)
		}
	}
	if ok {
		n.members = slices.DeleteFunc(members, func(m string) bool { return m == n.cfg.Node })
		n.membersKnown = true
	}
}

// completeLocked reports whether the replica can answer for the whole
// cluster: every member the registry lists is followed, and every node
// followed is in sync and was heard from within half a TTL. A node beats
// every third of a TTL, so one quieter than that may be dead: until the
// registry lets its lease lapse, or it speaks again, the registry answers
// for it, so the replica never counts a dead node longer than the
// registry lists it. n.pmu is held.
func (n *Node) completeLocked() bool {
	if !n.membersKnown {
		return false
	}
	for _, m := range n.members {
		if n.peers[m] == nil {
			return false
		}
	}
	now := n.now()
	for _, p := range n.peers {
		if !p.synced || now.Sub(p.heard) > n.cfg.TTL/2 {
			return false
		}
	}
	return true
}

// ReplicaComplete reports whether the replica of the other nodes' counts
// answers now (herald_cluster_replica_complete).
func (n *Node) ReplicaComplete() bool {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	return n.completeLocked()
}

// Counted reports how many counts were answered from the replica and
// from the registry (herald_cluster_counts_total).
func (n *Node) Counted() (replica, registry uint64) {
	return n.fromReplica.Load(), n.fromRegistry.Load()
}

// answersLocked reports whether the replica answers a count now, and
// counts the answer for herald_cluster_counts_total. n.pmu is held.
func (n *Node) answersLocked() bool {
	if !n.completeLocked() {
		n.fromRegistry.Add(1)
		return false
	}
	n.fromReplica.Add(1)
	return true
}

// replicaCounts answers CountElsewhere from the replica, or reports that
// it cannot.
func (n *Node) replicaCounts(users []herald.UserID) (map[herald.UserID]int, bool) {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	if !n.answersLocked() {
		return nil, false
	}
	out := make(map[herald.UserID]int, len(users))
	for _, p := range n.peers {
		for _, u := range users {
			if c := p.counts[u]; c > 0 {
				out[u] += c
			}
		}
	}
	return out, true
}

// replicaTotal answers TotalElsewhere from the replica, or reports that
// it cannot.
func (n *Node) replicaTotal() (int, bool) {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	if !n.answersLocked() {
		return 0, false
	}
	t := 0
	for _, p := range n.peers {
		t += p.total
	}
	return t, true
}

// refreshMembers reads the registry's members for the replica. A failed
// read keeps the last members: the replica goes on answering while the
// registry is down.
func (n *Node) refreshMembers(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.TTL/3)
	defer cancel()
	members, err := n.cfg.Registry.Nodes(ctx)
	n.beatPeers(members, err == nil)
}
