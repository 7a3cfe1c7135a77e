// Package postgres is a herald.Store on PostgreSQL (13 or newer), through
// pgx and its pool: the store that several Herald nodes share, so that any
// node can append to any user's stream and any node can replay it.
//
// # Offsets across nodes
//
// Offsets are allocated by the database, not by a node. The streams table
// holds each user's last offset; an Append adds its message count to it
// with INSERT ... ON CONFLICT DO UPDATE ... RETURNING, in the same
// transaction that inserts the messages (one statement; see appendSQL). The
// upsert takes the row lock of the user's stream, so writers of one user —
// on this node or any other — take turns on it until commit, and a
// transaction that rolls back gives its offsets back. Offsets are therefore
// gap-free and unique per user however many nodes write, with no
// coordination between the nodes. A batch locks its users' rows in one
// order (byte order of the user id; Trim uses the same), so two batches
// over the same users cannot deadlock.
//
// # Group commit
//
// A commit costs a round trip and a WAL flush whatever its size, so Appends
// are not committed by their callers: each hands its messages to the
// Store's committer goroutine, which gathers everything that arrived while
// the previous commit was in flight (up to WithMaxBatch messages and
// WithMaxBatchBytes bytes) into one transaction, and then wakes every
// caller with its own result. One Append is never split. If a batch fails
// for a reason of its own (not the server being unreachable), its Appends
// are retried one by one, so one bad Append fails alone.
//
// # Failures
//
// A lost connection or an unreachable server makes the calls fail with an
// error carrying herald.EUnavailable (the API answers 503), and Ready fails.
// Before that the Store retries on a fresh connection, since the usual cause
// is connections the server dropped while they sat idle in the pool (a
// restart, a failover, pg_terminate_backend): the first call after such an
// outage succeeds instead of failing. A commit whose answer was lost is
// resolved by asking the server what became of its transaction
// (pg_xact_status), so an Append reports success exactly when its messages
// were committed; see resolve for the one case that stays open.
//
// # Schema
//
// See migrations/ and migrate.go: numbered SQL files, embedded, applied by
// Open under an advisory lock, in the schema the connection's search_path
// names.
package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/coalesce"
)

// MaxLimit is the most messages one Since call returns; a limit <= 0 or
// above it means MaxLimit.
const MaxLimit = herald.MaxHistoryPage

// Store is a herald.Store on PostgreSQL. It is safe for concurrent use, and
// any number of Stores, in this process or others, may share one schema.
type Store struct {
	pool  *pgxpool.Pool
	epoch string
	cfg   config
	log   *slog.Logger

	// mu orders Appends against Close: a caller holds it shared while it
	// enqueues, Close takes it exclusively to set closed and close reqs, so
	// nothing can send on a closed channel.
	mu         sync.RWMutex
	closed     bool
	reqs       chan *request
	committers sync.WaitGroup
	closeOnce  sync.Once

	down atomic.Bool   // the server was found unreachable, and nothing has worked since
	txns atomic.Uint64 // group commits committed, for tests and benchmarks

	bounds        *coalesce.Batcher[string, bounds] // stream positions, queries shared (bounds.go)
	boundsQueries atomic.Uint64                     // shared queries run, for tests
	beforeBounds  func()                            // a test's hook, called before each shared query
}

var _ herald.Store = (*Store)(nil)

// Open connects to the PostgreSQL server of dsn, brings the schema up to
// date (see migrate) and starts the committer. dsn is a PostgreSQL URL or
// keyword/value string as pgx reads it, pool_* settings included; tables
// are made in the first schema of its search_path, which must exist. Close
// the Store to flush pending Appends and close its connections.
//
// An unreachable server makes Open fail with an error carrying
// herald.EUnavailable, so a caller may retry; a schema Herald cannot use
// fails with an error wrapping ErrNotHerald.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx leaves the password out of its parse errors.
		return nil, fmt.Errorf("postgres: %w", err)
	}
	switch {
	case cfg.maxConns > 0:
		pc.MaxConns = cfg.maxConns
	case !strings.Contains(dsn, "pool_max_conns"):
		pc.MaxConns = DefaultMaxConns
	}
	if pc.ConnConfig.RuntimeParams["application_name"] == "" {
		// So that a DBA sees in pg_stat_activity whose connections these are.
		pc.ConnConfig.RuntimeParams["application_name"] = "herald"
	}

	epoch, schema, err := migrate(ctx, pc.ConnConfig, herald.NewEpoch(), cfg.log)
	if err != nil {
		if ctx.Err() == nil && classify(err) == kindConn {
			return nil, unavailable("open", err)
		}
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	s := &Store{
		pool:  pool,
		epoch: epoch,
		cfg:   cfg,
		log:   cfg.log,
		reqs:  make(chan *request, cfg.maxBatch),
	}
	s.bounds = coalesce.New(s.queryBounds)
	for range cfg.committers {
		s.committers.Go(s.committer)
	}
	s.log.Info("postgres: store open", "schema", schema, "epoch", epoch,
		"max_conns", pc.MaxConns, "committers", cfg.committers, "application_name", pc.ConnConfig.RuntimeParams["application_name"])
	return s, nil
}

