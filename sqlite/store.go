// Package sqlite is Herald's embedded, default durable herald.Store: one
// SQLite file, driven by modernc.org/sqlite, which is pure Go so Herald still
// builds with CGO_ENABLED=0 into a single static binary.
//
// # Durability
//
// An Append is durable once its messages are in the store's log (log.go):
// the appender writes each group of Appends to a segment file beside the
// database as one frame, with one write(2), before Append returns. The
// bytes then sit in the kernel's page cache: a crash of the Herald process,
// even kill -9, cannot lose them, and the next Open replays whatever the
// tables do not hold yet. Only an OS crash or power loss can drop the last
// frames, as it can the last transactions of the WAL, which runs with
// synchronous=NORMAL (fsync at checkpoints, not at every commit); the
// database itself stays consistent even then. Herald's contract is
// "survives a process crash", which this meets; an fsync per commit would
// cost milliseconds on most disks.
//
// # Group commit, and the applier
//
// Writes are not made by their callers. Each Append hands its messages to a
// single appender goroutine, which gathers everything queued (up to a cap)
// into one frame, writes it and then answers every waiting caller. Because
// only one goroutine assigns offsets, that needs no locking: the appender
// keeps each user's last offset in memory (loaded from the file on first
// use).
//
// A second goroutine, the applier (applier.go), moves the log into the
// tables: once a second, or sooner when many messages wait, in one
// transaction for all of them, which records in the same transaction how
// far the log is applied. Committing per second rather than per frame is
// the point: with many users each transaction dirties about one index page
// per user, and a page dirtied by one transaction a second is written to
// the WAL (and checkpointed) once instead of once per frame. Mark and each
// step of Trim run on the applier too, each after an apply of everything
// appended before it.
//
// Until it is applied, a message lives in the tail, an in-memory index of
// the unapplied log (tail.go): Since, Bounds, Inbox and Counts read it
// along with the tables, so a message is readable as soon as Append has
// returned. Reads run on a pool of other connections and, under WAL,
// neither wait for nor delay commits.
//
// # Schema
//
// See schema.go: an append-only messages table keyed by a growing seq, and
// a (user, offset, flags) index that every per-user read is a range of.
package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/herald-gw/herald"
)

// MaxLimit is the most messages one Since call returns; a limit <= 0 or
// above it means MaxLimit. It bounds the memory and time of one replay.
const MaxLimit = herald.MaxHistoryPage

// ErrClosed is returned by every method but Epoch and Close once Close has
// been called. It carries herald.EUnavailable, so an API handler reports
// 503 (shutting down).
var ErrClosed error = herald.Errorf(herald.EUnavailable, "message store is closed")

// Store is a herald.Store backed by one SQLite file. It is safe for
// concurrent use.
type Store struct {
	db       *sql.DB
	wconn    *sql.Conn // the writer's own connection, never used by readers
	epoch    string
	maxBatch int
	path     string // the database file, absolute; the log segments sit beside it
	log      *slog.Logger

	applyEvery time.Duration
	applyRows  int

	w writerStmts // run on wconn: by the applier, and dataVersion by the appender
	r readerStmts // run on the pool

	// Owned by the writer goroutine, the appender (and by init, before it
	// starts).
	lastOf       map[herald.UserID]uint64 // cache of each user's last assigned offset
	dataVersion  int64                    // PRAGMA data_version when lastOf was last known valid
	shm          shmWatch                 // tells when data_version is worth reading; see checkExternal
	versionReads int                      // PRAGMA data_version queries by the appender (tests count them)
	seg          segment                  // the log segment being written

	// The log not yet in the tables, shared by the appender (adds), the
	// applier (drops) and the readers.
	tail tail

	// The applier (see applier.go) and what only it touches.
	ops         chan *request // ops the appender hands on, in order with the Appends
	applyKick   chan struct{} // the tail reached applyRows
	applied     chan struct{} // an apply ended (the tail shrank, or it failed)
	applierDone chan struct{}
	applyErr    atomic.Pointer[error] // the last apply's error, nil once one succeeds
	txn         txnState
	applyUsers  map[herald.UserID]struct{}
	applyArgs   []any

	// mu orders writes against Close: a caller holds it shared while it
	// enqueues, Close takes it exclusively to set closed and close reqs, so
	// nothing can send on a closed channel.
	mu     sync.RWMutex
	closed bool
	reqs   chan *request

	writerDone chan struct{} // closed when the writer goroutine has exited
	closeOnce  sync.Once
	closeErr   error

	trim trimState

	ckconn    *sql.Conn     // the background checkpointer's connection
	walFrames atomic.Int64  // about how many WAL frames were written since the last background checkpoint
	ckptKick  chan struct{} // walFrames reached checkpointFrames
	ckptStop  chan struct{} // closed by Close
	ckptDone  chan struct{} // closed when the checkpointer has exited

	txns atomic.Uint64 // transactions committed, for tests and benchmarks

	lock *fileLock // held from Open to Close; see lock.go
}

