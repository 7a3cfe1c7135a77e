package sqlite

import "time"

// DefaultMaxBatch is how many messages the writer gathers into one
// transaction before committing. A commit costs a WAL append and a lock
// round-trip whatever its size, so batching is what makes concurrent Appends
// cheap; the cap bounds how long the first caller of a batch waits behind
// the others and how large one transaction (and the WAL) grows.
const DefaultMaxBatch = 1024

// defaultBusyTimeout is how long a connection waits for a lock held by
// another connection (a checkpoint, or another process opening the same
// file) before failing with SQLITE_BUSY.
const defaultBusyTimeout = 5 * time.Second

// An Option configures Open.
type Option func(*config)

// defaultWriterCacheKiB is the writer connection's page cache. It holds the
// stream index pages that Appends for many users dirty; 32 MiB keeps the
// index of some million messages in memory.
const defaultWriterCacheKiB = 32 << 10

type config struct {
	maxBatch       int
	busyTimeout    time.Duration
	writerCacheKiB int
}

func defaultConfig() config {
	return config{maxBatch: DefaultMaxBatch, busyTimeout: defaultBusyTimeout, writerCacheKiB: defaultWriterCacheKiB}
}

// WithMaxBatch sets how many messages one group-commit transaction gathers
// before it commits (DefaultMaxBatch if n < 1). The cap is soft: a single
// Append is never split, so one larger than n commits alone, atomically.
func WithMaxBatch(n int) Option {
	return func(c *config) {
		if n < 1 {
			n = DefaultMaxBatch
		}
		c.maxBatch = n
	}
}
