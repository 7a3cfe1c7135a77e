// Package sqlite is Herald's embedded, default durable herald.Store: one
// SQLite file, driven by modernc.org/sqlite, which is pure Go so Herald still
// builds with CGO_ENABLED=0 into a single static binary.
//
// # Durability
//
// The database runs in WAL mode with synchronous=NORMAL. A commit appends
// the transaction to the WAL with write(2) before Append returns, so it sits
// in the kernel's page cache: a crash of the Herald process, even kill -9,
// cannot lose it, and the next Open replays it from the WAL. Only an OS
// crash or power loss can drop the last few transactions, because NORMAL
// fsyncs at checkpoints rather than at every commit; the database itself
// stays consistent even then. synchronous=FULL would close that window at
// the cost of one fsync per commit (group commit amortises it, but it is
// still milliseconds on most disks); Herald's contract is "survives a
// process crash", which NORMAL meets.
//
// # Group commit
//
// Appends are not written by their callers. Each hands its batch to a single
// writer goroutine, which gathers everything queued (up to a cap) into one
// transaction, commits once and then answers every waiting caller. Under
// load many Appends share one commit, and because only one goroutine ever
// writes, assigning offsets needs no locking beyond SQLite's own.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/herald-gw/herald"
)

// MaxLimit is the most messages one Since call returns; a limit <= 0 or
// above it means MaxLimit. It bounds the memory and time of one replay.
const MaxLimit = 1000

// ErrClosed is returned by Append and Since once Close has been called. It
// carries herald.EUnavailable, so an API handler reports 503 (shutting down).
var ErrClosed error = herald.Errorf(herald.EUnavailable, "message store is closed")

// Store is a herald.Store backed by one SQLite file. It is safe for
// concurrent use.
type Store struct {
	db       *sql.DB
	wconn    *sql.Conn // the writer's own connection, never used by readers
	epoch    string
	maxBatch int

	// Statements the writer runs on wconn, prepared once.
	begin, commit, rollback *sql.Stmt
	lastOffset, insert      *sql.Stmt
	upsertStream            *sql.Stmt

	// mu orders Appends against Close: Append holds it shared while it
	// enqueues, Close takes it exclusively to set closed and close reqs, so
	// no Append can send on a closed channel.
	mu     sync.RWMutex
	closed bool
	reqs   chan *request

	writerDone chan struct{} // closed when the writer goroutine has exited
	closeOnce  sync.Once
	closeErr   error

	txns atomic.Uint64 // transactions committed, for tests and benchmarks
}

var _ herald.Store = (*Store)(nil)

// A request is one Append waiting for the writer.
type request struct {
	ctx  context.Context
	msgs []*herald.Message
	// state settles the race between the writer taking the request and the
	// caller giving up on it: whoever moves it out of statePending first wins.
	state atomic.Int32
	done  chan error // buffered, receives exactly one result once taken
}

const (
	statePending int32 = iota
	stateTaken
	stateAbandoned
)

// Open opens the store in the SQLite file at path, creating the file and
// bringing its schema up to date if needed, and starts the writer. Close it
// to flush pending Appends and release the file. path is a file name, not a
// DSN: it is used as given (":memory:" would name a file; use package memory
// for a store without a file).
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}

	dsn, err := dsnFor(path, cfg)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s, err := open(ctx, db, cfg)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return s, nil
}

// dsnFor builds a modernc.org/sqlite URI DSN for path. The path is made
// absolute (so a relative path cannot be read as a URI authority) and the
// characters a URI treats specially are escaped, since SQLite decodes %XX in
// "file:" names.
func dsnFor(path string, cfg config) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("sqlite: resolve %s: %w", path, err)
	}
	name := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(filepath.ToSlash(abs))
	if !strings.HasPrefix(name, "/") {
		name = "/" + name // Windows drive letters: file:/C:/...
	}
	q := url.Values{}
	// busy_timeout comes first (the driver orders it so) so the other
	// pragmas wait for a lock instead of failing. synchronous is a
	// per-connection setting, so it belongs in the DSN that every pooled
	// connection is opened with; see the package doc for why NORMAL.
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", cfg.busyTimeout.Milliseconds()))
	q.Add("_pragma", "synchronous(NORMAL)")
	return "file:" + name + "?" + q.Encode(), nil
}