// Epoch returns the epoch created with the schema and shared by every node.
func (s *Store) Epoch() string { return s.epoch }

// Ready reports whether the server answers: nil, or an EUnavailable error
// saying why not. It pings on a pooled connection with a short timeout, so
// a readiness probe may call it as often as it likes.
func (s *Store) Ready() error {
	if s.isClosed() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		if s.isClosed() {
			return ErrClosed
		}
		return &herald.Error{Code: herald.EUnavailable, Message: "PostgreSQL unreachable", Err: fmt.Errorf("postgres: ping: %w", err)}
	}
	s.connOK()
	return nil
}

// Close stops accepting Appends, waits for the committer to commit those
// already queued, and closes the pool (waiting for calls in flight). It is
// safe to call more than once; later calls of every method but Epoch fail
// with ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.reqs)
		s.mu.Unlock()
		s.committers.Wait()
		s.pool.Close()
	})
	return nil
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

func (s *Store) checkOpen() error {
	if s.isClosed() {
		return ErrClosed
	}
	return nil
}

// connLost logs that the server became unreachable, once per outage.
func (s *Store) connLost(op string, err error) {
	if s.down.CompareAndSwap(false, true) {
		s.log.Warn("postgres: server unreachable; store calls fail with 503 until it is back", "op", op, "err", err)
	}
}

// connOK logs the end of an outage, once.
func (s *Store) connOK() {
	if s.down.Load() && s.down.CompareAndSwap(true, false) {
		s.log.Info("postgres: server reachable again")
	}
}

// validText reports whether s can be stored in a text column: PostgreSQL
// refuses NUL bytes and, in a UTF8 database, invalid UTF-8.
func validText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// A request is one Append waiting for the committer.
type request struct {
	ctx   context.Context
	msgs  []*herald.Message
	bytes int
	// state settles the race between the committer taking the request and
	// the caller giving up on it: whoever moves it out of statePending
	// first wins.
	state atomic.Int32
	done  chan error // buffered, receives exactly one result once taken
}

const (
	statePending int32 = iota
	stateTaken
	stateAbandoned
)

// Append stores msgs and returns once they are committed, in a transaction
// shared with whatever other Appends of this Store are queued. It assigns
// each message its Offset and the Store's Epoch, and fills in Time (now)
// and ID (herald.NewMessageID) when they are zero.
//
// If ctx ends before the committer has taken the Append, it returns
// ctx.Err() and nothing is stored. Once taken, the Append is written even
// if ctx ends meanwhile, and Append reports the outcome, so a caller never
// sees an error for messages that were in fact stored.
//
// A user id or message id that PostgreSQL text cannot hold (a NUL byte, or
// invalid UTF-8) is an EInvalidRequest error.
func (s *Store) Append(ctx context.Context, msgs []*herald.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := herald.CheckMessages(msgs); err != nil {
		return fmt.Errorf("postgres: append: %w", err)
	}
	for i, m := range msgs {
		if !validText(string(m.User)) || !validText(m.ID) {
			return herald.Errorf(herald.EInvalidRequest, "message %d: its user id or id holds a NUL byte or invalid UTF-8", i)
		}
	}
	if len(msgs) == 0 {
		return s.checkOpen()
	}
	now := time.Now()
	size := 0
	for _, m := range msgs {
		if m.Time.IsZero() {
			m.Time = now
		}
		if m.ID == "" {
			m.ID = herald.NewMessageID(m.Time)
		}
		m.Offset, m.Epoch = 0, ""
		size += len(m.User) + len(m.ID) + len(m.Data) + 32
	}
	return s.submit(&request{ctx: ctx, msgs: msgs, bytes: size})
}

