package sqlite

import (
	"cmp"
	"slices"
	"sync"

	"github.com/herald-gw/herald"
)

// tailEntry is a message in the log that the applier has not moved into the
// tables yet.
type tailEntry struct {
	user herald.UserID
	off  uint64
	id   string
	ts   int64
	data []byte // points into the frame written to the log; never changed
}

func (e *tailEntry) message(epoch string) herald.Message {
	return herald.Message{
		ID: e.id, User: e.user, Offset: e.off, Epoch: epoch,
		Time: timeOf(e.ts), Data: append([]byte(nil), e.data...), // the caller may change it
	}
}

// tail is the unapplied part of the log, in memory, so that reads see every
// acknowledged message at once: a read takes what it needs of the tail
// first and reads the tables second. The appender adds a frame's entries
// before it acknowledges them, and the applier drops entries only after
// the transaction holding them committed, so every acknowledged message is
// in the tail snapshot or, if it left the tail meanwhile, in the tables the
// read sees next; one in both is the same message, and the reads keep the
// tables' copy (it has the flags).
type tail struct {
	mu     sync.Mutex
	order  []tailEntry // in log order; the applier applies a prefix
	byUser map[herald.UserID][]tailEntry
	end    logPos // the log position after the last entry of order
}

// add appends a frame's entries, which end at end in the log.
func (t *tail) add(entries []tailEntry, end logPos) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byUser == nil {
		t.byUser = make(map[herald.UserID][]tailEntry)
	}
	t.order = append(t.order, entries...)
	for _, e := range entries {
		t.byUser[e.user] = append(t.byUser[e.user], e)
	}
	t.end = end
}

// snapshot returns the entries to apply and where in the log they end. The
// appender only appends to order, so the prefix stays as it is until drop.
func (t *tail) snapshot() ([]tailEntry, logPos) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.order[:len(t.order):len(t.order)], t.end
}

// drop removes the first n entries, now committed to the tables.
func (t *tail) drop(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	newest := make(map[herald.UserID]uint64)
	for _, e := range t.order[:n] {
		newest[e.user] = max(newest[e.user], e.off)
	}
	for u, off := range newest {
		es := t.byUser[u]
		i := 0
		for i < len(es) && es[i].off <= off {
			i++
		}
		if i == len(es) {
			delete(t.byUser, u)
		} else {
			t.byUser[u] = slices.Clone(es[i:])
		}
	}
	t.order = slices.Clone(t.order[n:])
}

func (t *tail) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.order)
}

// last returns user's newest offset in the tail, 0 if it has none.
func (t *tail) last(user herald.UserID) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if es := t.byUser[user]; len(es) > 0 {
		return es[len(es)-1].off
	}
	return 0
}

// bounds returns user's oldest and newest offset in the tail (0, 0 if it
// has none).
func (t *tail) bounds(user herald.UserID) (first, last uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if es := t.byUser[user]; len(es) > 0 {
		return es[0].off, es[len(es)-1].off
	}
	return 0, 0
}

// since returns up to limit of user's entries with an offset above since,
// oldest first.
func (t *tail) since(user herald.UserID, since uint64, limit int) []tailEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	es := t.byUser[user]
	i := searchOff(es, since+1)
	return slices.Clone(es[i:min(len(es), i+limit)])
}

// before returns up to limit of user's entries with an offset below
// before, newest first.
func (t *tail) before(user herald.UserID, before uint64, limit int) []tailEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	es := t.byUser[user]
	j := searchOff(es, before)
	out := slices.Clone(es[max(0, j-limit):j])
	slices.Reverse(out)
	return out
}

// searchOff returns the index of the first of es (in offset order) with
// an offset of at least off.
func searchOff(es []tailEntry, off uint64) int {
	i, _ := slices.BinarySearchFunc(es, off, func(e tailEntry, off uint64) int { return cmp.Compare(e.off, off) })
	return i
}