func open(ctx context.Context, db *sql.DB, cfg config) (*Store, error) {
	// Bound the pool: the writer's connection plus a few readers. Reads run
	// on the CPU in this pure-Go driver, so more readers than CPUs only add
	// page caches and file descriptors (each connection holds the db, -wal
	// and -shm files open); a reconnect storm then queues for a reader
	// (honouring each caller's ctx) instead of opening hundreds.
	readers := max(4, runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(1 + readers)
	db.SetMaxIdleConns(1 + readers)

	wconn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	s := &Store{
		db:         db,
		wconn:      wconn,
		maxBatch:   cfg.maxBatch,
		reqs:       make(chan *request, cfg.maxBatch),
		writerDone: make(chan struct{}),
	}
	if err := s.init(ctx); err != nil {
		s.closeStmts()
		wconn.Close()
		return nil, err
	}
	go s.writer()
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	// WAL is persistent in the file, so setting it once here covers every
	// later connection. It lets Since read while the writer commits, and it
	// is what makes synchronous=NORMAL safe (in rollback-journal mode NORMAL
	// can corrupt the file on power loss). Some file systems (network
	// mounts) cannot do WAL; SQLite then silently keeps the old mode, so
	// check rather than run with guarantees we do not have.
	var mode string
	if err := s.wconn.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		return fmt.Errorf("enable WAL: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("enable WAL: journal_mode is %q (file system without WAL support?)", mode)
	}

	epoch, err := migrate(ctx, s.wconn, newEpoch())
	if err != nil {
		return err
	}
	s.epoch = epoch

	// The writer drives its transactions with plain BEGIN/COMMIT on its own
	// connection instead of database/sql's Tx: statements prepared on a
	// sql.Conn are re-prepared by every Tx.Stmt, which would cost a parse
	// per statement per batch. IMMEDIATE takes the write lock up front, so
	// a transaction never has to upgrade a read lock, which can fail with
	// SQLITE_BUSY regardless of busy_timeout.
	prepare := []struct {
		dst   **sql.Stmt
		query string
	}{
		{&s.begin, "BEGIN IMMEDIATE"},
		{&s.commit, "COMMIT"},
		{&s.rollback, "ROLLBACK"},
		{&s.lastOffset, "SELECT last_offset FROM streams WHERE user = ?"},
		{&s.insert, `INSERT INTO messages (user, "offset", id, ts, data) VALUES (?, ?, ?, ?, ?)`},
		{&s.upsertStream, `INSERT INTO streams (user, last_offset) VALUES (?, ?)
			ON CONFLICT (user) DO UPDATE SET last_offset = excluded.last_offset`},
	}
	for _, p := range prepare {
		st, err := s.wconn.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", p.query, err)
		}
		*p.dst = st
	}
	return nil
}

// Epoch returns the epoch created with the database file and kept across
// reopens.
func (s *Store) Epoch() string { return s.epoch }

