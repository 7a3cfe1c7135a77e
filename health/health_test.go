package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/memory"
	"github.com/herald-gw/herald/storetest"
)

// clock is a fake clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// faulty is the real memory store with fault injection: while fault is
// set, every call fails with it instead of reaching the store. Each call
// also moves the clock by took, to give the Observer a duration.
type faulty struct {
	herald.Store
	clock *clock
	took  time.Duration

	mu    sync.Mutex
	fault error
}

func newFaulty(c *clock) *faulty { return &faulty{Store: memory.New(), clock: c} }

func (f *faulty) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault = err
}

// badUser is a user whose reads always fail, like a stream on a damaged
// page.
const badUser = "bad"

var errBadUser = herald.Errorf(herald.EInternal, "stream of %q unreadable", badUser)

func (f *faulty) err(user ...herald.UserID) error {
	f.clock.Advance(f.took)
	if len(user) == 1 && user[0] == badUser {
		return errBadUser
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fault
}

func (f *faulty) Append(ctx context.Context, msgs []*herald.Message) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Store.Append(ctx, msgs)
}

func (f *faulty) Since(ctx context.Context, u herald.UserID, since uint64, limit int) ([]herald.Message, error) {
	if err := f.err(u); err != nil {
		return nil, err
	}
	return f.Store.Since(ctx, u, since, limit)
}

func (f *faulty) Bounds(ctx context.Context, u herald.UserID) (uint64, uint64, error) {
	if err := f.err(u); err != nil {
		return 0, 0, err
	}
	return f.Store.Bounds(ctx, u)
}

func (f *faulty) Trim(ctx context.Context, keep int, before time.Time) (int, error) {
	if err := f.err(); err != nil {
		return 0, err
	}
	return f.Store.Trim(ctx, keep, before)
}

func (f *faulty) Inbox(ctx context.Context, q herald.InboxQuery) ([]herald.InboxItem, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Store.Inbox(ctx, q)
}

func (f *faulty) Mark(ctx context.Context, u herald.UserID, m herald.Mark, ids []string, all bool) ([]string, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Store.Mark(ctx, u, m, ids, all)
}

func (f *faulty) Counts(ctx context.Context, u herald.UserID) (herald.InboxCounts, error) {
	if err := f.err(u); err != nil {
		return herald.InboxCounts{}, err
	}
	return f.Store.Counts(ctx, u)
}

// records is a slog.Handler that keeps what is logged.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}

// take returns what was logged since the last take, one line each:
// "LEVEL message key=value ...".
func (r *records) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		line := rec.Level.String() + " " + rec.Message
		rec.Attrs(func(a slog.Attr) bool {
			line += " " + a.String()
			return true
		})
		out = append(out, line)
	}
	r.recs = nil
	return out
}

// fixture is a watched faulty store with a fake clock, a log and the
// observations made.
type fixture struct {
	clock *clock
	inner *faulty
	log   *records
	s     *Store

	mu  sync.Mutex
	obs []Observation
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{clock: newClock(), log: &records{}}
	f.inner = newFaulty(f.clock)
	f.s = New(f.inner, Options{
		Logger: slog.New(f.log),
		Now:    f.clock.Now,
		Observer: func(o Observation) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.obs = append(f.obs, o)
		},
	})
	t.Cleanup(func() { f.s.Close() })
	return f
}

func (f *fixture) observations() []Observation {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.obs
	f.obs = nil
	return out
}

// call makes one call that reaches the store, failing with err (nil: it
// succeeds).
func (f *fixture) call(err error) {
	f.inner.set(err)
	_, _ = f.s.Counts(context.Background(), "u")
	f.inner.set(nil)
}

// TestBehaviour runs the Store suite through the decorator over the real
// memory store: it must pass everything through unchanged. The suite
// provokes the caller's errors (cancelled contexts, invalid messages,
// unknown marks and statuses) and calls after Close: none may count
// against the store.
func TestBehaviour(t *testing.T) {
	storetest.Run(t, func(t *testing.T) herald.Store {
		var mu sync.Mutex
		var failed []Observation
		s := New(memory.New(), Options{Observer: func(o Observation) {
			if o.Failed {
				mu.Lock()
				failed = append(failed, o)
				mu.Unlock()
			}
		}})
		t.Cleanup(func() {
			s.Close()
			for _, o := range failed {
				t.Errorf("%s counted against the store: %v", o.Op, o.Err)
			}
		})
		return s
	})
}

