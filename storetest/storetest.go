// Package storetest is the behaviour suite every herald.Store must pass:
// offsets, ordering of commit callbacks, bounds, retention, inbox state. It
// uses only the herald.Store interface, so the memory and SQLite stores
// (and any future one, such as PostgreSQL) run the very same tests:
//
//	func TestBehaviour(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) herald.Store { … })
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-gw/herald"
)

// NewStore opens an empty store for one test and arranges for it to be
// closed when the test ends.
type NewStore func(t *testing.T) herald.Store

// Run runs the whole suite, each case in parallel on a store of its own.
func Run(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s herald.Store)
	}{
		{"OffsetsStartAtOneGapFree", testOffsets},
		{"InterleavedUsers", testInterleavedUsers},
		{"DefaultsAndIDs", testDefaults},
		{"ConcurrentSameUser", testConcurrentSameUser},
		{"Since", testSince},
		{"CancelledContext", testCancelledContext},
		{"CancelRace", testCancelRace},
		{"InvalidMessages", testInvalidMessages},
		{"AppendSetsOffsets", testAppendSetsOffsets},
		{"OffsetsUnderRace", testOffsetsUnderRace},
		{"Bounds", testBounds},
		{"TrimCount", testTrimCount},
		{"TrimAge", testTrimAge},
		{"TrimEverything", testTrimEverything},
		{"TrimConcurrentAppends", testTrimConcurrentAppends},
		{"Inbox", testInbox},
		{"InboxPageSize", testInboxPageSize},
		{"Mark", testMark},
		{"Counts", testCounts},
		{"AfterClose", testAfterClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// Msg returns a message for user with data as its payload.
func Msg(user herald.UserID, data string) *herald.Message {
	return &herald.Message{User: user, Data: []byte(data)}
}

// MustAppend appends msgs and fails the test on error.
func MustAppend(t *testing.T, s herald.Store, msgs ...*herald.Message) {
	t.Helper()
	if err := s.Append(context.Background(), msgs); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

// All pages through Since from offset 0 and returns the whole stream.
func All(t *testing.T, s herald.Store, user herald.UserID) []herald.Message {
	t.Helper()
	var out []herald.Message
	var since uint64
	for {
		page, err := s.Since(context.Background(), user, since, 0)
		if err != nil {
			t.Fatalf("Since(%q, %d): %v", user, since, err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		since = page[len(page)-1].Offset
	}
}

// CheckStream asserts the stream of user is offsets 1..len(want) with
// payloads want, in order, each carrying the store's epoch.
func CheckStream(t *testing.T, s herald.Store, user herald.UserID, want []string) {
	t.Helper()
	got := All(t, s, user)
	if len(got) != len(want) {
		t.Fatalf("stream %q: %d messages, want %d", user, len(got), len(want))
	}
	for i, m := range got {
		if m.Offset != uint64(i+1) || m.User != user || m.Epoch != s.Epoch() || string(m.Data) != want[i] {
			t.Fatalf("stream %q [%d] = {Offset:%d User:%q Epoch:%q Data:%q}, want {Offset:%d User:%q Epoch:%q Data:%q}",
				user, i, m.Offset, m.User, m.Epoch, m.Data, i+1, user, s.Epoch(), want[i])
		}
	}
}

func testOffsets(t *testing.T, s herald.Store) {
	if s.Epoch() == "" {
		t.Fatal("empty epoch")
	}
	// Appends of 1, 3 and 2 messages: offsets continue across Appends and
	// follow slice order within one.
	var want []string
	var next uint64 = 1
	for _, size := range []int{1, 3, 2} {
		batch := make([]*herald.Message, size)
		for i := range batch {
			batch[i] = Msg("u", fmt.Sprintf("m%d", len(want)))
			want = append(want, string(batch[i].Data))
		}
		MustAppend(t, s, batch...)
		for _, m := range batch {
			if m.Offset != next || m.Epoch != s.Epoch() {
				t.Fatalf("%s: Offset=%d Epoch=%q, want %d %q", m.Data, m.Offset, m.Epoch, next, s.Epoch())
			}
			next++
		}
	}
	CheckStream(t, s, "u", want)
}

func testInterleavedUsers(t *testing.T, s herald.Store) {
	users := []herald.UserID{"alice", "bob", "42", "user with spaces ✓"}
	want := map[herald.UserID][]string{}
	// One Append mixing users, then single Appends round-robin: each user's
	// offsets are its own, dense from 1.
	var mixed []*herald.Message
	for _, u := range users {
		mixed = append(mixed, Msg(u, string(u)+"-0"))
		want[u] = append(want[u], string(u)+"-0")
	}
	mixed = append(mixed, Msg("alice", "alice-1"))
	want["alice"] = append(want["alice"], "alice-1")
	MustAppend(t, s, mixed...)
	if mixed[0].Offset != 1 || mixed[1].Offset != 1 || mixed[4].Offset != 2 {
		t.Fatalf("mixed append offsets: %d %d %d, want 1 1 2", mixed[0].Offset, mixed[1].Offset, mixed[4].Offset)
	}
	for round := 1; round < 5; round++ {
		for _, u := range users {
			d := fmt.Sprintf("%s-r%d", u, round)
			m := Msg(u, d)
			MustAppend(t, s, m)
			want[u] = append(want[u], d)
			if m.Offset != uint64(len(want[u])) {
				t.Fatalf("%s: Offset=%d, want %d", d, m.Offset, len(want[u]))
			}
		}
	}
	for _, u := range users {
		CheckStream(t, s, u, want[u])
	}
}

func testDefaults(t *testing.T, s herald.Store) {
	fixed := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	given := &herald.Message{User: "u", ID: "my-id", Time: fixed, Data: []byte("given")}
	before := time.Now()
	batch := []*herald.Message{given}
	for i := range 200 {
		batch = append(batch, Msg("u", fmt.Sprint(i)))
	}
	MustAppend(t, s, batch...)
	if given.ID != "my-id" || !given.Time.Equal(fixed) {
		t.Fatalf("given ID/Time changed: %q %v", given.ID, given.Time)
	}
	ids := map[string]bool{}
	for _, m := range batch[1:] {
		if m.ID == "" || ids[m.ID] {
			t.Fatalf("id %q empty or duplicate", m.ID)
		}
		ids[m.ID] = true
		if m.Time.Before(before.Add(-time.Second)) || m.Time.After(time.Now().Add(time.Second)) {
			t.Fatalf("Time %v not set to now", m.Time)
		}
	}
	got := All(t, s, "u")
	for i, m := range got {
		if m.ID != batch[i].ID || !m.Time.Equal(batch[i].Time) {
			t.Fatalf("[%d] stored {ID:%q Time:%v}, appended {ID:%q Time:%v}", i, m.ID, m.Time, batch[i].ID, batch[i].Time)
		}
	}

	// Stored payloads are not aliased to the caller's or to earlier results.
	got[0].Data[0] = 'X'
	given.Data[0] = 'Y'
	if again := All(t, s, "u"); string(again[0].Data) != "given" {
		t.Fatalf("stored payload changed to %q", again[0].Data)
	}

	// Empty and nil payloads are fine.
	MustAppend(t, s, &herald.Message{User: "empty"}, &herald.Message{User: "empty", Data: []byte{}})
	for _, m := range All(t, s, "empty") {
		if len(m.Data) != 0 {
			t.Fatalf("empty payload came back as %q", m.Data)
		}
	}
}

func testConcurrentSameUser(t *testing.T, s herald.Store) {
	const (
		workers = 50
		appends = 20 // per worker; every 4th is a batch of 3
	)
	type rec struct {
		offset uint64
		data   string
	}
	results := make([][]rec, workers)
	errs := make(chan error, workers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			<-start
			for j := range appends {
				size := 1
				if j%4 == 0 {
					size = 3
				}
				batch := make([]*herald.Message, size)
				for k := range batch {
					batch[k] = Msg("shared", fmt.Sprintf("w%d-a%d-m%d", w, j, k))
				}
				if err := s.Append(context.Background(), batch); err != nil {
					errs <- err
					return
				}
				for k, m := range batch {
					if k > 0 && m.Offset != batch[k-1].Offset+1 {
						errs <- fmt.Errorf("batch not contiguous: %d after %d", m.Offset, batch[k-1].Offset)
						return
					}
					results[w] = append(results[w], rec{m.Offset, string(m.Data)})
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	byOffset := map[uint64]string{}
	for w, rs := range results {
		for i, r := range rs {
			if i > 0 && r.offset <= rs[i-1].offset {
				t.Fatalf("worker %d: offset %d after %d", w, r.offset, rs[i-1].offset)
			}
			if prev, dup := byOffset[r.offset]; dup {
				t.Fatalf("offset %d given to %q and %q", r.offset, prev, r.data)
			}
			byOffset[r.offset] = r.data
		}
	}
	total := workers * (appends + 2*appends/4)
	want := make([]string, total)
	for off := 1; off <= total; off++ {
		d, ok := byOffset[uint64(off)]
		if !ok {
			t.Fatalf("offset %d not assigned (gap); %d offsets assigned", off, len(byOffset))
		}
		want[off-1] = d
	}
	CheckStream(t, s, "shared", want)
}

func testSince(t *testing.T, s herald.Store) {
	const n = 1100 // more than one page, in a single (oversized) Append
	batch := make([]*herald.Message, n)
	for i := range batch {
		batch[i] = Msg("u", fmt.Sprintf("u-%d", i+1))
	}
	MustAppend(t, s, batch...)
	MustAppend(t, s, Msg("v", "v-1"), Msg("v", "v-2"), Msg("v", "v-3"))

	tests := []struct {
		name         string
		user         herald.UserID
		since        uint64
		limit        int
		first, count int // expected offsets first .. first+count-1
	}{
		{name: "limit 0 means 1000", user: "u", since: 0, limit: 0, first: 1, count: 1000},
		{name: "negative limit means 1000", user: "u", since: 0, limit: -5, first: 1, count: 1000},
		{name: "limit above 1000 capped", user: "u", since: 0, limit: 5000, first: 1, count: 1000},
		{name: "small limit", user: "u", since: 0, limit: 10, first: 1, count: 10},
		{name: "second page", user: "u", since: 1000, limit: 0, first: 1001, count: 100},
		{name: "tail shorter than limit", user: "u", since: 1095, limit: 10, first: 1096, count: 5},
		{name: "since last offset", user: "u", since: n, limit: 10},
		{name: "since beyond end", user: "u", since: n + 500, limit: 10},
		{name: "since max uint64", user: "u", since: math.MaxUint64, limit: 10},
		{name: "since max int64", user: "u", since: math.MaxInt64, limit: 10},
		{name: "other user", user: "v", since: 1, limit: 0, first: 2, count: 2},
		{name: "unknown user", user: "nobody", since: 0, limit: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Since(context.Background(), tc.user, tc.since, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.count {
				t.Fatalf("got %d messages, want %d", len(got), tc.count)
			}
			for i, m := range got {
				off := uint64(tc.first + i)
				if m.Offset != off || m.User != tc.user || m.Epoch != s.Epoch() ||
					string(m.Data) != fmt.Sprintf("%s-%d", tc.user, off) {
					t.Fatalf("[%d] = {Offset:%d User:%q Epoch:%q Data:%q}, want offset %d", i, m.Offset, m.User, m.Epoch, m.Data, off)
				}
			}
		})
	}
}

func testCancelledContext(t *testing.T, s herald.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := Msg("u", "never")
	if err := s.Append(ctx, []*herald.Message{m}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with cancelled ctx: %v, want context.Canceled", err)
	}
	if m.Offset != 0 {
		t.Fatalf("cancelled message got Offset %d", m.Offset)
	}
	// Nothing stored, and no offset consumed.
	m = Msg("u", "first")
	MustAppend(t, s, m)
	if m.Offset != 1 {
		t.Fatalf("after a cancelled Append, Offset = %d, want 1", m.Offset)
	}
	CheckStream(t, s, "u", []string{"first"})
}

// testCancelRace cancels Appends while they are in flight: each must either
// succeed and be stored, or fail and not be stored, never anything between,
// and the stored stream stays gap-free.
func testCancelRace(t *testing.T, s herald.Store) {
	const workers, appends = 16, 30
	var (
		mu        sync.Mutex
		succeeded = map[string]uint64{}
		failed    = map[string]bool{}
		wg        sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for j := range appends {
				ctx, cancel := context.WithCancel(context.Background())
				m := Msg("u", fmt.Sprintf("w%d-%d", w, j))
				if j%3 != 0 {
					go cancel()
				}
				err := s.Append(ctx, []*herald.Message{m})
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					succeeded[string(m.Data)] = m.Offset
				case errors.Is(err, context.Canceled):
					failed[string(m.Data)] = true
				default:
					t.Errorf("Append: %v", err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	stream := All(t, s, "u")
	if len(stream) != len(succeeded) {
		t.Fatalf("%d messages stored, %d Appends succeeded", len(stream), len(succeeded))
	}
	for i, m := range stream {
		d := string(m.Data)
		if m.Offset != uint64(i+1) {
			t.Fatalf("gap: [%d] has offset %d", i, m.Offset)
		}
		if failed[d] {
			t.Fatalf("%s stored although its Append failed", d)
		}
		if succeeded[d] != m.Offset {
			t.Fatalf("%s stored at %d, Append reported %d", d, m.Offset, succeeded[d])
		}
	}
	t.Logf("%d succeeded, %d cancelled", len(succeeded), len(failed))
}

func testInvalidMessages(t *testing.T, s herald.Store) {
	tests := []struct {
		name string
		msgs []*herald.Message
	}{
		{"nil message", []*herald.Message{Msg("u", "ok"), nil}},
		{"no user", []*herald.Message{Msg("u", "ok"), Msg("", "nobody")}},
	}
	for _, tc := range tests {
		if err := s.Append(context.Background(), tc.msgs); err == nil {
			t.Errorf("%s: Append succeeded", tc.name)
		}
	}
	if err := s.Append(context.Background(), nil); err != nil {
		t.Errorf("empty Append: %v", err)
	}
	CheckStream(t, s, "u", nil) // a rejected Append stores none of its messages
}

func testAfterClose(t *testing.T, s herald.Store) {
	MustAppend(t, s, Msg("u", "before"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, msgs := range [][]*herald.Message{{Msg("u", "after")}, nil} {
		err := s.Append(context.Background(), msgs)
		if err == nil {
			t.Fatalf("Append(%d messages) after Close succeeded", len(msgs))
		}
		if code := herald.ErrorCodeOf(err); code != herald.EUnavailable {
			t.Errorf("Append after Close: code %q, want %q (%v)", code, herald.EUnavailable, err)
		}
	}
	ctx := context.Background()
	calls := map[string]func() error{
		"Since":     func() error { _, err := s.Since(ctx, "u", 0, 0); return err },
		"Bounds":    func() error { _, _, err := s.Bounds(ctx, "u"); return err },
		"Trim":      func() error { _, err := s.Trim(ctx, 1, time.Time{}); return err },
		"Inbox":     func() error { _, err := s.Inbox(ctx, herald.InboxQuery{User: "u"}); return err },
		"Mark ids":  func() error { _, err := s.Mark(ctx, "u", herald.MarkRead, []string{"x"}, false); return err },
		"Mark none": func() error { _, err := s.Mark(ctx, "u", herald.MarkRead, nil, false); return err },
		"Mark all":  func() error { _, err := s.Mark(ctx, "u", herald.MarkRead, nil, true); return err },
		"Counts":    func() error { _, err := s.Counts(ctx, "u"); return err },
	}
	for name, call := range calls {
		if code := herald.ErrorCodeOf(call()); code != herald.EUnavailable {
			t.Errorf("%s after Close: code %q, want %q", name, code, herald.EUnavailable)
		}
	}
	if s.Epoch() == "" {
		t.Error("Epoch after Close is empty")
	}
}

func testAppendSetsOffsets(t *testing.T, s herald.Store) {
	ctx := context.Background()
	// Offsets and the epoch are set when Append returns.
	a, b := Msg("u", "a"), Msg("v", "b")
	if err := s.Append(ctx, []*herald.Message{a, b}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if a.Offset != 1 || b.Offset != 1 || a.Epoch != s.Epoch() || b.Epoch != s.Epoch() {
		t.Fatalf("offsets %d %d epochs %q %q", a.Offset, b.Offset, a.Epoch, b.Epoch)
	}
	// An empty Append succeeds.
	if err := s.Append(ctx, nil); err != nil {
		t.Fatalf("empty Append: %v", err)
	}
	// One that fails sets no offset.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for name, try := range map[string]func(m *herald.Message) error{
		"invalid":   func(m *herald.Message) error { return s.Append(ctx, []*herald.Message{m, Msg("", "x")}) },
		"cancelled": func(m *herald.Message) error { return s.Append(cancelled, []*herald.Message{m}) },
	} {
		m := Msg("u", "x")
		if err := try(m); err == nil || m.Offset != 0 {
			t.Fatalf("%s Append: err %v, offset %d", name, err, m.Offset)
		}
	}
}

// testOffsetsUnderRace races Appends to a few users: every user's offsets
// must come out exactly 1..n, each once, whatever order the Appends
// return in. (Delivery order is not the Store's business: sessions order
// by offset.)
func testOffsetsUnderRace(t *testing.T, s herald.Store) {
	const workers, appends = 32, 40
	users := []herald.UserID{"a", "b", "c"}
	var (
		mu       sync.Mutex
		assigned = map[herald.UserID][]uint64{}
		wg       sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for j := range appends {
				// Mostly single messages, sometimes a batch over two users.
				batch := []*herald.Message{Msg(users[(w+j)%len(users)], fmt.Sprint(w, j))}
				if j%5 == 0 {
					batch = append(batch, Msg(users[(w+j+1)%len(users)], fmt.Sprint(w, j, "+")))
				}
				if err := s.Append(context.Background(), batch); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				for _, m := range batch {
					assigned[m.User] = append(assigned[m.User], m.Offset)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	total := 0
	for _, u := range users {
		offs := slices.Sorted(slices.Values(assigned[u]))
		for i, off := range offs {
			if off != uint64(i+1) {
				t.Fatalf("user %q: offsets %v are not 1..%d", u, offs, len(offs))
			}
		}
		_, last, err := s.Bounds(context.Background(), u)
		if err != nil || last != uint64(len(offs)) {
			t.Fatalf("user %q: last %d (%v), %d assigned", u, last, err, len(offs))
		}
		total += len(offs)
	}
	if want := workers * (appends + appends/5); total != want {
		t.Fatalf("%d messages stored, want %d", total, want)
	}
}

// at returns a message of user with payload data and Time t.
func at(user herald.UserID, data string, t time.Time) *herald.Message {
	m := Msg(user, data)
	m.Time = t
	return m
}

func checkBounds(t *testing.T, s herald.Store, user herald.UserID, first, last uint64) {
	t.Helper()
	f, l, err := s.Bounds(context.Background(), user)
	if err != nil {
		t.Fatalf("Bounds(%q): %v", user, err)
	}
	if f != first || l != last {
		t.Fatalf("Bounds(%q) = %d, %d; want %d, %d", user, f, l, first, last)
	}
}

// Trim applies retention and fails the test on error.
func Trim(t *testing.T, s herald.Store, keep int, before time.Time) int {
	t.Helper()
	n, err := s.Trim(context.Background(), keep, before)
	if err != nil {
		t.Fatalf("Trim(%d, %v): %v", keep, before, err)
	}
	return n
}

// CheckOffsets asserts the retained stream of user is exactly offsets
// first..last, in order, with payloads "<user>-<offset>".
func CheckOffsets(t *testing.T, s herald.Store, user herald.UserID, first, last uint64) {
	t.Helper()
	got := All(t, s, user)
	var want uint64
	if first != 0 {
		want = last - first + 1
	}
	if uint64(len(got)) != want {
		t.Fatalf("stream %q holds %d messages, want %d (%d..%d)", user, len(got), want, first, last)
	}
	for i, m := range got {
		off := first + uint64(i)
		if m.Offset != off || string(m.Data) != fmt.Sprintf("%s-%d", user, off) {
			t.Fatalf("stream %q [%d] = offset %d %q, want %d", user, i, m.Offset, m.Data, off)
		}
	}
	checkBounds(t, s, user, first, last)
}

// Fill appends n messages to user, with payloads "<user>-<offset>" (it
// assumes user's stream is at last offset from).
func Fill(t *testing.T, s herald.Store, user herald.UserID, from uint64, n int) {
	t.Helper()
	batch := make([]*herald.Message, n)
	for i := range batch {
		batch[i] = Msg(user, fmt.Sprintf("%s-%d", user, from+uint64(i)+1))
	}
	MustAppend(t, s, batch...)
}

func testBounds(t *testing.T, s herald.Store) {
	future := time.Now().Add(time.Hour)
	steps := []struct {
		name        string
		do          func(t *testing.T)
		user        herald.UserID
		first, last uint64
	}{
		{"never written", nil, "u", 0, 0},
		{"after one Append", func(t *testing.T) { Fill(t, s, "u", 0, 3) }, "u", 1, 3},
		{"other users unaffected", nil, "other", 0, 0},
		{"after another", func(t *testing.T) { Fill(t, s, "u", 3, 2) }, "u", 1, 5},
		{"count trim moves first", func(t *testing.T) { Trim(t, s, 2, time.Time{}) }, "u", 4, 5},
		{"age trim of all: first 0, last kept", func(t *testing.T) { Trim(t, s, 0, future) }, "u", 0, 5},
		{"Append continues after last", func(t *testing.T) { Fill(t, s, "u", 5, 1) }, "u", 6, 6},
	}
	for _, st := range steps {
		if st.do != nil {
			st.do(t)
		}
		t.Run(st.name, func(t *testing.T) { CheckOffsets(t, s, st.user, st.first, st.last) })
	}
}

func testTrimCount(t *testing.T, s herald.Store) {
	Fill(t, s, "a", 0, 5)
	Fill(t, s, "b", 0, 2)
	steps := []struct {
		name       string
		do         func(t *testing.T) // appends before the Trim
		keep       int
		deleted    int
		a, b, c, d [2]uint64 // first, last of each user afterwards
	}{
		{name: "no limits", keep: 0, deleted: 0, a: [2]uint64{1, 5}, b: [2]uint64{1, 2}},
		{name: "keep 3", keep: 3, deleted: 2, a: [2]uint64{3, 5}, b: [2]uint64{1, 2}},
		{name: "again: nothing to do", keep: 3, deleted: 0, a: [2]uint64{3, 5}, b: [2]uint64{1, 2}},
		{name: "keep more than there is", keep: 100, deleted: 0, a: [2]uint64{3, 5}, b: [2]uint64{1, 2}},
		{name: "new users and Appends since", do: func(t *testing.T) {
			Fill(t, s, "a", 5, 2)
			Fill(t, s, "c", 0, 4)
			Fill(t, s, "d", 0, 3)
		}, keep: 3, deleted: 3, a: [2]uint64{5, 7}, b: [2]uint64{1, 2}, c: [2]uint64{2, 4}, d: [2]uint64{1, 3}},
		// A smaller keep applies to streams that did not grow since.
		{name: "keep 1", keep: 1, deleted: 2 + 1 + 2 + 2, a: [2]uint64{7, 7}, b: [2]uint64{2, 2}, c: [2]uint64{4, 4}, d: [2]uint64{3, 3}},
		{name: "keep negative: no count limit", keep: -1, deleted: 0, a: [2]uint64{7, 7}, b: [2]uint64{2, 2}, c: [2]uint64{4, 4}, d: [2]uint64{3, 3}},
		{name: "Appends after trimming continue", do: func(t *testing.T) { Fill(t, s, "b", 2, 3) },
			keep: 2, deleted: 2, a: [2]uint64{7, 7}, b: [2]uint64{4, 5}, c: [2]uint64{4, 4}, d: [2]uint64{3, 3}},
	}
	for _, st := range steps {
		if st.do != nil {
			st.do(t)
		}
		if n := Trim(t, s, st.keep, time.Time{}); n != st.deleted {
			t.Fatalf("%s: Trim deleted %d, want %d", st.name, n, st.deleted)
		}
		t.Run(st.name, func(t *testing.T) {
			for u, want := range map[herald.UserID][2]uint64{"a": st.a, "b": st.b, "c": st.c, "d": st.d} {
				last := want[1]
				if want[0] == 0 { // never written: 0, 0
					last = 0
				}
				CheckOffsets(t, s, u, want[0], last)
			}
		})
	}
}

func testTrimAge(t *testing.T, s herald.Store) {
	base := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	minute := func(n int) time.Time { return base.Add(time.Duration(n) * time.Minute) }
	// u: one message a minute. v: a single new message. w: its times out
	// of order (a caller may set Time): 0, 5, 1 minutes.
	var batch []*herald.Message
	for i := range 5 {
		batch = append(batch, at("u", fmt.Sprintf("u-%d", i+1), minute(i)))
	}
	MustAppend(t, s, batch...)
	MustAppend(t, s, at("v", "v-1", minute(10)))
	MustAppend(t, s, at("w", "w-1", minute(0)), at("w", "w-2", minute(5)), at("w", "w-3", minute(1)))

	steps := []struct {
		name    string
		keep    int
		before  time.Time
		deleted int
		u, v, w [2]uint64
	}{
		{"before everything", 0, minute(-1), 0, [2]uint64{1, 5}, [2]uint64{1, 1}, [2]uint64{1, 3}},
		{"exactly the oldest time keeps it", 0, minute(0), 0, [2]uint64{1, 5}, [2]uint64{1, 1}, [2]uint64{1, 3}},
		// w-3 is older than 2 minutes, so w-1 and w-2 before it go too:
		// retention only trims from the front.
		{"older than 2m30s", 0, minute(2).Add(30 * time.Second), 3 + 3, [2]uint64{4, 5}, [2]uint64{1, 1}, [2]uint64{0, 3}},
		{"same again", 0, minute(2).Add(30 * time.Second), 0, [2]uint64{4, 5}, [2]uint64{1, 1}, [2]uint64{0, 3}},
		{"age and count together", 1, minute(1), 1, [2]uint64{5, 5}, [2]uint64{1, 1}, [2]uint64{0, 3}},
		{"everything", 0, minute(60), 2, [2]uint64{0, 5}, [2]uint64{0, 1}, [2]uint64{0, 3}},
	}
	for _, st := range steps {
		if n := Trim(t, s, st.keep, st.before); n != st.deleted {
			t.Fatalf("%s: Trim deleted %d, want %d", st.name, n, st.deleted)
		}
		t.Run(st.name, func(t *testing.T) {
			CheckOffsets(t, s, "u", st.u[0], st.u[1])
			CheckOffsets(t, s, "v", st.v[0], st.v[1])
			CheckOffsets(t, s, "w", st.w[0], st.w[1])
		})
	}
}

func testTrimEverything(t *testing.T, s herald.Store) {
	ctx := context.Background()
	Fill(t, s, "u", 0, 4)
	if _, err := s.Mark(ctx, "u", herald.MarkRead, nil, true); err != nil {
		t.Fatal(err)
	}
	if n := Trim(t, s, 0, time.Now().Add(time.Minute)); n != 4 {
		t.Fatalf("Trim deleted %d, want 4", n)
	}
	CheckOffsets(t, s, "u", 0, 4)
	if got, err := s.Since(ctx, "u", 0, 0); err != nil || len(got) != 0 {
		t.Fatalf("Since after trimming everything: %d messages, %v", len(got), err)
	}
	if items, err := s.Inbox(ctx, herald.InboxQuery{User: "u", Status: herald.InboxAll}); err != nil || len(items) != 0 {
		t.Fatalf("Inbox after trimming everything: %d items, %v", len(items), err)
	}
	if c, err := s.Counts(ctx, "u"); err != nil || c != (herald.InboxCounts{}) {
		t.Fatalf("Counts after trimming everything: %+v, %v", c, err)
	}
	// Offsets never restart: the next message is 5, unread.
	m := Msg("u", "u-5")
	MustAppend(t, s, m)
	if m.Offset != 5 {
		t.Fatalf("Append after trimming everything: offset %d, want 5", m.Offset)
	}
	CheckOffsets(t, s, "u", 5, 5)
	if c, err := s.Counts(ctx, "u"); err != nil || c != (herald.InboxCounts{Unread: 1, Unseen: 1}) {
		t.Fatalf("Counts: %+v, %v", c, err)
	}
	// And again, now that the newest offset is the only record of last.
	Trim(t, s, 0, time.Now().Add(time.Minute))
	m = Msg("u", "u-6")
	MustAppend(t, s, m)
	if m.Offset != 6 {
		t.Fatalf("second Append after trimming everything: offset %d, want 6", m.Offset)
	}
}

// testTrimConcurrentAppends trims while Appends run: streams stay gap-free
// from their first retained offset, and nothing newer than keep is lost.
func testTrimConcurrentAppends(t *testing.T, s herald.Store) {
	const workers, appends, keep = 8, 60, 10
	users := []herald.UserID{"a", "b"}
	stop := make(chan struct{})
	trimmed := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				trimmed <- nil
				return
			default:
			}
			if _, err := s.Trim(context.Background(), keep, time.Time{}); err != nil {
				trimmed <- err
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for j := range appends {
				if err := s.Append(context.Background(), []*herald.Message{Msg(users[j%2], fmt.Sprint(w, j))}); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	if err := <-trimmed; err != nil {
		t.Fatal(err)
	}
	Trim(t, s, keep, time.Time{})
	for _, u := range users {
		first, last, err := s.Bounds(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		if last != workers*appends/2 || first != last-keep+1 {
			t.Fatalf("%q: bounds %d, %d, want %d, %d", u, first, last, workers*appends/2-keep+1, workers*appends/2)
		}
		got := All(t, s, u)
		for i, m := range got {
			if m.Offset != first+uint64(i) {
				t.Fatalf("%q: [%d] offset %d, want %d", u, i, m.Offset, first+uint64(i))
			}
		}
	}
}

// FlagsOf returns the inbox flags of every retained message of user by id,
// as "srA"-style strings: s seen, r read, a archived, - for unset.
func FlagsOf(t *testing.T, s herald.Store, user herald.UserID) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, status := range []herald.InboxStatus{herald.InboxAll, herald.InboxArchived} {
		var before uint64
		for {
			items, err := s.Inbox(context.Background(), herald.InboxQuery{User: user, Status: status, Before: before, Limit: herald.MaxInboxLimit})
			if err != nil {
				t.Fatalf("Inbox: %v", err)
			}
			for _, it := range items {
				f := []byte("---")
				if it.Seen {
					f[0] = 's'
				}
				if it.Read {
					f[1] = 'r'
				}
				if it.Archived {
					f[2] = 'a'
				}
				out[it.ID] = string(f)
			}
			if len(items) < herald.MaxInboxLimit {
				break
			}
			before = items[len(items)-1].Offset
		}
	}
	return out
}

// Mark sets mark on ids (or all) and fails the test on error.
func Mark(t *testing.T, s herald.Store, user herald.UserID, m herald.Mark, ids []string, all bool) []string {
	t.Helper()
	changed, err := s.Mark(context.Background(), user, m, ids, all)
	if err != nil {
		t.Fatalf("Mark(%q, %v, %v, %v): %v", user, m, ids, all, err)
	}
	slices.Sort(changed)
	return changed
}

func testInbox(t *testing.T, s herald.Store) {
	ctx := context.Background()
	fixed := time.Date(2025, 6, 7, 8, 9, 10, 11, time.UTC)
	var batch []*herald.Message
	for i := 1; i <= 10; i++ {
		batch = append(batch, &herald.Message{User: "u", ID: fmt.Sprintf("id%d", i), Time: fixed.Add(time.Duration(i)), Data: []byte(fmt.Sprintf("u-%d", i))})
	}
	MustAppend(t, s, batch...)
	MustAppend(t, s, &herald.Message{User: "other", ID: "o1", Data: []byte("other-1")})
	Mark(t, s, "u", herald.MarkSeen, []string{"id1"}, false)
	Mark(t, s, "u", herald.MarkRead, []string{"id2", "id4"}, false)
	Mark(t, s, "u", herald.MarkArchived, []string{"id6", "id8"}, false)

	tests := []struct {
		name string
		q    herald.InboxQuery
		want []uint64 // offsets, newest first
	}{
		{"all (the zero status)", herald.InboxQuery{User: "u"}, []uint64{10, 9, 7, 5, 4, 3, 2, 1}},
		{"unread", herald.InboxQuery{User: "u", Status: herald.InboxUnread}, []uint64{10, 9, 7, 5, 3, 1}},
		{"archived", herald.InboxQuery{User: "u", Status: herald.InboxArchived}, []uint64{8, 6}},
		{"before 5", herald.InboxQuery{User: "u", Before: 5}, []uint64{4, 3, 2, 1}},
		{"first page of 3", herald.InboxQuery{User: "u", Limit: 3}, []uint64{10, 9, 7}},
		{"second page of 3", herald.InboxQuery{User: "u", Before: 7, Limit: 3}, []uint64{5, 4, 3}},
		{"last page of 3", herald.InboxQuery{User: "u", Before: 3, Limit: 3}, []uint64{2, 1}},
		{"unread before 4", herald.InboxQuery{User: "u", Status: herald.InboxUnread, Before: 4}, []uint64{3, 1}},
		{"archived before 8", herald.InboxQuery{User: "u", Status: herald.InboxArchived, Before: 8}, []uint64{6}},
		{"before the first", herald.InboxQuery{User: "u", Before: 1}, nil},
		{"before beyond the newest", herald.InboxQuery{User: "u", Before: 1000, Limit: 1}, []uint64{10}},
		{"before max uint64", herald.InboxQuery{User: "u", Before: math.MaxUint64, Limit: 1}, []uint64{10}},
		{"unknown user", herald.InboxQuery{User: "nobody"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			items, err := s.Inbox(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, it := range items {
				got = append(got, it.Offset)
				src := batch[it.Offset-1]
				if it.User != "u" || it.ID != src.ID || !it.Time.Equal(src.Time) || it.Epoch != s.Epoch() || string(it.Data) != string(src.Data) {
					t.Errorf("item %d = {User:%q ID:%q Time:%v Epoch:%q Data:%q}, appended {%q %q %v %q %q}",
						it.Offset, it.User, it.ID, it.Time, it.Epoch, it.Data, src.User, src.ID, src.Time, s.Epoch(), src.Data)
				}
				wantSeen := it.Offset == 1 || it.Offset%2 == 0 && it.Offset <= 8
				wantRead := it.Offset%2 == 0 && it.Offset <= 8
				wantArchived := it.Offset == 6 || it.Offset == 8
				if it.Seen != wantSeen || it.Read != wantRead || it.Archived != wantArchived {
					t.Errorf("item %d: seen %v read %v archived %v, want %v %v %v", it.Offset, it.Seen, it.Read, it.Archived, wantSeen, wantRead, wantArchived)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("offsets %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := s.Inbox(ctx, herald.InboxQuery{User: "u", Status: 99}); herald.ErrorCodeOf(err) != herald.EInvalidRequest {
		t.Fatalf("unknown status: %v, want an %s error", err, herald.EInvalidRequest)
	}
	// Items are copies.
	items, _ := s.Inbox(ctx, herald.InboxQuery{User: "u", Limit: 1})
	items[0].Data[0] = 'X'
	if again, _ := s.Inbox(ctx, herald.InboxQuery{User: "u", Limit: 1}); string(again[0].Data) != "u-10" {
		t.Fatalf("stored payload changed to %q", again[0].Data)
	}
}

func testInboxPageSize(t *testing.T, s herald.Store) {
	Fill(t, s, "u", 0, herald.MaxInboxLimit+10)
	tests := []struct {
		limit, want int
	}{
		{0, herald.DefaultInboxLimit},
		{-1, herald.DefaultInboxLimit},
		{7, 7},
		{herald.MaxInboxLimit, herald.MaxInboxLimit},
		{herald.MaxInboxLimit + 1, herald.MaxInboxLimit},
		{1 << 30, herald.MaxInboxLimit},
	}
	for _, tc := range tests {
		items, err := s.Inbox(context.Background(), herald.InboxQuery{User: "u", Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != tc.want || items[0].Offset != herald.MaxInboxLimit+10 {
			t.Fatalf("Limit %d: %d items from offset %d, want %d from %d", tc.limit, len(items), items[0].Offset, tc.want, herald.MaxInboxLimit+10)
		}
	}
}

func testMark(t *testing.T, s herald.Store) {
	var batch []*herald.Message
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		batch = append(batch, &herald.Message{User: "u", ID: id, Data: []byte(id)})
	}
	MustAppend(t, s, batch...)
	MustAppend(t, s, &herald.Message{User: "v", ID: "x"}, &herald.Message{User: "v", ID: "y"})

	steps := []struct {
		name    string
		mark    herald.Mark
		ids     []string
		all     bool
		changed []string
		flags   string // of a..e, 3 characters each as flagsOf
	}{
		{"seen one", herald.MarkSeen, []string{"a"}, false, []string{"a"}, "s-- --- --- --- ---"},
		{"seen again: no change", herald.MarkSeen, []string{"a"}, false, nil, "s-- --- --- --- ---"},
		{"read implies seen; unknown ignored", herald.MarkRead, []string{"a", "b", "nope"}, false, []string{"a", "b"}, "sr- sr- --- --- ---"},
		{"repeated id, no change", herald.MarkRead, []string{"b", "b"}, false, nil, "sr- sr- --- --- ---"},
		{"archived implies read and seen", herald.MarkArchived, []string{"c"}, false, []string{"c"}, "sr- sr- sra --- ---"},
		{"seen on archived: no change", herald.MarkSeen, []string{"c"}, false, nil, "sr- sr- sra --- ---"},
		{"another user's id is ignored", herald.MarkRead, []string{"x"}, false, nil, "sr- sr- sra --- ---"},
		{"no ids", herald.MarkRead, nil, false, nil, "sr- sr- sra --- ---"},
		{"all seen", herald.MarkSeen, nil, true, []string{"d", "e"}, "sr- sr- sra s-- s--"},
		{"all read", herald.MarkRead, []string{"ignored with all"}, true, []string{"d", "e"}, "sr- sr- sra sr- sr-"},
		{"all archived", herald.MarkArchived, nil, true, []string{"a", "b", "d", "e"}, "sra sra sra sra sra"},
		{"all archived again", herald.MarkArchived, nil, true, nil, "sra sra sra sra sra"},
	}
	for _, st := range steps {
		changed := Mark(t, s, "u", st.mark, st.ids, st.all)
		if !slices.Equal(changed, st.changed) {
			t.Fatalf("%s: changed %q, want %q", st.name, changed, st.changed)
		}
		flags := FlagsOf(t, s, "u")
		var got []string
		for _, id := range []string{"a", "b", "c", "d", "e"} {
			got = append(got, flags[id])
		}
		if g := strings.Join(got, " "); g != st.flags {
			t.Fatalf("%s: flags %q, want %q", st.name, g, st.flags)
		}
	}
	if f := FlagsOf(t, s, "v"); f["x"] != "---" || f["y"] != "---" {
		t.Fatalf("other user's flags changed: %v", f)
	}
	if changed := Mark(t, s, "nobody", herald.MarkRead, nil, true); len(changed) != 0 {
		t.Fatalf("Mark all of an unknown user changed %q", changed)
	}
	for _, m := range []herald.Mark{0, herald.MarkArchived + 1} {
		if _, err := s.Mark(context.Background(), "v", m, []string{"x"}, false); herald.ErrorCodeOf(err) != herald.EInvalidRequest {
			t.Fatalf("Mark %d: %v, want an %s error", m, err, herald.EInvalidRequest)
		}
	}
	// Two messages may share a caller-given id: both are marked, the id is
	// listed once.
	MustAppend(t, s, &herald.Message{User: "w", ID: "same"}, &herald.Message{User: "w", ID: "same"})
	if changed := Mark(t, s, "w", herald.MarkRead, []string{"same"}, false); !slices.Equal(changed, []string{"same"}) {
		t.Fatalf("shared id: changed %q", changed)
	}
	if c, err := s.Counts(context.Background(), "w"); err != nil || c != (herald.InboxCounts{}) {
		t.Fatalf("shared id: counts %+v, %v", c, err)
	}
}

func testCounts(t *testing.T, s herald.Store) {
	ctx := context.Background()
	var batch []*herald.Message
	for i := 1; i <= 6; i++ {
		batch = append(batch, &herald.Message{User: "u", ID: fmt.Sprint(i)})
	}
	MustAppend(t, s, batch...)
	MustAppend(t, s, &herald.Message{User: "v", ID: "v1"})
	steps := []struct {
		name string
		do   func(t *testing.T)
		want herald.InboxCounts
	}{
		{"all new", nil, herald.InboxCounts{Unread: 6, Unseen: 6}},
		{"seen 1", func(t *testing.T) { Mark(t, s, "u", herald.MarkSeen, []string{"1"}, false) }, herald.InboxCounts{Unread: 6, Unseen: 5}},
		{"read 2", func(t *testing.T) { Mark(t, s, "u", herald.MarkRead, []string{"2"}, false) }, herald.InboxCounts{Unread: 5, Unseen: 4}},
		{"archived 3 (unseen)", func(t *testing.T) { Mark(t, s, "u", herald.MarkArchived, []string{"3"}, false) }, herald.InboxCounts{Unread: 4, Unseen: 3}},
		{"archived 2 (read)", func(t *testing.T) { Mark(t, s, "u", herald.MarkArchived, []string{"2"}, false) }, herald.InboxCounts{Unread: 4, Unseen: 3}},
		{"a new message", func(t *testing.T) { MustAppend(t, s, &herald.Message{User: "u", ID: "7"}) }, herald.InboxCounts{Unread: 5, Unseen: 4}},
		// Offsets 1..3 go: 1 was seen, 2 and 3 archived.
		{"trimmed to 4", func(t *testing.T) { Trim(t, s, 4, time.Time{}) }, herald.InboxCounts{Unread: 4, Unseen: 4}},
		{"all seen", func(t *testing.T) { Mark(t, s, "u", herald.MarkSeen, nil, true) }, herald.InboxCounts{Unread: 4, Unseen: 0}},
		{"all read", func(t *testing.T) { Mark(t, s, "u", herald.MarkRead, nil, true) }, herald.InboxCounts{}},
	}
	for _, st := range steps {
		if st.do != nil {
			st.do(t)
		}
		c, err := s.Counts(ctx, "u")
		if err != nil {
			t.Fatal(err)
		}
		if c != st.want {
			t.Fatalf("%s: counts %+v, want %+v", st.name, c, st.want)
		}
	}
	for u, want := range map[herald.UserID]herald.InboxCounts{"v": {Unread: 1, Unseen: 1}, "nobody": {}} {
		if c, err := s.Counts(ctx, u); err != nil || c != want {
			t.Fatalf("Counts(%q) = %+v, %v; want %+v", u, c, err, want)
		}
	}
}
