// Package health watches a herald.Store for readiness. Store wraps another
// herald.Store, passes every call through unchanged, and keeps what the
// outcomes say about the store: Ready reports an error while the store is
// failing, so /readyz can take the node out of a load balancer, and the log
// gets one line when trouble starts, a summary at most once per interval
// while it lasts, and one line when it is over, however many requests fail
// meanwhile.
//
// What counts as failing: an error that is not the caller's fault. A
// *herald.Error with a client code (invalid_request, not_found, ...), an
// Append of invalid messages, and the caller's own context ending say
// nothing about the store and change nothing. Every other error marks the
// store failing; the next success marks it healthy again. So readiness
// follows the calls: a store that fails only some of them (a few damaged
// pages) goes back and forth, while the log, which must not, counts.
//
// Not seen: a store that hangs. Its callers' deadlines expire, and a
// caller's deadline is the caller's business (a slow client, a short
// timeout), so those errors do not count. The Observer's durations show it.
//
// It imports no metrics library: Options.Observer sees every call, its
// duration and its classification, for whoever wants to count them.
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-gw/herald"
)

// DefaultLogInterval is the default Options.LogInterval.
const DefaultLogInterval = time.Minute

// Operation names, as Observation.Op reports them: the Store method in
// lower case.
const (
	OpAppend = "append"
	OpSince  = "since"
	OpBounds = "bounds"
	OpTrim   = "trim"
	OpInbox  = "inbox"
	OpMark   = "mark"
	OpCounts = "counts"
	OpClose  = "close"
)

// Ops lists the operation names an Observation may carry for a store
// call, for metrics that create their series up front. (OpClose is left
// out: it happens once.)
func Ops() []string {
	return []string{OpAppend, OpSince, OpBounds, OpTrim, OpInbox, OpMark, OpCounts}
}

// Observation is one call to the wrapped store.
type Observation struct {
	Op       string        // one of the Op constants
	Duration time.Duration // as the Options.Now clock measured it
	Err      error         // what the call returned
	// Failed is true when Err counts against the store (see the package
	// doc); false for success, for the caller's own errors and for errors
	// after Close.
	Failed bool
}

// Options configures New. The zero value is usable.
type Options struct {
	// Logger receives the store's failure and recovery lines; nil means
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests inject a fake one.
	Now func() time.Time
	// LogInterval bounds the logging of one incident: while the store
	// fails, at most one summary line per interval counts the errors
	// since the last line; and an incident is over, and "recovered" is
	// logged, once the store has not failed for a whole interval, so a
	// store that fails every other request logs a few lines a minute, not
	// one per request. Readiness does not wait for it. <= 0 means
	// DefaultLogInterval.
	LogInterval time.Duration
	// Observer, if set, is called after every call to the wrapped store,
	// on the caller's goroutine, with no lock held: a hook for latency
	// and error metrics. It must be quick and safe for concurrent use.
	Observer func(Observation)
}

// Store is a herald.Store that passes every call to another one and watches
// the outcomes. It is safe for concurrent use.
type Store struct {
	inner    herald.Store
	log      *slog.Logger
	now      func() time.Time
	interval time.Duration
	observe  func(Observation)

	// watched is true while the store is failing or an incident is still
	// open in the log: only then does a success need the lock. A healthy
	// store's calls cost one atomic load.
	watched atomic.Bool

	mu     sync.Mutex
	closed bool // Close was called: errors since are expected, not failures

	// The probe: a store that can check itself (a database ping) is asked
	// by Ready, at most once per ProbeEvery, so that readiness follows the
	// store even when no call comes — a node out of its load balancer gets
	// none, and would otherwise stay out after the store is back.
	probe     func() error // nil: the store has no check of its own
	lastProbe time.Time
	probing   sync.Mutex // one probe at a time; others read the state

	// Readiness.
	failing   bool
	failSince time.Time // when the current failing spell began
	failErrs  int       // errors in the current failing spell
	lastErr   error     // the last failure, and its operation
	lastOp    string

	// The incident as the log tells it.
	incident      bool      // "failing" was logged, "recovered" not yet
	incidentStart time.Time // when the incident's first error came
	incidentErrs  int       // errors in the incident
	unlogged      int       // errors since the last line
	lastLine      time.Time // when the last failing or summary line was logged
	healthySince  time.Time // when the store last went from failing to healthy
}

var _ herald.Store = (*Store)(nil)

// New returns a Store that watches inner.
func New(inner herald.Store, o Options) *Store {
	s := &Store{inner: inner, log: o.Logger, now: o.Now, interval: o.LogInterval, observe: o.Observer}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.interval <= 0 {
		s.interval = DefaultLogInterval
	}
	if p, ok := inner.(interface{ Ready() error }); ok {
		s.probe = p.Ready
	}
	return s
}