// submit queues req for the committer and waits for its outcome.
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
		// The committer took the request first: it will be written, so
		// report what actually happened.
		return <-req.done
	}
}

// claim takes req for a batch unless its caller has already given up or
// its ctx has ended (then the caller is answered with ctx.Err()), so that
// "cancelled before taken" reliably means "not written".
func claim(req *request) bool {
	if !req.state.CompareAndSwap(statePending, stateTaken) {
		return false
	}
	if err := req.ctx.Err(); err != nil {
		req.done <- err
		return false
	}
	return true
}

// committer is a goroutine that writes Appends; WithCommitters of them
// share reqs. Each runs until Close closes reqs, and commits what is still
// queued before it exits.
func (s *Store) committer() {
	var (
		batch []*request
		next  *request // a request that did not fit the previous batch
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
		batch = batch[:0]
		n, size := 0, 0
		if claim(req) {
			batch = append(batch, req)
			n, size = len(req.msgs), req.bytes
		}
		// The callers answered by the previous commit are runnable but
		// usually have not run yet: one yield lets them queue their next
		// Appends first (as in package sqlite). With nothing else
		// runnable it returns at once; unlike a linger timer it never
		// delays a commit by wall-clock time.
		runtime.Gosched()
		// Everything that arrived while the previous batch was being
		// committed is waiting in reqs: take it, up to the caps. Nothing
		// waits for more to come, so a lone Append is committed at once.
	gather:
		for n < s.cfg.maxBatch && size < s.cfg.maxBatchBytes {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break gather // closing: what is gathered still commits
				}
				if n > 0 && (n+len(r.msgs) > s.cfg.maxBatch || size+r.bytes > s.cfg.maxBatchBytes) {
					next = r
					break gather
				}
				if claim(r) {
					batch = append(batch, r)
					n += len(r.msgs)
					size += r.bytes
				}
			default:
				break gather
			}
		}
		if len(batch) > 0 {
			s.commit(batch)
			clear(batch) // let the requests and their messages be collected
		}
	}
}

// commit writes batch and answers each of its callers. A batch that fails
// for a reason of its own is retried one Append at a time, so that the
// Appends that can be stored are, and each caller learns its own fate.
func (s *Store) commit(batch []*request) {
	err := s.write(batch)
	if err != nil && len(batch) > 1 && splittable(err) {
		s.log.Warn("postgres: a group commit failed; retrying its Appends one by one", "appends", len(batch), "err", err)
		for _, r := range batch {
			r.done <- s.write([]*request{r})
		}
		return
	}
	for _, r := range batch {
		r.done <- err
	}
}

// errOutcomeUnknown is wrapped by the error of an Append whose commit was
// sent but whose outcome could not be learnt before the write timeout.
var errOutcomeUnknown = errors.New("the server did not say whether the commit succeeded")

// splittable reports whether a batch's error may be one Append's fault:
// not an unreachable server, and not a commit of unknown outcome (retrying
// that could store its messages twice).
func splittable(err error) bool {
	return herald.ErrorCodeOf(err) != herald.EUnavailable && !errors.Is(err, errOutcomeUnknown)
}

// batchArgs are the arrays one append statement takes.
type batchArgs struct {
	users  []string // distinct, in byte order: the order their rows are locked in
	counts []int64  // messages per user
	// One element per message, in batch order.
	mUser []string
	mBack []int64 // how far below the user's new last offset the message's offset is
	mID   []string
	mTS   []int64
	mData [][]byte
}

func newBatchArgs(batch []*request) *batchArgs {
	count := make(map[herald.UserID]int64)
	n := 0
	for _, r := range batch {
		for _, m := range r.msgs {
			count[m.User]++
			n++
		}
	}
	a := &batchArgs{
		users:  make([]string, 0, len(count)),
		counts: make([]int64, 0, len(count)),
		mUser:  make([]string, 0, n),
		mBack:  make([]int64, 0, n),
		mID:    make([]string, 0, n),
		mTS:    make([]int64, 0, n),
		mData:  make([][]byte, 0, n),
	}
	for u := range count {
		a.users = append(a.users, string(u))
	}
	slices.SortFunc(a.users, cmp.Compare) // Go compares bytes, as COLLATE "C" does
	for _, u := range a.users {
		a.counts = append(a.counts, count[herald.UserID(u)])
	}
	// The user's k-th message (from 1) of n in the batch gets offset
	// last-(n-k), where last is the user's last offset after the upsert.
	left := count
	for _, r := range batch {
		for _, m := range r.msgs {
			left[m.User]--
			a.mUser = append(a.mUser, string(m.User))
			a.mBack = append(a.mBack, left[m.User])
			a.mID = append(a.mID, m.ID)
			a.mTS = append(a.mTS, m.Time.UnixNano())
			a.mData = append(a.mData, m.Data)
		}
	}
	return a
}

