package postgres

import (
	"log/slog"
	"time"
)

// Defaults of the options.
const (
	// DefaultMaxConns is the pool size of one Store unless the DSN sets
	// pool_max_conns or WithMaxConns is given: the committer uses one
	// connection at a time, reads the others. Every Herald node holds up to
	// this many connections to the server, so N nodes need N times this
	// below the server's max_connections.
	DefaultMaxConns = 8
	// DefaultCommitters is how many group commits of one Store may be in
	// flight at once. A commit mostly waits (two round trips and the
	// server's WAL flush); while one waits, the next gathers what arrived
	// and goes, and the server flushes their WAL records together. More
	// committers shorten the wait of a caller under load; each holds a
	// connection while it commits.
	DefaultCommitters = 2
	// DefaultMaxBatch is how many messages one group commit gathers at
	// most. The cap bounds one transaction (its locks, its statement's
	// arrays) and how long the first caller of a batch waits behind the
	// others; beyond a few hundred messages a bigger batch gains little,
	// since the per-commit cost is already spread thin.
	DefaultMaxBatch = 1000
	// DefaultMaxBatchBytes bounds the payload bytes of one group commit:
	// a statement's parameters travel in one protocol message, which the
	// server caps at 1 GiB, and a smaller batch keeps memory in check.
	DefaultMaxBatchBytes = 8 << 20
	// DefaultWriteTimeout bounds one group commit, retries included, and
	// separately the resolution of a commit whose answer was lost. It is
	// how long Appends wait, at most, while the server is unreachable
	// without refusing connections (a network partition).
	DefaultWriteTimeout = 10 * time.Second
	// readyTimeout bounds the ping of Ready.
	readyTimeout = 2 * time.Second
)

// An Option configures Open.
type Option func(*config)

type config struct {
	log           *slog.Logger
	maxConns      int32 // 0: the DSN's pool_max_conns, else DefaultMaxConns
	committers    int
	maxBatch      int
	maxBatchBytes int
	writeTimeout  time.Duration
	// commitErr, when set, is called after each COMMIT that succeeded
	// and may return an error in its place: how a test loses a commit's
	// answer, a fault no real server can be made to produce on demand.
	commitErr func() error
}

func defaultConfig() config {
	return config{
		log:           slog.Default(),
		committers:    DefaultCommitters,
		maxBatch:      DefaultMaxBatch,
		maxBatchBytes: DefaultMaxBatchBytes,
		writeTimeout:  DefaultWriteTimeout,
	}
}

// WithLogger sets where the Store reports what it does not fail on:
// migrations applied, the server becoming unreachable and reachable again,
// a batch retried call by call. nil means slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			l = slog.Default()
		}
		c.log = l
	}
}

// WithMaxConns sets the most connections the Store opens (n < 1: the
// default, see DefaultMaxConns). It wins over pool_max_conns in the DSN.
func WithMaxConns(n int) Option {
	return func(c *config) {
		if n < 1 {
			n = 0
		}
		c.maxConns = int32(min(n, 1<<16))
	}
}

// WithCommitters sets how many group commits may be in flight at once
// (DefaultCommitters if n < 1). Keep it below the pool size (WithMaxConns),
// or reads wait for the committers' connections.
func WithCommitters(n int) Option {
	return func(c *config) {
		if n < 1 {
			n = DefaultCommitters
		}
		c.committers = n
	}
}

// WithMaxBatch sets how many messages one group commit gathers at most
// (DefaultMaxBatch if n < 1). The cap is soft: one Append is never split,
// so a larger one commits alone, atomically. 1 turns group commit off.
func WithMaxBatch(n int) Option {
	return func(c *config) {
		if n < 1 {
			n = DefaultMaxBatch
		}
		c.maxBatch = n
	}
}

// WithMaxBatchBytes sets how many payload bytes one group commit gathers
// at most (DefaultMaxBatchBytes if n < 1); soft like WithMaxBatch.
func WithMaxBatchBytes(n int) Option {
	return func(c *config) {
		if n < 1 {
			n = DefaultMaxBatchBytes
		}
		c.maxBatchBytes = n
	}
}

// WithWriteTimeout sets DefaultWriteTimeout's bound (d <= 0: the default).
func WithWriteTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			d = DefaultWriteTimeout
		}
		c.writeTimeout = d
	}
}