// ProbeEvery is how often Ready asks a store that can check itself (one
// with a Ready method, such as PostgreSQL's ping) whether it works.
const ProbeEvery = time.Second

// runProbe asks the store to check itself when the last probe is older
// than ProbeEvery, and records the outcome like a call's: a failure marks
// the store failing (an outage seen with no traffic), a success healthy
// (a recovery seen with no traffic).
func (s *Store) runProbe() {
	if s.probe == nil || !s.probing.TryLock() {
		return
	}
	defer s.probing.Unlock()
	now := s.now()
	s.mu.Lock()
	due := !s.closed && now.Sub(s.lastProbe) >= ProbeEvery
	if due {
		s.lastProbe = now
	}
	s.mu.Unlock()
	if !due {
		return
	}
	if err := s.probe(); err != nil {
		s.failure("ready", err)
	} else {
		s.success()
	}
}

// Unwrap returns the watched store.
func (s *Store) Unwrap() herald.Store { return s.inner }

// Ready returns nil while the store is healthy. While it is failing it
// returns an EUnavailable *herald.Error whose message says since when and
// how many calls failed, and which wraps the last error (kept out of the
// message, which may reach HTTP clients; it is in Error() for logs). After
// Close it returns an EUnavailable error too.
//
// Ready also closes an incident whose quiet interval has passed (see
// Options.LogInterval), so that a probe polling it logs the recovery even
// when no other call comes. When the store can check itself (it has a
// Ready method: PostgreSQL pings), Ready asks it first, at most once per
// ProbeEvery, so that an outage and the recovery show without traffic.
func (s *Store) Ready() error {
	s.runProbe()
	now := s.now()
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return herald.Errorf(herald.EUnavailable, "message store is closed")
	case s.failing:
		err := &herald.Error{
			Code: herald.EUnavailable,
			Message: fmt.Sprintf("message store failing since %s (%d failed calls, last: %s)",
				s.failSince.UTC().Format(time.RFC3339), s.failErrs, s.lastOp),
			Err: s.lastErr,
		}
		s.mu.Unlock()
		return err
	}
	line := s.maybeRecovered(now)
	s.mu.Unlock()
	s.emit(line)
	return nil
}

// Failed reports whether err, returned by a call made with ctx, counts
// against the store: nil, the caller's own context ending and client errors
// do not. Observers get the answer in Observation.Failed; it is exported for
// callers that classify errors of their own the same way.
func Failed(ctx context.Context, err error) bool {
	if err == nil {
		return false
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return false // the caller gave up; the store may be fine
	}
	var he *herald.Error
	if errors.As(err, &he) && clientCode(he.Code) {
		return false
	}
	return true
}

// clientCode reports whether code blames the request, not the server.
func clientCode(code herald.ErrorCode) bool {
	switch code {
	case herald.EInternal, herald.EUnavailable, "":
		return false
	}
	return true
}

// start returns the time a call begins, if anything will need it.
func (s *Store) start() time.Time {
	if s.observe == nil {
		return time.Time{}
	}
	return s.now()
}

// done records the outcome of one call. client marks errors the caller
// caused that Failed cannot see (invalid messages, which the stores report
// as plain errors).
func (s *Store) done(ctx context.Context, op string, start time.Time, err error, client bool) {
	failed := !client && Failed(ctx, err)
	switch {
	case failed:
		failed = s.failure(op, err)
	case err == nil && s.watched.Load():
		s.success()
	}
	if s.observe != nil {
		s.observe(Observation{Op: op, Duration: s.now().Sub(start), Err: err, Failed: failed})
	}
}

// logLine is a log record decided under the lock and written after it.
type logLine struct {
	level slog.Level
	msg   string
	attrs []slog.Attr
}

func (s *Store) emit(l *logLine) {
	if l != nil {
		s.log.LogAttrs(context.Background(), l.level, l.msg, l.attrs...)
	}
}

// failure records a failed call, and reports whether it counted: after
// Close the store refuses calls on purpose.
func (s *Store) failure(op string, err error) bool {
	now := s.now()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	if !s.failing {
		s.failing, s.failSince, s.failErrs = true, now, 0
	}
	s.failErrs++
	s.lastErr, s.lastOp = err, op
	s.watched.Store(true)

	var line *logLine
	switch {
	case !s.incident:
		s.incident, s.incidentStart, s.incidentErrs, s.unlogged, s.lastLine = true, now, 1, 0, now
		line = &logLine{slog.LevelError, "message store failing", []slog.Attr{
			slog.String("op", op), slog.Any("err", err)}}
	default:
		s.incidentErrs++
		s.unlogged++
		if now.Sub(s.lastLine) >= s.interval {
			line = &logLine{slog.LevelError, "message store still failing", []slog.Attr{
				slog.Int("errors", s.unlogged), slog.Duration("in", now.Sub(s.lastLine)),
				slog.Time("since", s.incidentStart), slog.String("op", op), slog.Any("err", err)}}
			s.unlogged, s.lastLine = 0, now
		}
	}
	s.mu.Unlock()
	s.emit(line)
	return true
}