// appendSQL allocates the batch's offsets and inserts its messages in one
// statement. The upsert takes each user's stream row lock, in the order of
// $1, and returns the users' new last offsets, from which the messages'
// offsets follow. A data-modifying WITH query always runs to completion, so
// the messages are inserted although the final SELECT does not read them.
// pg_current_xact_id names the transaction, so that a commit whose answer
// is lost can be looked up.
const appendSQL = `WITH s AS (
	INSERT INTO streams AS st (user_id, last_offset)
	SELECT * FROM unnest($1::text[], $2::bigint[])
	ON CONFLICT (user_id) DO UPDATE SET last_offset = st.last_offset + excluded.last_offset
	RETURNING user_id, last_offset
), m AS (
	INSERT INTO messages (user_id, "offset", id, ts, data)
	SELECT m.user_id, s.last_offset - m.back, m.id, m.ts, m.data
	FROM unnest($3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::bytea[]) AS m(user_id, back, id, ts, data)
	JOIN s USING (user_id)
)
SELECT user_id, last_offset, pg_current_xact_id()::text FROM s`

// writeAttempts is how often write tries a batch that failed on a lost
// connection or a lost race before it gives up.
const writeAttempts = 3

// write commits the Appends of batch in one transaction and, on
// success, sets their messages' offsets and epoch. It retries on a fresh
// connection when the server dropped the connection or the transaction
// lost a race, which roll the transaction back; a commit whose answer was
// lost is resolved instead (see resolve). The error is the one the callers
// get.
func (s *Store) write(batch []*request) error {
	// Not a caller's ctx: the batch mixes many callers, and a taken batch
	// is written whatever happens to any one of them.
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.writeTimeout)
	defer cancel()
	args := newBatchArgs(batch)
	var (
		last map[string]int64
		err  error
	)
	for attempt := 1; ; attempt++ {
		var xid string
		var commitSent bool
		last, xid, commitSent, err = s.tryWrite(ctx, args)
		if err != nil && commitSent {
			var committed bool
			committed, err = s.resolve(xid, err)
			if committed {
				err = nil
			}
		}
		if err == nil {
			break
		}
		if errors.Is(err, errOutcomeUnknown) {
			return unavailable("append", err)
		}
		kind := classify(err)
		switch kind {
		case kindConn:
			// Connections the server dropped sit idle in the pool until
			// used; drop them all rather than meet them one by one.
			s.pool.Reset()
		case kindRetry:
			s.log.Warn("postgres: a transaction lost a race; retrying", "op", "append", "err", err)
		}
		if kind == kindOther || attempt == writeAttempts || ctx.Err() != nil {
			if kind == kindConn || ctx.Err() != nil {
				if s.isClosed() {
					return ErrClosed
				}
				s.connLost("append", err)
				return unavailable("append", err)
			}
			return fmt.Errorf("postgres: append: %w", err)
		}
	}
	s.connOK()
	s.txns.Add(1)
	i := 0
	for _, r := range batch {
		for _, m := range r.msgs {
			m.Offset = uint64(last[args.mUser[i]] - args.mBack[i])
			m.Epoch = s.epoch
			i++
		}
	}
	return nil
}