var _ herald.Store = (*Store)(nil)

// A request is one unit of work waiting for the writer: an Append (msgs),
// or an op, a function run in a transaction of its own (Mark, Trim).
type request struct {
	ctx  context.Context
	msgs []*herald.Message
	op   func() error
	// onAppender runs op on the appender itself, outside any transaction
	// and without applying the log first (tests use it to reach the
	// appender's state).
	onAppender bool
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
// DSN; "" and ":memory:" are rejected (package memory is the store without
// a file).
//
// A Store owns its file: Open takes an exclusive lock (see lock.go) and
// fails at once, with an error wrapping ErrLocked, while another Store in
// this or another process has the file open. Before it trusts an existing
// file Open checks it (see WithCheckTimeout) and fails with an error
// wrapping ErrCorrupt when it is damaged, or ErrNotDatabase when it is not
// Herald's. Those errors name the file and say how to recover.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}

	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: resolve %s: %w", path, err)
	}
	if err := checkPath(path, abs); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	lock, err := lockDB(abs)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	dsn, err := dsnFor(abs, cfg)
	if err != nil {
		lock.release()
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		lock.release()
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	s, err := open(ctx, db, abs, cfg)
	if err != nil {
		// The lock goes last: until every connection is closed the file
		// is still in use.
		db.Close()
		lock.release()
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, explain(abs, err))
	}
	s.lock = lock
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
	// temp_store keeps the sorts of Trim's scans off the disk.
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", cfg.busyTimeout.Milliseconds()))
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "temp_store(MEMORY)")
	return "file:" + name + "?" + q.Encode(), nil
}

