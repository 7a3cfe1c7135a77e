package sqlite

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/herald-gw/herald"
)

// benchPayload returns a payload the size of a typical small JSON
// notification.
func benchPayload() []byte { return bytes.Repeat([]byte("x"), 200) }

// reportRate reports msgs/s over the timed part of the benchmark and the
// average number of messages per committed transaction (1 means no group
// commit happened; higher means Appends shared commits).
func reportRate(b *testing.B, s *Store, msgs int, txnsBefore uint64) {
	if sec := b.Elapsed().Seconds(); sec > 0 {
		b.ReportMetric(float64(msgs)/sec, "msgs/s")
	}
	if txns := s.txns.Load() - txnsBefore; txns > 0 {
		b.ReportMetric(float64(msgs)/float64(txns), "msgs/txn")
	}
}

// benchUsers returns n user ids: prefix0, prefix1, ...
func benchUsers(prefix string, n int) []herald.UserID {
	users := make([]herald.UserID, n)
	for i := range users {
		users[i] = herald.UserID(fmt.Sprint(prefix, i))
	}
	return users
}

func benchStore(b *testing.B) *Store {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkAppendSingle is one caller appending one message at a time: every
// Append pays a full commit on its own.
func BenchmarkAppendSingle(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	payload := benchPayload()
	b.ReportAllocs()
	txns := s.txns.Load()
	n := 0
	for b.Loop() {
		m := &herald.Message{User: "u", Data: payload}
		if err := s.Append(ctx, []*herald.Message{m}); err != nil {
			b.Fatal(err)
		}
		n++
	}
	reportRate(b, s, n, txns)
}

// BenchmarkAppendConcurrent is many callers appending one message each, to
// 64 users: the writer folds whatever is queued into one transaction, so the
// commit cost is shared (compare msgs/txn with BenchmarkAppendSingle).
func BenchmarkAppendConcurrent(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	payload := benchPayload()
	var worker atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16) // 16 × GOMAXPROCS callers, like many HTTP requests
	txns := s.txns.Load()
	b.RunParallel(func(pb *testing.PB) {
		user := herald.UserID(fmt.Sprintf("u%d", worker.Add(1)%64))
		for pb.Next() {
			m := &herald.Message{User: user, Data: payload}
			if err := s.Append(ctx, []*herald.Message{m}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, s, b.N, txns)
}

// BenchmarkAppendBatch100 is one caller appending 100 messages per Append
// (a broadcast to 100 users, say). b.N counts Appends; msgs/s counts
// messages.
func BenchmarkAppendBatch100(b *testing.B) {
	const size = 100
	s := benchStore(b)
	ctx := context.Background()
	payload := benchPayload()
	users := benchUsers("u", size)
	b.ReportAllocs()
	txns := s.txns.Load()
	n := 0
	for b.Loop() {
		batch := make([]*herald.Message, size)
		for i := range batch {
			batch[i] = &herald.Message{User: users[i], Data: payload}
		}
		if err := s.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
		n += size
	}
	reportRate(b, s, n, txns)
}

// BenchmarkAppendConcurrentManyUsers is the production shape the store is
// sized for: ~64 concurrent callers, one message per Append, each to a user
// drawn from 10,000, so a batch touches as many users as it has messages.
func BenchmarkAppendConcurrentManyUsers(b *testing.B) {
	const users = 10000
	s := benchStore(b)
	ctx := context.Background()
	payload := benchPayload()
	names := benchUsers("user-", users)
	var next atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	txns := s.txns.Load()
	b.ResetTimer() // not the store's opening and the names
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// A cheap scramble so consecutive Appends hit unrelated users.
			u := names[(next.Add(1)*7919)%users]
			m := &herald.Message{User: u, Data: payload}
			if err := s.Append(ctx, []*herald.Message{m}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, s, b.N, txns)
}

// inboxStore returns a store where each of 20 users has 1,000 messages,
// interleaved as they would arrive (so one user's rows are spread over the
// table), with every third message read.
func inboxStore(b *testing.B) *Store {
	s := benchStore(b)
	ctx := context.Background()
	payload := benchPayload()
	for i := range 1000 {
		batch := make([]*herald.Message, 20)
		for u := range batch {
			batch[u] = &herald.Message{User: herald.UserID(fmt.Sprint("user-", u)), Data: payload}
		}
		if err := s.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
		if i%3 == 0 {
			for _, m := range batch {
				if _, err := s.Mark(ctx, m.User, herald.MarkRead, []string{m.ID}, false); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	return s
}

// BenchmarkInbox1000 reads the first unread page of a user with 1,000
// messages, a third of them read.
func BenchmarkInbox1000(b *testing.B) {
	s := inboxStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		items, err := s.Inbox(ctx, herald.InboxQuery{User: "user-7", Status: herald.InboxUnread})
		if err != nil || len(items) != herald.DefaultInboxLimit {
			b.Fatal(len(items), err)
		}
	}
}

// BenchmarkCounts1000 counts a user with 1,000 messages.
func BenchmarkCounts1000(b *testing.B) {
	s := inboxStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c, err := s.Counts(ctx, "user-7")
		if err != nil || c.Unread != 666 {
			b.Fatal(c, err)
		}
	}
}

// BenchmarkMarkRead1000 marks one message of a user with 1,000 messages
// read (and back to the same message, so later rounds change nothing: the
// cost of finding it).
func BenchmarkMarkRead1000(b *testing.B) {
	s := inboxStore(b)
	ctx := context.Background()
	page, err := s.Since(ctx, "user-7", 500, 1)
	if err != nil {
		b.Fatal(err)
	}
	ids := []string{page[0].ID}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Mark(ctx, "user-7", herald.MarkRead, ids, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBounds reads the bounds of a user with 1,000 messages.
func BenchmarkBounds(b *testing.B) {
	s := inboxStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if first, last, err := s.Bounds(ctx, "user-7"); err != nil || first != 1 || last != 1000 {
			b.Fatal(first, last, err)
		}
	}
}

// BenchmarkAppendBatch16ManyUsers is one caller appending batches of 16
// messages, each to a different user of 10,000: the store's share of a
// POST /v1/batch in the notify load scenario. One caller, so ns/msg is
// close to the store's CPU cost per message.
func BenchmarkAppendBatch16ManyUsers(b *testing.B) {
	const (
		users = 10000
		size  = 16
	)
	s := benchStore(b)
	ctx := context.Background()
	payload := benchPayload()
	names := benchUsers("user-", users)
	k := 0
	batch := make([]*herald.Message, size)
	fill := func() {
		for i := range batch {
			k++
			batch[i] = &herald.Message{User: names[(k*7919)%users], Data: payload}
		}
	}
	// Every user has a stream already, as in a server that has run a while.
	for range users / size {
		fill()
		if err := s.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	txns := s.txns.Load()
	n := 0
	for b.Loop() {
		fill()
		if err := s.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
		n += size
	}
	if sec := b.Elapsed().Seconds(); sec > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/msg")
	}
	reportRate(b, s, n, txns)
}
