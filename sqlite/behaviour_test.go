package sqlite

// This file is the herald.Store behaviour suite. An identical copy (bar the
// package clause) lives in the memory package; keep the two in step. It uses
// only the herald.Store interface, so every implementation must pass it.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/herald-gw/herald"
)

// newStoreFunc opens an empty store for one test and arranges for it to be
// closed when the test ends.
type newStoreFunc func(t *testing.T) herald.Store

func runBehaviour(t *testing.T, newStore newStoreFunc) {
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
		{"AfterClose", testAfterClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func msg(user herald.UserID, data string) *herald.Message {
	return &herald.Message{User: user, Data: []byte(data)}
}

func mustAppend(t *testing.T, s herald.Store, msgs ...*herald.Message) {
	t.Helper()
	if err := s.Append(context.Background(), msgs); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

// all pages through Since from offset 0 and returns the whole stream.
func all(t *testing.T, s herald.Store, user herald.UserID) []herald.Message {
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

// checkStream asserts the stream of user is offsets 1..len(want) with
// payloads want, in order, each carrying the store's epoch.
func checkStream(t *testing.T, s herald.Store, user herald.UserID, want []string) {
	t.Helper()
	got := all(t, s, user)
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
			batch[i] = msg("u", fmt.Sprintf("m%d", len(want)))
			want = append(want, string(batch[i].Data))
		}
		mustAppend(t, s, batch...)
		for _, m := range batch {
			if m.Offset != next || m.Epoch != s.Epoch() {
				t.Fatalf("%s: Offset=%d Epoch=%q, want %d %q", m.Data, m.Offset, m.Epoch, next, s.Epoch())
			}
			next++
		}
	}
	checkStream(t, s, "u", want)
}

func testInterleavedUsers(t *testing.T, s herald.Store) {
	users := []herald.UserID{"alice", "bob", "42", "user with spaces ✓"}
	want := map[herald.UserID][]string{}
	// One Append mixing users, then single Appends round-robin: each user's
	// offsets are its own, dense from 1.
	var mixed []*herald.Message
	for _, u := range users {
		mixed = append(mixed, msg(u, string(u)+"-0"))
		want[u] = append(want[u], string(u)+"-0")
	}
	mixed = append(mixed, msg("alice", "alice-1"))
	want["alice"] = append(want["alice"], "alice-1")
	mustAppend(t, s, mixed...)
	if mixed[0].Offset != 1 || mixed[1].Offset != 1 || mixed[4].Offset != 2 {
		t.Fatalf("mixed append offsets: %d %d %d, want 1 1 2", mixed[0].Offset, mixed[1].Offset, mixed[4].Offset)
	}
	for round := 1; round < 5; round++ {
		for _, u := range users {
			d := fmt.Sprintf("%s-r%d", u, round)
			m := msg(u, d)
			mustAppend(t, s, m)
			want[u] = append(want[u], d)
			if m.Offset != uint64(len(want[u])) {
				t.Fatalf("%s: Offset=%d, want %d", d, m.Offset, len(want[u]))
			}
		}
	}
	for _, u := range users {
		checkStream(t, s, u, want[u])
	}
}

func testDefaults(t *testing.T, s herald.Store) {
	fixed := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	given := &herald.Message{User: "u", ID: "my-id", Time: fixed, Data: []byte("given")}
	before := time.Now()
	batch := []*herald.Message{given}
	for i := range 200 {
		batch = append(batch, msg("u", fmt.Sprint(i)))
	}
	mustAppend(t, s, batch...)
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
	got := all(t, s, "u")
	for i, m := range got {
		if m.ID != batch[i].ID || !m.Time.Equal(batch[i].Time) {
			t.Fatalf("[%d] stored {ID:%q Time:%v}, appended {ID:%q Time:%v}", i, m.ID, m.Time, batch[i].ID, batch[i].Time)
		}
	}

	// Stored payloads are not aliased to the caller's or to earlier results.
	got[0].Data[0] = 'X'
	given.Data[0] = 'Y'
	if again := all(t, s, "u"); string(again[0].Data) != "given" {
		t.Fatalf("stored payload changed to %q", again[0].Data)
	}

	// Empty and nil payloads are fine.
	mustAppend(t, s, &herald.Message{User: "empty"}, &herald.Message{User: "empty", Data: []byte{}})
	for _, m := range all(t, s, "empty") {
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
					batch[k] = msg("shared", fmt.Sprintf("w%d-a%d-m%d", w, j, k))
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
	checkStream(t, s, "shared", want)
}

func testSince(t *testing.T, s herald.Store) {
	const n = 1100 // more than one page, in a single (oversized) Append
	batch := make([]*herald.Message, n)
	for i := range batch {
		batch[i] = msg("u", fmt.Sprintf("u-%d", i+1))
	}
	mustAppend(t, s, batch...)
	mustAppend(t, s, msg("v", "v-1"), msg("v", "v-2"), msg("v", "v-3"))

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
	m := msg("u", "never")
	if err := s.Append(ctx, []*herald.Message{m}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with cancelled ctx: %v, want context.Canceled", err)
	}
	if m.Offset != 0 {
		t.Fatalf("cancelled message got Offset %d", m.Offset)
	}
	// Nothing stored, and no offset consumed.
	m = msg("u", "first")
	mustAppend(t, s, m)
	if m.Offset != 1 {
		t.Fatalf("after a cancelled Append, Offset = %d, want 1", m.Offset)
	}
	checkStream(t, s, "u", []string{"first"})
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
				m := msg("u", fmt.Sprintf("w%d-%d", w, j))
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
	stream := all(t, s, "u")
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
		{"nil message", []*herald.Message{msg("u", "ok"), nil}},
		{"no user", []*herald.Message{msg("u", "ok"), msg("", "nobody")}},
	}
	for _, tc := range tests {
		if err := s.Append(context.Background(), tc.msgs); err == nil {
			t.Errorf("%s: Append succeeded", tc.name)
		}
	}
	if err := s.Append(context.Background(), nil); err != nil {
		t.Errorf("empty Append: %v", err)
	}
	checkStream(t, s, "u", nil) // a rejected Append stores none of its messages
}

func testAfterClose(t *testing.T, s herald.Store) {
	mustAppend(t, s, msg("u", "before"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, msgs := range [][]*herald.Message{{msg("u", "after")}, nil} {
		err := s.Append(context.Background(), msgs)
		if err == nil {
			t.Fatalf("Append(%d messages) after Close succeeded", len(msgs))
		}
		if code := herald.ErrorCodeOf(err); code != herald.EUnavailable {
			t.Errorf("Append after Close: code %q, want %q (%v)", code, herald.EUnavailable, err)
		}
	}
	if _, err := s.Since(context.Background(), "u", 0, 0); err == nil {
		t.Fatal("Since after Close succeeded")
	}
}