func open(ctx context.Context, db *sql.DB, abs string, cfg config) (*Store, error) {
	// Bound the pool: the writer's connection plus a few readers. Reads run
	// on the CPU in this pure-Go driver, so more readers than CPUs only add
	// page caches and file descriptors (each connection holds the db, -wal
	// and -shm files open); a reconnect storm then queues for a reader
	// (honouring each caller's ctx) instead of opening hundreds.
	readers := max(4, runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(2 + readers) // + the writer and the checkpointer
	db.SetMaxIdleConns(2 + readers)

	wconn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	s := &Store{
		db:          db,
		wconn:       wconn,
		maxBatch:    cfg.maxBatch,
		path:        abs,
		log:         cfg.log,
		applyEvery:  cfg.applyEvery,
		applyRows:   cfg.applyRows,
		lastOf:      make(map[herald.UserID]uint64),
		reqs:        make(chan *request, cfg.maxBatch),
		writerDone:  make(chan struct{}),
		ops:         make(chan *request, 64),
		applyKick:   make(chan struct{}, 1),
		applied:     make(chan struct{}, 1),
		applierDone: make(chan struct{}),
		applyUsers:  make(map[herald.UserID]struct{}),
		ckptKick:    make(chan struct{}, 1),
		ckptStop:    make(chan struct{}),
		ckptDone:    make(chan struct{}),
	}
	s.trim.full = true // nothing is known of the streams yet
	if err := s.init(ctx, abs, cfg); err != nil {
		s.closeStmts()
		wconn.Close()
		return nil, err
	}
	if s.ckconn, err = db.Conn(ctx); err != nil {
		s.closeStmts()
		wconn.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	s.shm = openShmWatch(abs)
	go s.writer()
	go s.applier()
	go s.checkpointer()
	return s, nil
}

func (s *Store) init(ctx context.Context, abs string, cfg config) error {
	// WAL is persistent in the file, so setting it once here covers every
	// later connection. It lets reads run while the writer commits, and it
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
	// The writer's page cache holds the index pages that Appends dirty;
	// SQLite's default (2 MB) makes a large stream index miss it. Readers
	// keep the default: under WAL their caches are refreshed by every
	// commit anyway.
	if _, err := s.wconn.ExecContext(ctx, fmt.Sprintf("PRAGMA cache_size = -%d", cfg.writerCacheKiB)); err != nil {
		return fmt.Errorf("set cache size: %w", err)
	}
	// See checkpointer.
	if _, err := s.wconn.ExecContext(ctx, fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", writerCheckpointFrames)); err != nil {
		return fmt.Errorf("set autocheckpoint: %w", err)
	}

	// Before anything trusts (or migrates) what the file holds.
	if err := quickCheck(ctx, s.wconn, abs, cfg.checkTimeout, cfg.log); err != nil {
		return err
	}
	epoch, err := migrate(ctx, s.wconn, herald.NewEpoch())
	if err != nil {
		return err
	}
	s.epoch = epoch
	if err := s.w.prepare(ctx, s.wconn); err != nil {
		return err
	}
	if err := s.r.prepare(ctx, s.db); err != nil {
		return err
	}
	if err := s.replay(ctx); err != nil {
		return err
	}
	if err := s.w.dataVersion.QueryRowContext(ctx).Scan(&s.dataVersion); err != nil {
		return fmt.Errorf("read data version: %w", err)
	}
	return nil
}

// writerStmts are the statements the writer runs on its connection,
// prepared once. The writer drives its transactions with plain BEGIN/COMMIT
// instead of database/sql's Tx: statements prepared on a sql.Conn are
// re-prepared by every Tx.Stmt, which would cost a parse per statement per
// batch. IMMEDIATE takes the write lock up front, so a transaction never
// has to upgrade a read lock, which can fail with SQLITE_BUSY regardless of
// busy_timeout.
type writerStmts struct {
	begin, commit, rollback *sql.Stmt
	// dataVersion changes when another connection (another process) has
	// committed to the file; the writer's own commits leave it alone.
	dataVersion *sql.Stmt
	lastOffset  *sql.Stmt
	setApplied  *sql.Stmt
	// insert[k] inserts 1<<k messages; see insertEntries.
	insert     [insertSizes]*sql.Stmt
	deleteUpTo *sql.Stmt
	keepLast   *sql.Stmt
	markIDs    *sql.Stmt
	markAll    *sql.Stmt
}

// lastOffsetSQL computes a user's last assigned offset from the file: the
// newest retained message, or streams.last_offset, which retention writes
// before it deletes a user's newest message.
const lastOffsetSQL = `max(
	COALESCE((SELECT MAX("offset") FROM messages WHERE user = ?1), 0),
	COALESCE((SELECT last_offset FROM streams WHERE user = ?1), 0))`

func (w *writerStmts) prepare(ctx context.Context, conn *sql.Conn) error {
	return prepareAll(ctx, conn, w.defs())
}

func (w *writerStmts) defs() []stmtDef {
	defs := []stmtDef{
		{&w.begin, "BEGIN IMMEDIATE"},
		{&w.commit, "COMMIT"},
		{&w.rollback, "ROLLBACK"},
		{&w.dataVersion, "PRAGMA data_version"},
		{&w.lastOffset, "SELECT " + lastOffsetSQL},
		{&w.setApplied, `INSERT INTO meta (key, value) VALUES ('log_applied', ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`},
		{&w.deleteUpTo, `DELETE FROM messages WHERE user = ? AND "offset" <= ?`},
		{&w.keepLast, `INSERT INTO streams (user, last_offset) VALUES (?1, ?2)
			ON CONFLICT (user) DO UPDATE SET last_offset = max(last_offset, excluded.last_offset)`},
		// INDEXED BY: without statistics the planner would rather scan
		// the user's whole stream than look the ids up.
		{&w.markIDs, `UPDATE messages INDEXED BY messages_id SET flags = flags | ?1
			WHERE id IN (SELECT value FROM json_each(?3)) AND user = ?2 AND flags | ?1 <> flags
			RETURNING id`},
		{&w.markAll, `UPDATE messages SET flags = flags | ?1
			WHERE user = ?2 AND flags | ?1 <> flags
			RETURNING id`},
	}
	// OR ROLLBACK: a statement of several rows that may abort half way
	// (ABORT, the default conflict resolution) makes SQLite copy every page
	// it first touches into a statement journal, so that it can undo just
	// that statement. A failed insert fails the whole batch anyway, so the
	// transaction may as well end with it.
	for k := range w.insert {
		rows := strings.Repeat("(?, ?, ?, ?, ?), ", 1<<k)
		defs = append(defs, stmtDef{&w.insert[k],
			`INSERT OR ROLLBACK INTO messages (user, "offset", id, ts, data) VALUES ` + strings.TrimSuffix(rows, ", ")})
	}
	return defs
}

func (w *writerStmts) all() []*sql.Stmt {
	return append([]*sql.Stmt{w.begin, w.commit, w.rollback, w.dataVersion, w.lastOffset, w.setApplied,
		w.deleteUpTo, w.keepLast, w.markIDs, w.markAll}, w.insert[:]...)
}

// readerStmts run on the pool; database/sql prepares each on a connection
// the first time it runs there.
type readerStmts struct {
	since, bounds, inbox, counts *sql.Stmt
	lastOffset                   *sql.Stmt
	trimAll, trimUser, trimAge   *sql.Stmt
}

func (r *readerStmts) prepare(ctx context.Context, db *sql.DB) error {
	return prepareAll(ctx, db, r.defs())
}

func (r *readerStmts) defs() []stmtDef {
	return []stmtDef{
		{&r.since, `SELECT "offset", id, ts, data FROM messages
			WHERE user = ? AND "offset" > ? ORDER BY "offset" LIMIT ?`},
		{&r.bounds, `SELECT COALESCE((SELECT MIN("offset") FROM messages WHERE user = ?1), 0), ` + lastOffsetSQL},
		{&r.inbox, `SELECT "offset", id, ts, flags, data FROM messages
			WHERE user = ?1 AND "offset" < ?2 AND flags & ?3 = ?4
			ORDER BY "offset" DESC LIMIT ?5`},
		// The third column, the newest offset in the table, tells which
		// entries of the tail the first two have not counted.
		{&r.counts, fmt.Sprintf(`SELECT COALESCE(SUM(flags & %d = 0), 0), COALESCE(SUM(flags & %d = 0), 0),
			(SELECT COALESCE(MAX("offset"), 0) FROM messages WHERE user = ?1)
			FROM messages WHERE user = ?1 AND flags & %d = 0`, herald.FlagRead, herald.FlagSeen, herald.FlagArchived)},
		{&r.lastOffset, "SELECT " + lastOffsetSQL},
		// Retention's scans (see Trim).
		{&r.trimAll, `SELECT user, MIN("offset"), MAX("offset") FROM messages
			GROUP BY user HAVING MAX("offset") - MIN("offset") >= ?`},
		{&r.trimUser, `SELECT (SELECT MIN("offset") FROM messages WHERE user = ?1),
			(SELECT MAX("offset") FROM messages WHERE user = ?1)`},
		// INDEXED BY: the planner would rather scan messages_stream
		// whole than sort the expired rows by user.
		{&r.trimAge, `SELECT user, MIN("offset"), MAX("offset") FROM messages INDEXED BY messages_ts
			WHERE ts < ? GROUP BY user`},
	}
}

func (r *readerStmts) all() []*sql.Stmt {
	return []*sql.Stmt{r.since, r.bounds, r.inbox, r.counts, r.lastOffset, r.trimAll, r.trimUser, r.trimAge}
}

type stmtDef struct {
	dst   **sql.Stmt
	query string
}

func prepareAll(ctx context.Context, p interface {
	PrepareContext(context.Context, string) (*sql.Stmt, error)
}, defs []stmtDef) error {
	for _, d := range defs {
		st, err := p.PrepareContext(ctx, d.query)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", d.query, err)
		}
		*d.dst = st
	}
	return nil
}

// Epoch returns the epoch created with the database file and kept across
// reopens.
func (s *Store) Epoch() string { return s.epoch }

// Append stores msgs in one log frame, shared with whatever other Appends
// are queued, and returns once the frame is written (durable; see the
// package doc) and the messages are readable. It assigns each message its
// Offset and the store's Epoch, and fills in Time (now) and ID
// (herald.NewMessageID) when they are zero. Offsets follow the order in
// which Appends are accepted and, within one Append, slice order.
//
// If ctx ends before the appender has taken the batch, Append returns
// ctx.Err() and nothing is stored. Once taken, the batch is written even if
// ctx ends meanwhile, and Append reports the outcome, so a caller never sees
// an error for messages that were in fact stored.
func (s *Store) Append(ctx context.Context, msgs []*herald.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := herald.CheckMessages(msgs); err != nil {
		return fmt.Errorf("sqlite: append: %w", err)
	}
	if len(msgs) == 0 {
		return s.checkOpen()
	}
	// Defaults are filled here, on the caller's goroutine, to keep the
	// single appender's work small.
	now := time.Now()
	for _, m := range msgs {
		if m.Time.IsZero() {
			m.Time = now
		}
		if m.ID == "" {
			m.ID = herald.NewMessageID(m.Time)
		}
	}
	return s.submit(&request{ctx: ctx, msgs: msgs})
}

// do runs op on the applier, in a transaction of its own after an apply of
// everything appended before it, and returns its error or the commit's.
// op must only use the writer's statements.
func (s *Store) do(ctx context.Context, op func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.submit(&request{ctx: ctx, op: op})
}

// submit queues req for the writer and waits for its outcome.
func (s *Store) submit(req *request) error {
	ctx := req.ctx
	req.done = make(chan error, 1)
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
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
		// The writer took the request first: it will be written, so report
		// what actually happened.
		return <-req.done
	}
}

