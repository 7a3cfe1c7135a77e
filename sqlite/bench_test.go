package sqlite

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
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
	users := make([]herald.UserID, size)
	for i := range users {
		users[i] = herald.UserID(fmt.Sprintf("u%d", i))
	}
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
