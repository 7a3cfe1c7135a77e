package postgres

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/servicetest"
)

// The benchmarks run against the server servicetest finds (see
// docs in /tmp/docs-postgres.md for the numbers and the command), each in a
// fresh schema. Their msgs/s counts messages committed per second of the
// timed part; msgs/txn is how many messages shared a commit (1: no group
// commit happened).

func benchPayload() []byte { return bytes.Repeat([]byte("x"), 200) }

func benchUsers(n int) []herald.UserID {
	users := make([]herald.UserID, n)
	for i := range users {
		users[i] = herald.UserID(fmt.Sprint("user-", i))
	}
	return users
}

func benchStores(b *testing.B, n int, opts ...Option) []*Store {
	dsn := servicetest.Postgres(b)
	stores := make([]*Store, n)
	for i := range stores {
		stores[i] = openTest(b, dsn, append([]Option{WithMaxConns(8)}, opts...)...)
	}
	return stores
}

func reportRate(b *testing.B, msgs int, stores ...*Store) {
	if sec := b.Elapsed().Seconds(); sec > 0 {
		b.ReportMetric(float64(msgs)/sec, "msgs/s")
	}
	var txns uint64
	for _, s := range stores {
		txns += s.txns.Load()
	}
	if txns > 0 {
		b.ReportMetric(float64(msgs)/float64(txns), "msgs/txn")
	}
}

// benchAppend runs b.N Appends of size messages each from 64 goroutines
// spread over stores, each message to a user drawn from users (10,000: a
// batch touches about as many users as it has messages), and reports the
// rate. The stores' transactions before the timed part (none) are not
// counted.
func benchAppend(b *testing.B, stores []*Store, size int) {
	const users = 10000
	names := benchUsers(users)
	payload := benchPayload()
	ctx := context.Background()
	var next, worker atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		s := stores[worker.Add(1)%uint64(len(stores))]
		for pb.Next() {
			batch := make([]*herald.Message, size)
			for i := range batch {
				// A cheap scramble so consecutive messages hit unrelated users.
				batch[i] = &herald.Message{User: names[(next.Add(1)*7919)%users], Data: payload}
			}
			if err := s.Append(ctx, batch); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, b.N*size, stores...)
}

// BenchmarkAppend is the notify path's shape: many concurrent callers, one
// message per Append. Group commit folds what arrives during a commit into
// the next one (compare msgs/txn with BenchmarkAppendSerial).
func BenchmarkAppend(b *testing.B) {
	benchAppend(b, benchStores(b, 1), 1)
}

// BenchmarkAppendBatch is many concurrent callers appending 100 messages
// per Append (a POST /v1/batch, a broadcast to 100 users).
func BenchmarkAppendBatch(b *testing.B) {
	benchAppend(b, benchStores(b, 1), 100)
}

// BenchmarkAppendThreeNodes is BenchmarkAppend spread over three Stores on
// one schema, as three Herald nodes: each has its committer and pool.
func BenchmarkAppendThreeNodes(b *testing.B) {
	benchAppend(b, benchStores(b, 3), 1)
}

// BenchmarkAppendNoGroupCommit is BenchmarkAppend with one message per
// transaction (WithMaxBatch(1)): what group commit buys.
func BenchmarkAppendNoGroupCommit(b *testing.B) {
	benchAppend(b, benchStores(b, 1, WithMaxBatch(1)), 1)
}

// BenchmarkAppendSerial is one caller appending one message at a time:
// every Append pays a commit (two round trips and a WAL flush) alone.
func BenchmarkAppendSerial(b *testing.B) {
	s := benchStores(b, 1)[0]
	payload := benchPayload()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Append(ctx, []*herald.Message{{User: "u", Data: payload}}); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N, s)
}

// BenchmarkAppendOneUser is many callers on three nodes appending to one
// user: every commit takes the same stream row lock, the worst case of
// offset allocation in the database.
func BenchmarkAppendOneUser(b *testing.B) {
	stores := benchStores(b, 3)
	payload := benchPayload()
	ctx := context.Background()
	var worker atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		s := stores[worker.Add(1)%3]
		for pb.Next() {
			if err := s.Append(ctx, []*herald.Message{{User: "hot", Data: payload}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, b.N, stores...)
}