func (s *Store) success() {
	now := s.now()
	s.mu.Lock()
	if s.failing {
		s.failing, s.healthySince = false, now
	}
	line := s.maybeRecovered(now)
	s.mu.Unlock()
	s.emit(line)
}

// maybeRecovered closes the incident if the store has been healthy for a
// whole interval, and returns the line to log. s.mu is held.
func (s *Store) maybeRecovered(now time.Time) *logLine {
	if !s.incident || s.failing || now.Sub(s.healthySince) < s.interval {
		return nil
	}
	s.incident = false
	s.watched.Store(false)
	return &logLine{slog.LevelInfo, fmt.Sprintf("message store recovered after %d errors", s.incidentErrs), []slog.Attr{
		slog.Int("errors", s.incidentErrs), slog.Time("since", s.incidentStart),
		slog.Time("healthy_since", s.healthySince)}}
}

// Append passes to the wrapped store. An Append of invalid messages (see
// herald.CheckMessages) is the caller's error, not the store's.
func (s *Store) Append(ctx context.Context, msgs []*herald.Message) error {
	t := s.start()
	err := s.inner.Append(ctx, msgs)
	s.done(ctx, OpAppend, t, err, err != nil && herald.CheckMessages(msgs) != nil)
	return err
}

// Since passes to the wrapped store.
func (s *Store) Since(ctx context.Context, user herald.UserID, since uint64, limit int) ([]herald.Message, error) {
	t := s.start()
	msgs, err := s.inner.Since(ctx, user, since, limit)
	s.done(ctx, OpSince, t, err, false)
	return msgs, err
}

// Bounds passes to the wrapped store.
func (s *Store) Bounds(ctx context.Context, user herald.UserID) (first, last uint64, err error) {
	t := s.start()
	first, last, err = s.inner.Bounds(ctx, user)
	s.done(ctx, OpBounds, t, err, false)
	return first, last, err
}

// Trim passes to the wrapped store.
func (s *Store) Trim(ctx context.Context, keep int, before time.Time) (int, error) {
	t := s.start()
	n, err := s.inner.Trim(ctx, keep, before)
	s.done(ctx, OpTrim, t, err, false)
	return n, err
}

// Inbox passes to the wrapped store.
func (s *Store) Inbox(ctx context.Context, q herald.InboxQuery) ([]herald.InboxItem, error) {
	t := s.start()
	items, err := s.inner.Inbox(ctx, q)
	s.done(ctx, OpInbox, t, err, false)
	return items, err
}

// Mark passes to the wrapped store.
func (s *Store) Mark(ctx context.Context, user herald.UserID, mark herald.Mark, ids []string, all bool) ([]string, error) {
	t := s.start()
	changed, err := s.inner.Mark(ctx, user, mark, ids, all)
	s.done(ctx, OpMark, t, err, false)
	return changed, err
}

// Counts passes to the wrapped store.
func (s *Store) Counts(ctx context.Context, user herald.UserID) (herald.InboxCounts, error) {
	t := s.start()
	c, err := s.inner.Counts(ctx, user)
	s.done(ctx, OpCounts, t, err, false)
	return c, err
}

// Epoch passes to the wrapped store.
func (s *Store) Epoch() string { return s.inner.Epoch() }

// Close closes the wrapped store. From then on errors are what a closed
// store returns on purpose and no longer count, and Ready reports the store
// closed. An incident still open is summed up in the log.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	var line *logLine
	if s.incident && s.unlogged > 0 {
		line = &logLine{slog.LevelError, "message store closed with errors not yet reported", []slog.Attr{
			slog.Int("errors", s.unlogged), slog.Time("since", s.incidentStart),
			slog.Bool("failing", s.failing), slog.Any("err", s.lastErr)}}
		s.unlogged = 0
	}
	s.mu.Unlock()
	s.emit(line)

	t := s.start()
	err := s.inner.Close()
	if s.observe != nil {
		s.observe(Observation{Op: OpClose, Duration: s.now().Sub(t), Err: err, Failed: err != nil})
	}
	return err
}