func TestClassification(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	ctx := context.Background()
	tests := []struct {
		name   string
		fault  error // injected; nil: the real store answers
		call   func(s *Store) error
		failed bool
	}{
		{"success", nil, func(s *Store) error { _, err := s.Counts(ctx, "u"); return err }, false},
		{"plain error", errors.New("disk I/O error"), func(s *Store) error { _, err := s.Since(ctx, "u", 0, 0); return err }, true},
		{"wrapped plain error", fmt.Errorf("sqlite: since: %w", errors.New("database disk image is malformed")),
			func(s *Store) error { _, err := s.Since(ctx, "u", 0, 0); return err }, true},
		{"internal", herald.Errorf(herald.EInternal, "x"), func(s *Store) error { _, _, err := s.Bounds(ctx, "u"); return err }, true},
		{"unavailable", herald.Errorf(herald.EUnavailable, "x"), func(s *Store) error { _, err := s.Trim(ctx, 1, time.Time{}); return err }, true},
		{"deadline of the store's own", context.DeadlineExceeded, func(s *Store) error { _, err := s.Inbox(ctx, herald.InboxQuery{User: "u"}); return err }, true},
		{"not found", herald.Errorf(herald.ENotFound, "x"), func(s *Store) error { _, err := s.Inbox(ctx, herald.InboxQuery{User: "u"}); return err }, false},
		{"invalid request", herald.Errorf(herald.EInvalidRequest, "x"), func(s *Store) error { _, err := s.Counts(ctx, "u"); return err }, false},
		{"wrapped client error", fmt.Errorf("api: %w", herald.Errorf(herald.EForbidden, "x")), func(s *Store) error { _, err := s.Counts(ctx, "u"); return err }, false},
		// The real store's own answers to the caller's mistakes.
		{"unknown mark", nil, func(s *Store) error { _, err := s.Mark(ctx, "u", herald.Mark(99), []string{"x"}, false); return err }, false},
		{"unknown inbox status", nil, func(s *Store) error {
			_, err := s.Inbox(ctx, herald.InboxQuery{User: "u", Status: herald.InboxStatus(99)})
			return err
		}, false},
		{"nil message", nil, func(s *Store) error { return s.Append(ctx, []*herald.Message{nil}) }, false},
		{"message without user", nil, func(s *Store) error { return s.Append(ctx, []*herald.Message{{Data: []byte("x")}}) }, false},
		{"caller cancelled", nil, func(s *Store) error { _, err := s.Since(cancelled, "u", 0, 0); return err }, false},
		{"caller cancelled, store says so wrapped", fmt.Errorf("sqlite: %w", context.Canceled),
			func(s *Store) error { _, err := s.Counts(cancelled, "u"); return err }, false},
		{"store error while the caller cancelled", errors.New("disk I/O error"),
			func(s *Store) error { _, err := s.Counts(cancelled, "u"); return err }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.inner.set(tc.fault)
			err := tc.call(f.s)
			if tc.fault != nil && !errors.Is(err, tc.fault) {
				t.Fatalf("call returned %v, want the injected %v", err, tc.fault)
			}
			if tc.name != "success" && err == nil {
				t.Fatal("call succeeded")
			}
			if ready := f.s.Ready(); (ready != nil) != tc.failed {
				t.Errorf("Ready() = %v, want failing %v", ready, tc.failed)
			}
			obs := f.observations()
			if len(obs) != 1 || obs[0].Failed != tc.failed || obs[0].Err != err {
				t.Errorf("observations %+v, want one with Failed %v and the call's error", obs, tc.failed)
			}
			if logged := f.log.take(); (len(logged) != 0) != tc.failed {
				t.Errorf("logged %q", logged)
			}
		})
	}
}

func TestReady(t *testing.T) {
	f := newFixture(t)
	if err := f.s.Ready(); err != nil {
		t.Fatalf("new store: %v", err)
	}
	since := f.clock.Now()
	boom := errors.New("database disk image is malformed")
	f.call(boom)
	f.clock.Advance(time.Second)
	f.call(boom)

	err := f.s.Ready()
	if err == nil {
		t.Fatal("Ready() = nil after store errors")
	}
	if herald.ErrorCodeOf(err) != herald.EUnavailable || !errors.Is(err, boom) {
		t.Errorf("Ready() = %v: want EUnavailable wrapping the last error", err)
	}
	msg := herald.ErrorMessageOf(err)
	for _, want := range []string{since.Format(time.RFC3339), "2 failed calls", OpCounts} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not mention %q", msg, want)
		}
	}
	if strings.Contains(msg, boom.Error()) {
		t.Errorf("message %q, which clients may see, holds the store's error", msg)
	}

	f.call(nil)
	if err := f.s.Ready(); err != nil {
		t.Fatalf("after a success: %v", err)
	}
	// A new spell starts its own count.
	f.clock.Advance(time.Minute)
	f.call(boom)
	if msg := herald.ErrorMessageOf(f.s.Ready()); !strings.Contains(msg, "1 failed calls") || !strings.Contains(msg, f.clock.Now().Format(time.RFC3339)) {
		t.Errorf("second spell: %q", msg)
	}
}