// Append stores msgs in one transaction, shared with whatever other Appends
// are queued, and returns once it has committed. It assigns each message its
// Offset and the store's Epoch, and fills in Time (now) and ID (a new unique
// id) when they are zero. Offsets follow the order in which Appends are
// accepted and, within one Append, slice order.
//
// If ctx ends before the writer has taken the batch, Append returns
// ctx.Err() and nothing is stored. Once taken, the batch is written even if
// ctx ends meanwhile, and Append reports the outcome, so a caller never sees
// an error for messages that were in fact stored.
func (s *Store) Append(ctx context.Context, msgs []*herald.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	for i, m := range msgs {
		if m == nil {
			return fmt.Errorf("sqlite: append: message %d is nil", i)
		}
		if m.User == "" {
			return fmt.Errorf("sqlite: append: message %d has no user", i)
		}
	}
	// Defaults are filled here, on the caller's goroutine, to keep the
	// single writer's work to SQL alone.
	for _, m := range msgs {
		if m.Time.IsZero() {
			m.Time = now
		}
		if m.ID == "" {
			m.ID = newID(m.Time)
		}
	}

	req := &request{ctx: ctx, msgs: msgs, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	if len(msgs) == 0 {
		s.mu.RUnlock()
		return nil
	}
	select {
	case s.reqs <- req:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()

	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		if req.state.CompareAndSwap(statePending, stateAbandoned) {
			return ctx.Err()
		}
		// The writer took the batch first: it will be written, so report
		// what actually happened.
		return <-req.done
	}
}

// writer is the only goroutine that writes messages. It runs until Close
// closes reqs, and drains what is still queued before it exits.
func (s *Store) writer() {
	defer close(s.writerDone)
	var (
		batch   []*request
		scratch = newBatchState()
	)
	for {
		req, ok := <-s.reqs
		if !ok {
			return
		}
		var n int
		batch, n = s.take(batch[:0], req, 0)
		// The callers answered by the previous commit are runnable but
		// usually have not run yet: draining right away would commit this
		// one request nearly alone and leave them for the next round. One
		// yield lets them enqueue first (measured: ~3x messages per
		// transaction under concurrency). With nothing else runnable it
		// returns at once, so a lone caller pays nothing; unlike a linger
		// timer it never delays a commit by wall-clock time.
		runtime.Gosched()
		accepting := true
	gather:
		for n < s.maxBatch {
			select {
			case req, ok := <-s.reqs:
				if !ok {
					accepting = false
					break gather
				}
				batch, n = s.take(batch, req, n)
			default:
				break gather
			}
		}
		if len(batch) > 0 {
			err := s.write(batch, scratch)
			for _, r := range batch {
				r.done <- err
			}
			clear(batch) // let the requests and their messages be collected
		}
		if !accepting {
			return
		}
	}
}

// take claims req for the batch unless its caller has already given up, and
// returns the batch and its message count. A request whose ctx has ended but
// whose caller has not noticed yet is refused here too, so that "cancelled
// before taken" reliably means "not stored".
func (s *Store) take(batch []*request, req *request, n int) ([]*request, int) {
	if !req.state.CompareAndSwap(statePending, stateTaken) {
		return batch, n
	}
	if err := req.ctx.Err(); err != nil {
		req.done <- err
		return batch, n
	}
	return append(batch, req), n + len(req.msgs)
}

// batchState is the writer's scratch space, reused across transactions.
type batchState struct {
	last    map[herald.UserID]uint64 // last offset per user in this transaction
	offsets []uint64                 // assigned offsets, in batch order
}

func newBatchState() *batchState {
	return &batchState{last: make(map[herald.UserID]uint64)}
}

// write stores the batch in one transaction. Offsets are assigned to the
// messages only after the commit succeeded, so a failed batch leaves every
// Offset at 0 ("not stored").
func (s *Store) write(batch []*request, st *batchState) (err error) {
	// Background, not a caller's ctx: the batch mixes many callers, and a
	// taken batch is written whatever happens to any one of them.
	ctx := context.Background()
	clear(st.last)
	st.offsets = st.offsets[:0]

	if _, err := s.begin.ExecContext(ctx); err != nil {
		return fmt.Errorf("sqlite: append: begin: %w", err)
	}
	defer func() {
		if err != nil {
			// A failed statement may already have rolled the transaction
			// back; the rollback error adds nothing to err.
			_, _ = s.rollback.ExecContext(ctx)
		}
	}()

	for _, r := range batch {
		for _, m := range r.msgs {
			off, seen := st.last[m.User]
			if !seen {
				var stored int64
				switch err := s.lastOffset.QueryRowContext(ctx, string(m.User)).Scan(&stored); {
				case errors.Is(err, sql.ErrNoRows):
				case err != nil:
					return fmt.Errorf("sqlite: append: read last offset of %q: %w", m.User, err)
				default:
					off = uint64(stored)
				}
			}
			off++
			st.last[m.User] = off
			st.offsets = append(st.offsets, off)
			if _, err := s.insert.ExecContext(ctx, string(m.User), int64(off), m.ID, m.Time.UnixNano(), m.Data); err != nil {
				return fmt.Errorf("sqlite: append: insert %q/%d: %w", m.User, off, err)
			}
		}
	}
	for user, off := range st.last {
		if _, err := s.upsertStream.ExecContext(ctx, string(user), int64(off)); err != nil {
			return fmt.Errorf("sqlite: append: update stream %q: %w", user, err)
		}
	}
	if _, err := s.commit.ExecContext(ctx); err != nil {
		return fmt.Errorf("sqlite: append: commit: %w", err)
	}
	s.txns.Add(1)

	i := 0
	for _, r := range batch {
		for _, m := range r.msgs {
			m.Offset = st.offsets[i]
			m.Epoch = s.epoch
			i++
		}
	}
	return nil
}

// Since returns up to limit messages of user with Offset > since, in offset
// order. It reads on a pooled connection other than the writer's, so under
// WAL it neither waits for nor delays commits.
func (s *Store) Since(ctx context.Context, user herald.UserID, since uint64, limit int) ([]herald.Message, error) {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if limit <= 0 || limit > MaxLimit {
		limit = MaxLimit
	}
	if since >= 1<<63 {
		return nil, nil // beyond any offset SQLite's int64 can hold
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT "offset", id, ts, data FROM messages WHERE user = ? AND "offset" > ? ORDER BY "offset" LIMIT ?`,
		string(user), int64(since), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: since: %w", err)
	}
	defer rows.Close()
	var out []herald.Message
	for rows.Next() {
		var (
			off int64
			ts  int64
			m   = herald.Message{User: user, Epoch: s.epoch}
		)
		if err := rows.Scan(&off, &m.ID, &ts, &m.Data); err != nil {
			return nil, fmt.Errorf("sqlite: since: scan: %w", err)
		}
		m.Offset = uint64(off)
		m.Time = time.Unix(0, ts)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: since: %w", err)
	}
	return out, nil
}

// Close stops accepting Appends, waits for the writer to commit everything
// already queued, and closes the database. It is safe to call more than once
// and from several goroutines; every call returns the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.reqs)
		s.mu.Unlock()
		<-s.writerDone
		s.closeErr = errors.Join(s.closeStmts(), s.wconn.Close(), s.db.Close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("sqlite: close: %w", s.closeErr)
		}
	})
	return s.closeErr
}

func (s *Store) closeStmts() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.begin, s.commit, s.rollback, s.lastOffset, s.insert, s.upsertStream} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}