func (s *Store) checkOpen() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return nil
}

// writer is the appender, the only goroutine that writes the log. It runs
// until Close closes reqs, and drains what is still queued before it exits.
// Ops (Mark, Trim) it hands on to the applier, after the Appends queued
// before them are in the log and the tail.
func (s *Store) writer() {
	defer close(s.writerDone)
	defer func() {
		// The segment is closed before the applier may delete it (which
		// fails on Windows while it is open).
		if s.seg.f != nil {
			if err := s.seg.f.Close(); err != nil {
				s.log.Warn("sqlite: close log segment", "err", err)
			}
		}
		close(s.ops) // the applier applies the rest and exits
	}()
	var (
		batch   []*request
		scratch = newBatchState()
		next    *request // an op that ended the previous gathering
	)
	for {
		req := next
		next = nil
		if req == nil {
			var ok bool
			if req, ok = <-s.reqs; !ok {
				return
			}
		}
		if req.op != nil {
			if req.onAppender {
				if s.claim(req) {
					req.done <- req.op()
				}
			} else {
				s.ops <- req // the applier claims it
			}
			continue
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
				if req.op != nil {
					// Ops run in order with the Appends around them,
					// after this batch.
					next = req
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

// claim takes req for the writer unless its caller has already given up or
// its ctx has ended (then the caller is answered with ctx.Err()), so that
// "cancelled before taken" reliably means "not written".
func (s *Store) claim(req *request) bool {
	if !req.state.CompareAndSwap(statePending, stateTaken) {
		return false
	}
	if err := req.ctx.Err(); err != nil {
		req.done <- err
		return false
	}
	return true
}

// take claims req for the batch and returns the batch and its message
// count.
func (s *Store) take(batch []*request, req *request, n int) ([]*request, int) {
	if !s.claim(req) {
		return batch, n
	}
	return append(batch, req), n + len(req.msgs)
}

// checkExternal drops the cached last offsets if another connection (the
// sqlite3 shell of an operator's repair, say) committed to the file since
// the appender last looked. It goes by PRAGMA data_version on the writer's
// connection, which the applier commits on: its own commits leave it alone,
// so any change is someone else's. While the applier is inside a
// transaction the appender does not query the connection, which would wait
// for the transaction's statements and COMMIT (milliseconds, once a second
// on every Append in flight): nobody else can commit while the applier
// holds the write lock, so the value the applier read right after its
// BEGIN is still current.
//
// The query starts and ends a read transaction (tens of microseconds, ≈ 5 %
// of the server's CPU when it ran before every frame), so it runs only when
// the WAL index header changed since the last query: every commit, by any
// connection of any process, rewrites that header, so an unchanged header
// means no commit, the applier's own included, and nothing to look at.
func (s *Store) checkExternal(ctx context.Context) error {
	s.txn.mu.Lock()
	v := s.txn.dv
	if !s.txn.open {
		if !s.shm.changed() {
			s.txn.mu.Unlock()
			return nil
		}
		s.versionReads++
		if err := s.w.dataVersion.QueryRowContext(ctx).Scan(&v); err != nil {
			s.txn.mu.Unlock()
			return fmt.Errorf("read data version: %w", err)
		}
		// The header read before the query: a commit between the two is
		// in v, and it changed the header too, so the next check queries
		// again, finding nothing new. Never more than one query too many.
		s.shm.queried()
	}
	s.txn.mu.Unlock()
	if v != s.dataVersion {
		clear(s.lastOf)
		s.dataVersion = v
	}
	return nil
}

// txnState tells the appender whether the applier is inside a transaction
// on the writer's connection; see checkExternal.
type txnState struct {
	mu   sync.Mutex
	open bool
	dv   int64 // PRAGMA data_version right after the open transaction's BEGIN
}

// beginTxn starts a write transaction on the writer's connection, for the
// applier. IMMEDIATE takes the write lock up front.
func (s *Store) beginTxn(ctx context.Context) error {
	s.txn.mu.Lock()
	defer s.txn.mu.Unlock()
	if _, err := s.w.begin.ExecContext(ctx); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := s.w.dataVersion.QueryRowContext(ctx).Scan(&s.txn.dv); err != nil {
		_, _ = s.w.rollback.ExecContext(ctx)
		return fmt.Errorf("read data version: %w", err)
	}
	s.txn.open = true
	return nil
}

// endTxn commits (or, if commit is false, rolls back) the transaction
// beginTxn started.
func (s *Store) endTxn(ctx context.Context, commit bool) error {
	var err error
	if commit {
		if _, err = s.w.commit.ExecContext(ctx); err != nil {
			err = fmt.Errorf("commit: %w", err)
		}
	}
	if !commit || err != nil {
		// A failed statement may already have rolled the transaction
		// back; the rollback error adds nothing.
		_, _ = s.w.rollback.ExecContext(ctx)
	}
	s.txn.mu.Lock()
	s.txn.open = false
	s.txn.mu.Unlock()
	return err
}

// maxCachedUsers bounds the appender's cache of last offsets (about 100
// bytes an entry). Past it, entries are dropped at random; a dropped user
// costs one indexed lookup on its next Append.
const maxCachedUsers = 1 << 18

// lastOffset returns user's last assigned offset, from the cache or else
// the tail and the file. Only the appender calls it. The tail is read
// first: the appender alone adds to it, so its newest entry is the user's
// last offset, and when it has none every entry the user had is already
// committed to the tables, which are read second. The tables are read even
// when the tail has one: a commit from outside (an operator's sqlite3
// shell, see checkExternal) may have put a higher offset there
// (TestExternalWriter).
func (s *Store) lastOffset(ctx context.Context, user herald.UserID) (uint64, error) {
	if off, ok := s.lastOf[user]; ok {
		return off, nil
	}
	inTail := s.tail.last(user)
	var off int64
	if err := s.r.lastOffset.QueryRowContext(ctx, string(user)).Scan(&off); err != nil {
		return 0, fmt.Errorf("read last offset of %q: %w", user, err)
	}
	last := max(inTail, uint64(off))
	s.cacheLast(user, last)
	return last, nil
}

func (s *Store) cacheLast(user herald.UserID, off uint64) {
	if _, ok := s.lastOf[user]; !ok && len(s.lastOf) >= maxCachedUsers {
		drop := maxCachedUsers / 8
		for u := range s.lastOf { // map order is random
			delete(s.lastOf, u)
			if drop--; drop == 0 {
				break
			}
		}
	}
	s.lastOf[user] = off
}

// runOp runs op in a transaction of its own, on the applier.
func (s *Store) runOp(op func() error) (err error) {
	ctx := context.Background()
	if err := s.beginTxn(ctx); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	if err := op(); err != nil {
		_ = s.endTxn(ctx, false)
		return err
	}
	if err := s.endTxn(ctx, true); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	s.txns.Add(1)
	s.walGrew(4)
	return nil
}

// batchState is the appender's scratch space, reused across batches.
type batchState struct {
	last    map[herald.UserID]uint64 // last offset per user in this batch
	offsets []uint64                 // assigned offsets, in batch order
	entries []tailEntry
}

func newBatchState() *batchState {
	return &batchState{last: make(map[herald.UserID]uint64)}
}

// segment is the log file the appender writes.
type segment struct {
	f    *os.File
	gen  int64
	size int64
	err  error // set when a failed write could not be undone: the log is unusable
}

// write makes the batch durable: one frame in the log, with one write(2).
// Offsets are assigned to the messages, and the cache advanced, only after
// the write succeeded, so a failed batch leaves every Offset at 0 ("not
// stored") and the cache as it was.
func (s *Store) write(batch []*request, st *batchState) error {
	ctx := context.Background()
	if s.seg.err != nil {
		return s.seg.err
	}
	if err := s.waitForRoom(); err != nil {
		return err
	}
	if err := s.checkExternal(ctx); err != nil {
		return fmt.Errorf("sqlite: append: %w", err)
	}
	clear(st.last)
	st.offsets = st.offsets[:0]
	size := frameHeader
	for _, r := range batch {
		for _, m := range r.msgs {
			off, ok := st.last[m.User]
			if !ok {
				var err error
				if off, err = s.lastOffset(ctx, m.User); err != nil {
					return fmt.Errorf("sqlite: append: %w", err)
				}
			}
			off++
			st.last[m.User] = off
			st.offsets = append(st.offsets, off)
			size += len(m.User) + len(m.ID) + len(m.Data) + 5*binary.MaxVarintLen64
		}
	}

	// The frame is allocated afresh, at its final size: the tail's
	// entries point into it until they are applied.
	buf, start := beginFrame(make([]byte, 0, size))
	st.entries = st.entries[:0]
	i := 0
	for _, r := range batch {
		for _, m := range r.msgs {
			ts := m.Time.UnixNano()
			buf = appendRecord(buf, m.User, st.offsets[i], m.ID, ts, m.Data)
			data := buf[len(buf)-len(m.Data) : len(buf) : len(buf)]
			st.entries = append(st.entries, tailEntry{user: m.User, off: st.offsets[i], id: m.ID, ts: ts, data: data})
			i++
		}
	}
	buf = sealFrame(buf, start)
	end, err := s.appendLog(buf)
	if err != nil {
		return fmt.Errorf("sqlite: append: %w", err)
	}
	s.tail.add(st.entries, end)
	if s.tail.len() >= s.applyRows {
		select {
		case s.applyKick <- struct{}{}:
		default:
		}
	}
	clear(st.entries)

	for user, off := range st.last {
		s.cacheLast(user, off)
	}
	s.trim.touch(st.last)
	i = 0
	for _, r := range batch {
		for _, m := range r.msgs {
			m.Offset = st.offsets[i]
			m.Epoch = s.epoch
			i++
		}
	}
	return nil
}

// waitForRoom holds the appender while the tail is longer than the
// applier can be expected to catch up with, and fails when the applier
// fails: then nothing more is accepted until an apply succeeds.
func (s *Store) waitForRoom() error {
	for s.tail.len() >= maxTailFactor*s.applyRows {
		if err := s.applyErr.Load(); err != nil {
			return *err
		}
		select {
		case s.applyKick <- struct{}{}:
		default:
		}
		<-s.applied
	}
	return nil
}

// appendLog writes one frame at the end of the log, starting a new segment
// when this one is full, and returns the position after it.
func (s *Store) appendLog(b []byte) (logPos, error) {
	g := &s.seg
	if g.f == nil || g.size > 0 && g.size+int64(len(b)) > segmentBytes {
		if g.f != nil {
			if err := g.f.Close(); err != nil {
				s.log.Warn("sqlite: close log segment", "err", err)
			}
			g.f = nil
		}
		g.gen++
		f, err := os.OpenFile(segmentPath(s.path, g.gen), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return logPos{}, fmt.Errorf("open log: %w", err)
		}
		g.f, g.size = f, 0
	}
	if g.size == 0 {
		// The header goes with the first frame, in the same write.
		b = append(segmentHeader(s.epoch), b...)
	}
	if _, err := g.f.Write(b); err != nil {
		// A partial frame followed by a later, acknowledged one would
		// end the replay before it: cut it off, or stop writing.
		if terr := g.f.Truncate(g.size); terr != nil {
			g.err = fmt.Errorf("sqlite: append: log %s unusable after a failed write (%w) and a failed truncate: %w",
				g.f.Name(), err, terr)
		} else if _, serr := g.f.Seek(g.size, io.SeekStart); serr != nil {
			g.err = fmt.Errorf("sqlite: append: log %s unusable after a failed write: %w", g.f.Name(), serr)
		}
		return logPos{}, fmt.Errorf("write log: %w", err)
	}
	g.size += int64(len(b))
	return logPos{g.gen, g.size}, nil
}

// Since returns up to limit messages of user with Offset > since, in offset
// order.
func (s *Store) Since(ctx context.Context, user herald.UserID, since uint64, limit int) ([]herald.Message, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxLimit {
		limit = MaxLimit
	}
	if since >= 1<<63 {
		return nil, nil // beyond any offset SQLite's int64 can hold
	}
	pending := s.tail.since(user, since, limit) // first; see tail
	rows, err := s.r.since.QueryContext(ctx, string(user), int64(since), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: since: %w", err)
	}
	defer rows.Close()
	var out []herald.Message
	for rows.Next() {
		var (
			off, ts int64
			m       = herald.Message{User: user, Epoch: s.epoch}
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
	// The table's rows come first in offset order; an entry the table
	// already has (applied since the tail was read) is skipped.
	var newest uint64
	if len(out) > 0 {
		newest = out[len(out)-1].Offset
	}
	for i := range pending {
		if len(out) == limit {
			break
		}
		if pending[i].off > newest {
			out = append(out, pending[i].message(s.epoch))
		}
	}
	return out, nil
}

// Bounds reports the oldest retained and the newest assigned offset of
// user's stream, as committed.
func (s *Store) Bounds(ctx context.Context, user herald.UserID) (first, last uint64, err error) {
	if err := s.checkOpen(); err != nil {
		return 0, 0, err
	}
	tf, tl := s.tail.bounds(user) // first; see tail
	var f, l int64
	if err := s.r.bounds.QueryRowContext(ctx, string(user)).Scan(&f, &l); err != nil {
		return 0, 0, fmt.Errorf("sqlite: bounds: %w", err)
	}
	first, last = uint64(f), max(uint64(l), tl)
	if first == 0 {
		first = tf
	}
	return first, last, nil
}

// Inbox lists the user's retained messages with their flags, newest first.
func (s *Store) Inbox(ctx context.Context, q herald.InboxQuery) ([]herald.InboxItem, error) {
	mask, want, ok := q.Status.Filter()
	if !ok {
		return nil, herald.Errorf(herald.EInvalidRequest, "unknown inbox status %d", q.Status)
	}
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	before := int64(1<<63 - 1)
	if q.Before != 0 && q.Before < 1<<63 {
		before = int64(q.Before)
	}
	var pending []tailEntry
	if want == 0 { // the tail's entries have no flags set
		pending = s.tail.before(q.User, uint64(before), q.PageSize()) // first; see tail
	}
	rows, err := s.r.inbox.QueryContext(ctx, string(q.User), before, mask, want, q.PageSize())
	if err != nil {
		return nil, fmt.Errorf("sqlite: inbox: %w", err)
	}
	defer rows.Close()
	var out []herald.InboxItem
	for rows.Next() {
		var (
			off, ts int64
			flags   int
			m       = herald.Message{User: q.User, Epoch: s.epoch}
		)
		if err := rows.Scan(&off, &m.ID, &ts, &flags, &m.Data); err != nil {
			return nil, fmt.Errorf("sqlite: inbox: scan: %w", err)
		}
		m.Offset = uint64(off)
		m.Time = time.Unix(0, ts)
		out = append(out, herald.InboxFlags(flags).Item(m))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: inbox: %w", err)
	}
	if len(pending) == 0 {
		return out, nil
	}
	// An entry the table already has (applied since the tail was read)
	// is listed as the table has it.
	have := make(map[uint64]bool, len(out))
	for _, it := range out {
		have[it.Offset] = true
	}
	for i := range pending {
		if !have[pending[i].off] {
			out = append(out, herald.InboxFlags(0).Item(pending[i].message(s.epoch)))
		}
	}
	slices.SortFunc(out, func(a, b herald.InboxItem) int { return cmp.Compare(b.Offset, a.Offset) })
	return out[:min(len(out), q.PageSize())], nil
}

// Mark sets mark on the user's messages with the given ids, or on all of
// them, and returns the ids whose flags changed. It is one transaction on
// the writer, ordered with the Appends around it.
func (s *Store) Mark(ctx context.Context, user herald.UserID, mark herald.Mark, ids []string, all bool) ([]string, error) {
	bits := int(mark.Flags())
	if bits == 0 {
		return nil, herald.Errorf(herald.EInvalidRequest, "unknown mark %d", mark)
	}
	var idsJSON []byte
	if !all {
		if len(ids) == 0 {
			return nil, s.checkOpen()
		}
		var err error
		if idsJSON, err = json.Marshal(ids); err != nil {
			return nil, fmt.Errorf("sqlite: mark: %w", err)
		}
	}
	var changed []string
	err := s.do(ctx, func() error {
		changed = changed[:0]
		var rows *sql.Rows
		var err error
		if all {
			rows, err = s.w.markAll.QueryContext(context.Background(), bits, string(user))
		} else {
			rows, err = s.w.markIDs.QueryContext(context.Background(), bits, string(user), idsJSON)
		}
		if err != nil {
			return fmt.Errorf("sqlite: mark: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return fmt.Errorf("sqlite: mark: scan: %w", err)
			}
			changed = append(changed, id)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("sqlite: mark: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return herald.DedupeIDs(changed), nil
}

// Counts returns the user's unread and unseen counts over retained messages
// that are not archived. It reads only the user's index entries.
func (s *Store) Counts(ctx context.Context, user herald.UserID) (herald.InboxCounts, error) {
	var c herald.InboxCounts
	if err := s.checkOpen(); err != nil {
		return c, err
	}
	pending := s.tail.since(user, 0, math.MaxInt) // first; see tail
	var newest int64
	if err := s.r.counts.QueryRowContext(ctx, string(user)).Scan(&c.Unread, &c.Unseen, &newest); err != nil {
		return c, fmt.Errorf("sqlite: counts: %w", err)
	}
	// The tail's entries are unread and unseen; those the table has
	// (applied since the tail was read) are counted already.
	for _, e := range pending {
		if e.off > uint64(newest) {
			herald.InboxFlags(0).Count(&c)
		}
	}
	return c, nil
}

// Close stops accepting writes, waits for the writer to commit everything
// already queued, and closes the database. It is safe to call more than once
// and from several goroutines; every call returns the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.reqs)
		s.mu.Unlock()
		<-s.writerDone
		<-s.applierDone
		if err := s.applyErr.Load(); err != nil {
			// Still in the log: the next Open applies it.
			s.closeErr = *err
		}
		close(s.ckptStop)
		<-s.ckptDone
		s.closeErr = errors.Join(s.closeErr, s.closeStmts(), s.ckconn.Close(), s.wconn.Close(), s.db.Close())
		// After every connection: see shmWatch.close.
		s.shm.close()
		// Only now that no connection is left may another Store open it.
		s.closeErr = errors.Join(s.closeErr, s.lock.release())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("sqlite: close: %w", s.closeErr)
		}
	})
	return s.closeErr
}

func (s *Store) closeStmts() error {
	var errs []error
	for _, st := range append(s.w.all(), s.r.all()...) {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// Checkpointing. Under WAL every commit appends pages to the -wal file, and a
// checkpoint copies them back into the database file, fsyncing both, so the
// WAL can start over. SQLite's default is to checkpoint every 1,000 frames on
// the committing connection, which here is the writer: every few batches it
// stopped for two fsyncs and the copy, and with many users (about one frame
// per message) that cost a third of the throughput.
//
// So a background goroutine on a connection of its own does the work with
// PASSIVE checkpoints, which never take the write lock: whenever about
// checkpointFrames frames were written, and once a second when less was.
// The WAL can restart from its beginning only once it has been copied
// completely while nobody was appending, which under load the background
// never sees; the writer's own autocheckpoint, at writerCheckpointFrames,
// still provides that, and by then it has only the last few frames left to
// copy. The WAL so stays under about writerCheckpointFrames pages (32 MiB
// with 4 KiB pages).
//
// checkpointFrames trades WAL length for writes: a checkpoint copies each
// page once however many frames of it the WAL holds, and under load the
// same pages (a busy user's index page, the right edges of the table and
// its indexes) are rewritten by commit after commit. Every 4,000 frames
// rather than 1,000 copies fewer duplicates: 7–10 % less whole-process CPU
// per message in BenchmarkAppendBatch16ManyUsers; 8,000 measured no better.
const (
	checkpointFrames       = 4000
	writerCheckpointFrames = 8192
	idleCheckpoint         = time.Second
)

// walGrew tells the checkpointer that a commit wrote about frames frames.
func (s *Store) walGrew(frames int) {
	if s.walFrames.Add(int64(frames)) >= checkpointFrames {
		select {
		case s.ckptKick <- struct{}{}:
		default:
		}
	}
}

// checkpointer runs background checkpoints until Close.
func (s *Store) checkpointer() {
	defer close(s.ckptDone)
	tick := time.NewTicker(idleCheckpoint)
	defer tick.Stop()
	for {
		select {
		case <-s.ckptStop:
			return
		case <-s.ckptKick:
		case <-tick.C:
			if s.walFrames.Load() == 0 {
				continue
			}
		}
		s.walFrames.Store(0)
		// Errors are not fatal (SQLITE_BUSY when the writer's own
		// checkpoint runs, say): the next round or the writer's
		// autocheckpoint catches up.
		_, _ = s.ckconn.ExecContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)")
	}
}