// TestLogging plays an incident on the fake clock and checks every line.
func TestLogging(t *testing.T) {
	f := newFixture(t)
	boom := errors.New("disk I/O error")
	other := errors.New("database is locked")
	steps := []struct {
		name    string
		advance time.Duration
		do      func()
		want    []string // log lines, as records.take renders them
	}{
		{"first error is logged", 0, func() { f.call(boom) },
			[]string{"ERROR message store failing op=counts err=disk I/O error"}},
		{"the burst is counted, not logged", time.Second, func() {
			for range 10 {
				f.clock.Advance(time.Second)
				f.call(boom)
			}
		}, nil},
		{"a summary a minute later", time.Minute, func() { f.call(other) },
			[]string{"ERROR message store still failing errors=11 in=1m11s since=2025-03-01 12:00:00 +0000 UTC op=counts err=database is locked"}},
		{"no second summary within the minute", 30 * time.Second, func() { f.call(boom) }, nil},
		{"recovery is not logged at once", time.Second, func() { f.call(nil) }, nil},
		{"a relapse within the interval continues the incident", time.Second, func() { f.call(boom) }, nil},
		{"healthy again", time.Second, func() { f.call(nil) }, nil},
		{"not yet quiet for a minute", 59 * time.Second, func() { f.call(nil) }, nil},
		{"quiet for a minute: recovered, once", time.Second, func() { f.call(nil); f.call(nil); f.s.Ready() },
			[]string{"INFO message store recovered after 14 errors errors=14 since=2025-03-01 12:00:00 +0000 UTC healthy_since=2025-03-01 12:01:44 +0000 UTC"}},
		{"a new incident is logged again", time.Hour, func() { f.call(boom) },
			[]string{"ERROR message store failing op=counts err=disk I/O error"}},
		{"Ready alone logs the recovery", time.Second, func() {
			f.call(nil)
			f.clock.Advance(time.Minute)
			f.s.Ready()
		}, []string{"INFO message store recovered after 1 errors errors=1 since=2025-03-01 13:02:44 +0000 UTC healthy_since=2025-03-01 13:02:45 +0000 UTC"}},
	}
	for _, st := range steps {
		f.clock.Advance(st.advance)
		st.do()
		got := f.log.take()
		if strings.Join(got, "\n") != strings.Join(st.want, "\n") {
			t.Errorf("%s: logged\n  %s\nwant\n  %s", st.name, strings.Join(got, "\n  "), strings.Join(st.want, "\n  "))
		}
	}
}

// TestFlapping is a store that fails every other call, as one with a few
// damaged pages does: readiness follows the calls, the log does not.
func TestFlapping(t *testing.T) {
	f := newFixture(t)
	boom := errors.New("database disk image is malformed")
	for i := range 1000 {
		f.clock.Advance(10 * time.Millisecond)
		if i%2 == 0 {
			f.call(boom)
			if f.s.Ready() == nil {
				t.Fatalf("call %d failed, Ready() = nil", i)
			}
		} else {
			f.call(nil)
			if err := f.s.Ready(); err != nil {
				t.Fatalf("call %d succeeded, Ready() = %v", i, err)
			}
		}
	}
	// 10 s of flapping: the first error, no more.
	if got := f.log.take(); len(got) != 1 || !strings.HasPrefix(got[0], "ERROR message store failing") {
		t.Fatalf("logged %q", got)
	}
	f.clock.Advance(time.Minute)
	f.s.Ready()
	if got := f.log.take(); len(got) != 1 || !strings.Contains(got[0], "recovered after 500 errors") {
		t.Fatalf("logged %q", got)
	}
}

