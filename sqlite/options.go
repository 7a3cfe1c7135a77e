package sqlite

import (
	"log/slog"
	"time"
)

// DefaultMaxBatch is how many messages the appender gathers into one log
// frame, one write(2). A write costs a system call whatever its size, so
// batching is what makes concurrent Appends cheap; the cap bounds how long
// the first caller of a batch waits behind the others.
const DefaultMaxBatch = 1024

// DefaultCheckTimeout bounds the integrity check Open runs (see
// WithCheckTimeout). PRAGMA quick_check reads every page of the file; 30 s
// covers some gigabytes on an ordinary disk, more than Herald's retention
// usually keeps, while a start that hangs for minutes would look like a
// crash loop to an orchestrator.
const DefaultCheckTimeout = 30 * time.Second

// defaultBusyTimeout is how long a connection waits for a lock held by
// another connection (a checkpoint, or a backup tool reading the file)
// before failing with SQLITE_BUSY.
const defaultBusyTimeout = 5 * time.Second

// An Option configures Open.
type Option func(*config)

// defaultWriterCacheKiB is the writer connection's page cache. It holds the
// stream index pages that Appends for many users dirty: 8 MiB is about 2,000
// pages, the index of some 300,000 messages; older pages are read back
// through the OS's page cache. It is not larger because SQLite pays for a
// large cache on commits: at the end of about every third write transaction
// (while the file is under 1 GiB) it scans the cache's whole hash table to
// drop pages past the end of the file, and that scan grows with the cache.
// Measured with BenchmarkAppendBatch16ManyUsers (whole-process CPU), 32 MiB
// cost 16 % more CPU per message than 8 MiB; 4 MiB measured no better.
const defaultWriterCacheKiB = 8 << 10

type config struct {
	maxBatch       int
	busyTimeout    time.Duration
	writerCacheKiB int
	checkTimeout   time.Duration // <= 0: no integrity check
	log            *slog.Logger
	applyEvery     time.Duration // see applier.go
	applyRows      int
}

func defaultConfig() config {
	return config{
		maxBatch:       DefaultMaxBatch,
		busyTimeout:    defaultBusyTimeout,
		writerCacheKiB: defaultWriterCacheKiB,
		checkTimeout:   DefaultCheckTimeout,
		log:            slog.Default(),
		applyEvery:     defaultApplyEvery,
		applyRows:      defaultApplyRows,
	}
}

// WithMaxBatch sets how many messages one group commit (a log frame)
// gathers before it is written (DefaultMaxBatch if n < 1). The cap is soft: a single
// Append is never split, so one larger than n commits alone, atomically.
func WithMaxBatch(n int) Option {
	return func(c *config) {
		if n < 1 {
			n = DefaultMaxBatch
		}
		c.maxBatch = n
	}
}

// WithCheckTimeout bounds the integrity check (PRAGMA quick_check) that
// Open runs before it trusts an existing file; d <= 0 skips the check. The
// default is DefaultCheckTimeout.
//
// When the bound is hit Open logs a warning and starts anyway: the check
// is a guard against a damaged file, and a large healthy file on a slow
// disk must still be able to start. Corruption the check did not reach
// still shows at run time, as errors of the operations that touch it.
func WithCheckTimeout(d time.Duration) Option {
	return func(c *config) { c.checkTimeout = d }
}

// WithLogger sets where Open reports what it does not fail on (an
// integrity check cut short by its timeout). nil means slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			l = slog.Default()
		}
		c.log = l
	}
}

// withApply sets how often (every) and from how many messages in the tail
// (rows) the applier applies the log: for tests that want the applier
// busy all the time.
func withApply(every time.Duration, rows int) Option {
	return func(c *config) {
		c.applyEvery, c.applyRows = every, max(1, rows)
	}
}