// tryWrite runs one transaction of appendSQL: BEGIN and the statement in
// one round trip, COMMIT in a second. It returns each user's new last
// offset, the transaction id and whether COMMIT was sent (then an error
// leaves the outcome open).
func (s *Store) tryWrite(ctx context.Context, a *batchArgs) (last map[string]int64, xid string, commitSent bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, "", false, err
	}
	defer conn.Release()

	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(appendSQL, a.users, a.counts, a.mUser, a.mBack, a.mID, a.mTS, a.mData)
	br := conn.SendBatch(ctx, b)
	last = make(map[string]int64, len(a.users))
	_, err = br.Exec()
	if err == nil {
		var rows pgx.Rows
		rows, err = br.Query()
		if err == nil {
			var (
				user string
				off  int64
			)
			_, err = pgx.ForEachRow(rows, []any{&user, &off, &xid}, func() error {
				last[user] = off
				return nil
			})
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil && len(last) != len(a.users) {
		err = fmt.Errorf("the upsert of %d streams returned %d rows", len(a.users), len(last))
	}
	if err != nil {
		if !conn.Conn().IsClosed() {
			// Cheaper than the new connection the pool would make if the
			// connection went back in a failed transaction.
			_, _ = conn.Exec(ctx, "ROLLBACK")
		}
		return nil, "", false, err
	}
	_, err = conn.Exec(ctx, "COMMIT")
	if err == nil && s.cfg.commitErr != nil {
		err = s.cfg.commitErr()
	}
	if err != nil {
		// last is complete: if resolve finds the transaction committed,
		// these are the offsets the messages were stored at.
		return last, xid, true, err
	}
	return last, xid, true, nil
}

// resolve finds out whether transaction xid committed after its COMMIT
// failed with cerr: if the connection broke after the server had committed,
// the messages are stored and the Append must say so, lest its caller
// retry and store them twice. It asks pg_xact_status on other connections
// until the server answers or the write timeout passes. Only then, with the
// server unreachable all along, does the outcome stay unknown: the error
// wraps errOutcomeUnknown, and the messages may have been stored.
func (s *Store) resolve(xid string, cerr error) (committed bool, err error) {
	if xid == "" {
		return false, cerr
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.writeTimeout)
	defer cancel()
	wait := 10 * time.Millisecond
	for {
		var status *string
		err := s.pool.QueryRow(ctx, "SELECT pg_xact_status($1::xid8)", xid).Scan(&status)
		switch {
		case err == nil && status != nil && *status == "committed":
			s.log.Info("postgres: a commit's answer was lost, but it committed", "xid", xid, "err", cerr)
			return true, nil
		case err == nil && status != nil && *status == "aborted":
			return false, cerr
		case err == nil && status == nil:
			// Too old to know, which cannot happen seconds later; but
			// say so rather than guess.
			return false, fmt.Errorf("%w (transaction %s: status unknown): %w", errOutcomeUnknown, xid, cerr)
		case err != nil && classify(err) == kindConn:
			s.pool.Reset()
		}
		// "in progress" (the old backend is still finishing), or no answer.
		select {
		case <-ctx.Done():
			s.log.Error("postgres: a commit's outcome is unknown; its Appends fail but may have been stored",
				"xid", xid, "err", cerr, "hint", "SELECT pg_xact_status('"+xid+"') tells, once the server is back")
			return false, fmt.Errorf("%w (transaction %s): %w", errOutcomeUnknown, xid, cerr)
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// retried runs f until it succeeds, at most three times, retrying when the
// server dropped the connection (after a restart the pool holds connections
// that are dead without knowing it) or the transaction lost a race. Only
// for idempotent work: a lost connection does not tell whether f's
// statement ran.
func (s *Store) retried(ctx context.Context, op string, f func(ctx context.Context) error) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := f(ctx)
		if err == nil {
			s.connOK()
			return nil
		}
		kind := classify(err)
		switch {
		case kind == kindConn && ctx.Err() == nil:
			s.pool.Reset()
		case kind == kindRetry:
			s.log.Warn("postgres: a transaction lost a race; retrying", "op", op, "err", err)
		}
		if kind == kindOther || attempt == 3 || ctx.Err() != nil || s.isClosed() {
			return s.wrap(ctx, op, err)
		}
	}
}

// Since returns up to limit messages of user with Offset > since, in offset
// order.
func (s *Store) Since(ctx context.Context, user herald.UserID, since uint64, limit int) ([]herald.Message, error) {
	if limit <= 0 || limit > MaxLimit {
		limit = MaxLimit
	}
	if since >= 1<<63 || !validText(string(user)) {
		return nil, s.checkOpen() // beyond any offset, or a user that cannot have messages
	}
	var out []herald.Message
	err := s.retried(ctx, "since", func(ctx context.Context) error {
		out = out[:0]
		rows, err := s.pool.Query(ctx, `SELECT "offset", id, ts, data FROM messages
			WHERE user_id = $1 AND "offset" > $2 ORDER BY "offset" LIMIT $3`, string(user), int64(since), limit)
		if err != nil {
			return err
		}
		var (
			off, ts int64
			id      string
			data    []byte
		)
		_, err = pgx.ForEachRow(rows, []any{&off, &id, &ts, &data}, func() error {
			out = append(out, herald.Message{ID: id, User: user, Offset: uint64(off), Epoch: s.epoch, Time: time.Unix(0, ts), Data: data})
			data = nil // the next row gets a buffer of its own
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Inbox lists the user's retained messages with their flags, newest first.
func (s *Store) Inbox(ctx context.Context, q herald.InboxQuery) ([]herald.InboxItem, error) {
	mask, want, ok := q.Status.Filter()
	if !ok {
		return nil, herald.Errorf(herald.EInvalidRequest, "unknown inbox status %d", q.Status)
	}
	if !validText(string(q.User)) {
		return nil, s.checkOpen()
	}
	before := int64(1<<63 - 1)
	if q.Before != 0 && q.Before < 1<<63 {
		before = int64(q.Before)
	}
	var out []herald.InboxItem
	err := s.retried(ctx, "inbox", func(ctx context.Context) error {
		out = out[:0]
		rows, err := s.pool.Query(ctx, `SELECT "offset", id, ts, flags, data FROM messages
			WHERE user_id = $1 AND "offset" < $2 AND flags & $3 = $4
			ORDER BY "offset" DESC LIMIT $5`, string(q.User), before, int16(mask), int16(want), q.PageSize())
		if err != nil {
			return err
		}
		var (
			off, ts int64
			flags   int16
			id      string
			data    []byte
		)
		_, err = pgx.ForEachRow(rows, []any{&off, &id, &ts, &flags, &data}, func() error {
			m := herald.Message{ID: id, User: q.User, Offset: uint64(off), Epoch: s.epoch, Time: time.Unix(0, ts), Data: data}
			out = append(out, herald.InboxFlags(flags).Item(m))
			data = nil
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Mark sets mark on the user's messages with the given ids, or on all of
// them, and returns the ids whose flags changed. It is one statement. A
// retry after a lost connection may find the flags already set by the lost
// attempt and then reports fewer changed ids; the flags are right either
// way, since marking twice is marking once.
func (s *Store) Mark(ctx context.Context, user herald.UserID, mark herald.Mark, ids []string, all bool) ([]string, error) {
	bits := int16(mark.Flags())
	if bits == 0 {
		return nil, herald.Errorf(herald.EInvalidRequest, "unknown mark %d", mark)
	}
	if !all {
		valid := make([]string, 0, len(ids))
		for _, id := range ids {
			if validText(id) { // others cannot be stored, so match nothing
				valid = append(valid, id)
			}
		}
		ids = herald.DedupeIDs(valid)
		if len(ids) == 0 {
			return nil, s.checkOpen()
		}
	}
	if !validText(string(user)) {
		return nil, s.checkOpen()
	}
	var changed []string
	err := s.retried(ctx, "mark", func(ctx context.Context) error {
		var rows pgx.Rows
		var err error
		if all {
			rows, err = s.pool.Query(ctx, `UPDATE messages SET flags = flags | $1
				WHERE user_id = $2 AND flags | $1 <> flags RETURNING id`, bits, string(user))
		} else {
			rows, err = s.pool.Query(ctx, `UPDATE messages SET flags = flags | $1
				WHERE id = ANY($3) AND user_id = $2 AND flags | $1 <> flags RETURNING id`, bits, string(user), ids)
		}
		if err != nil {
			return err
		}
		changed, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, err
	}
	return herald.DedupeIDs(changed), nil
}

// countsSQL counts unread (flag 2 clear) and unseen (flag 1 clear) over the
// user's entries that are not archived (flag 4 clear); the bits are
// herald.InboxFlags, which never change.
const countsSQL = `SELECT count(*) FILTER (WHERE flags & 2 = 0), count(*) FILTER (WHERE flags & 1 = 0)
	FROM messages WHERE user_id = $1 AND flags & 4 = 0`

// Counts returns the user's unread and unseen counts over retained messages
// that are not archived.
func (s *Store) Counts(ctx context.Context, user herald.UserID) (herald.InboxCounts, error) {
	var c herald.InboxCounts
	if !validText(string(user)) {
		return c, s.checkOpen()
	}
	err := s.retried(ctx, "counts", func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, countsSQL, string(user)).Scan(&c.Unread, &c.Unseen)
	})
	return c, err
}