func TestObserver(t *testing.T) {
	f := newFixture(t)
	f.inner.took = 5 * time.Millisecond
	ctx := context.Background()
	boom := errors.New("boom")
	calls := []struct {
		op   string
		call func()
	}{
		{OpAppend, func() { f.s.Append(ctx, []*herald.Message{storetest.Msg("u", "x")}) }},
		{OpSince, func() { f.s.Since(ctx, "u", 0, 0) }},
		{OpBounds, func() { f.s.Bounds(ctx, "u") }},
		{OpTrim, func() { f.s.Trim(ctx, 1, time.Time{}) }},
		{OpInbox, func() { f.s.Inbox(ctx, herald.InboxQuery{User: "u"}) }},
		{OpMark, func() { f.s.Mark(ctx, "u", herald.MarkRead, nil, true) }},
		{OpCounts, func() { f.s.Counts(ctx, "u") }},
	}
	for _, fault := range []error{nil, boom} {
		f.inner.set(fault)
		for _, c := range calls {
			c.call()
			obs := f.observations()
			want := Observation{Op: c.op, Duration: 5 * time.Millisecond, Err: fault, Failed: fault != nil}
			if len(obs) != 1 || obs[0] != want {
				t.Errorf("%s with fault %v: observed %+v, want %+v", c.op, fault, obs, want)
			}
		}
	}
	f.inner.set(nil)
	f.inner.took = 0
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	if obs := f.observations(); len(obs) != 1 || obs[0].Op != OpClose || obs[0].Err != nil || obs[0].Failed {
		t.Errorf("Close observed %+v", obs)
	}
}

// TestClose: a closed store refuses calls on purpose; that is shutdown,
// not an incident.
func TestClose(t *testing.T) {
	f := newFixture(t)
	boom := errors.New("disk I/O error")
	f.call(boom)
	f.clock.Advance(time.Second)
	f.call(boom) // counted, not yet logged
	f.log.take()
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := f.log.take(); len(got) != 1 || !strings.Contains(got[0], "closed with errors not yet reported errors=1") {
		t.Errorf("Close logged %q", got)
	}
	f.observations()
	if _, err := f.s.Since(context.Background(), "u", 0, 0); herald.ErrorCodeOf(err) != herald.EUnavailable {
		t.Fatalf("Since after Close: %v", err)
	}
	if obs := f.observations(); len(obs) != 1 || obs[0].Failed {
		t.Errorf("call after Close observed %+v", obs)
	}
	if got := f.log.take(); len(got) != 0 {
		t.Errorf("call after Close logged %q", got)
	}
	if err := f.s.Ready(); herald.ErrorCodeOf(err) != herald.EUnavailable || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Ready after Close: %v", err)
	}
}

// TestConcurrent hammers the state from many goroutines (for -race) and
// checks that the outcome is the last one.
func TestConcurrent(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			ctx := context.Background()
			for i := range 300 {
				user := herald.UserID("u")
				if (g+i)%3 == 0 {
					user = badUser
				}
				if _, err := f.s.Counts(ctx, user); (err != nil) != (user == badUser) {
					t.Errorf("Counts(%q): %v", user, err)
				}
				if i%50 == 0 {
					_ = f.s.Ready()
					f.clock.Advance(time.Second)
				}
			}
		})
	}
	wg.Wait()
	f.call(nil)
	if err := f.s.Ready(); err != nil {
		t.Fatalf("after a final success: %v", err)
	}
}

// selfChecking is a store with a check of its own, as PostgreSQL's ping.
type selfChecking struct {
	*faulty
	mu     sync.Mutex
	down   error
	probes int
}

func (s *selfChecking) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.probes++
	return s.down
}

func (s *selfChecking) setDown(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = err
}

// Readiness follows a store that can check itself without any call: an
// outage shows at the next probe, and so does the recovery — a node that
// its load balancer took out (so that no traffic comes) gets back in.
func TestReadyProbesTheStore(t *testing.T) {
	clk := newClock()
	inner := &selfChecking{faulty: newFaulty(clk)}
	s := New(inner, Options{Now: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	if err := s.Ready(); err != nil || inner.probes != 1 {
		t.Fatalf("first Ready: %v after %d probes", err, inner.probes)
	}
	down := errors.New("dial tcp 127.0.0.1:5432: connection refused")
	inner.setDown(down)
	// Within ProbeEvery the last probe's answer stands: a busy /readyz
	// does not ping the database on every call.
	if err := s.Ready(); err != nil || inner.probes != 1 {
		t.Fatalf("Ready within ProbeEvery: %v after %d probes", err, inner.probes)
	}
	clk.Advance(ProbeEvery)
	if err := s.Ready(); !errors.Is(err, down) || herald.ErrorCodeOf(err) != herald.EUnavailable {
		t.Fatalf("Ready with the store down and no traffic = %v, want unavailable wrapping %v", err, down)
	}
	inner.setDown(nil)
	if err := s.Ready(); err == nil {
		t.Fatal("recovered before the next probe was due")
	}
	clk.Advance(ProbeEvery)
	if err := s.Ready(); err != nil {
		t.Fatalf("Ready with the store back and no traffic = %v, want nil", err)
	}
}
