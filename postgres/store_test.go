package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/servicetest"
	"github.com/herald-gw/herald/storetest"
)

// testConns is the pool size of the tests' Stores: small, because the
// suite runs many Stores at once against one server (and other packages'
// tests share it).
const testConns = 4

// logBuffer collects a Store's log lines, for tests that check what it
// said, and passes them to t.Log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) count(s string) int { return strings.Count(b.String(), s) }

func newLog(t testing.TB) (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	t.Cleanup(func() {
		if s := b.String(); s != "" && t.Failed() {
			t.Logf("store log:\n%s", s)
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func openTest(t testing.TB, dsn string, opts ...Option) *Store {
	t.Helper()
	log, _ := newLog(t)
	s, err := Open(context.Background(), dsn, append([]Option{WithMaxConns(testConns), WithLogger(log)}, opts...)...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// withParam returns dsn with the run-time parameter key set to value.
func withParam(t testing.TB, dsn, key, value string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// admin connects to dsn's schema for a test's own statements.
func admin(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), withParam(t, dsn, "application_name", "herald_test_admin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// poll calls cond every few milliseconds until it returns true, and fails
// the test if that takes more than 30 s.
func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBehaviour(t *testing.T) {
	storetest.Run(t, func(t *testing.T) herald.Store {
		return openTest(t, servicetest.Postgres(t))
	})
}

// TestBehaviourMaxBatchOne runs the suite with one Append per transaction,
// several in flight at once: group commit must not be what keeps offsets
// dense; the database's row lock does.
func TestBehaviourMaxBatchOne(t *testing.T) {
	storetest.Run(t, func(t *testing.T) herald.Store {
		return openTest(t, servicetest.Postgres(t), WithMaxBatch(1))
	})
}

// TestConcurrentNodes is several Herald nodes on one schema: three Stores
// (three pools, as three processes would have) append to the same user at
// once, in Appends of varying size, interleaved with users of their own and
// one shared by all. Every offset of every stream is given exactly once,
// with no gap, and each caller's messages got increasing offsets.
func TestConcurrentNodes(t *testing.T) {
	dsn := servicetest.Postgres(t)
	const (
		nodes     = 3
		perNode   = 300 // messages to "shared" per node
		callers   = 4   // goroutines per node
		perCaller = perNode / callers
	)
	stores := make([]*Store, nodes)
	for i := range stores {
		stores[i] = openTest(t, dsn)
		if stores[i].Epoch() != stores[0].Epoch() {
			t.Fatalf("node %d has epoch %q, node 0 %q", i, stores[i].Epoch(), stores[0].Epoch())
		}
	}
	type sent struct {
		user   herald.UserID
		data   string
		offset uint64
	}
	var (
		mu     sync.Mutex
		byCall [][]sent // per caller goroutine, in the order its Appends returned
		wg     sync.WaitGroup
		start  = make(chan struct{})
	)
	for n, s := range stores {
		for c := range callers {
			wg.Go(func() {
				<-start
				var mine []sent
				size := 1 + (n+c)%5
				for i := 0; i < perCaller; {
					var batch []*herald.Message
					for k := 0; k < size && i < perCaller; k++ {
						batch = append(batch, storetest.Msg("shared", fmt.Sprintf("n%d-c%d-%d", n, c, i)))
						i++
						switch k % 3 {
						case 0:
							batch = append(batch, storetest.Msg(herald.UserID(fmt.Sprintf("own-%d", n)), fmt.Sprintf("n%d-c%d-%d", n, c, i)))
						case 1:
							batch = append(batch, storetest.Msg("mixed", fmt.Sprintf("n%d-c%d-%d", n, c, i)))
						}
					}
					if err := s.Append(context.Background(), batch); err != nil {
						t.Errorf("node %d: Append: %v", n, err)
						return
					}
					for _, m := range batch {
						mine = append(mine, sent{m.User, string(m.Data), m.Offset})
					}
					size = 1 + (size+2)%7 // 1..7, varying
				}
				mu.Lock()
				byCall = append(byCall, mine)
				mu.Unlock()
			})
		}
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}

	want := map[herald.UserID]map[uint64]string{}
	for _, call := range byCall {
		prev := map[herald.UserID]uint64{}
		for _, m := range call {
			if m.offset <= prev[m.user] {
				t.Fatalf("a caller got offset %d of %q after %d", m.offset, m.user, prev[m.user])
			}
			prev[m.user] = m.offset
			if want[m.user] == nil {
				want[m.user] = map[uint64]string{}
			}
			if other, dup := want[m.user][m.offset]; dup {
				t.Fatalf("offset %d of %q given to %q and %q", m.offset, m.user, other, m.data)
			}
			want[m.user][m.offset] = m.data
		}
	}
	if n := len(want["shared"]); n != nodes*perNode {
		t.Fatalf("%d messages to shared, want %d", n, nodes*perNode)
	}
	for user, offs := range want {
		// Read through another node than most writers used: every node
		// sees the same streams.
		got := storetest.All(t, stores[2], user)
		if len(got) != len(offs) {
			t.Fatalf("%q: %d stored, %d acknowledged", user, len(got), len(offs))
		}
		for i, m := range got {
			if m.Offset != uint64(i+1) || string(m.Data) != offs[m.Offset] {
				t.Fatalf("%q [%d]: offset %d %q, want offset %d %q", user, i, m.Offset, m.Data, i+1, offs[uint64(i+1)])
			}
		}
		if _, last, err := stores[1].Bounds(context.Background(), user); err != nil || last != uint64(len(offs)) {
			t.Fatalf("%q: last %d (%v), want %d", user, last, err, len(offs))
		}
	}
	var txns uint64
	for _, s := range stores {
		txns += s.txns.Load()
	}
	msgs := 0
	for _, call := range byCall {
		msgs += len(call)
	}
	t.Logf("%d messages in %d transactions over %d nodes", msgs, txns, nodes)
}

// TestMigrateConcurrently opens four Stores at once on an empty schema:
// all succeed, each migration ran once, and they share one epoch, which a
// later Open finds again.
func TestMigrateConcurrently(t *testing.T) {
	dsn := servicetest.Postgres(t)
	steps, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	log, logs := newLog(t)
	const n = 4
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			stores[i], errs[i] = Open(context.Background(), dsn, WithMaxConns(2), WithLogger(log))
		})
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("Open %d: %v", i, errs[i])
		}
		t.Cleanup(func() { s.Close() })
		if s.Epoch() != stores[0].Epoch() || len(s.Epoch()) != 16 {
			t.Fatalf("epochs %q and %q, want one of 16 hex characters", s.Epoch(), stores[0].Epoch())
		}
	}
	if got := logs.count("schema migrated"); got != len(steps) {
		t.Fatalf("%d migrations ran, want %d (once each)", got, len(steps))
	}
	c := admin(t, dsn)
	var rows, max int
	if err := c.QueryRow(context.Background(), "SELECT count(*), max(version) FROM schema_migrations").Scan(&rows, &max); err != nil {
		t.Fatal(err)
	}
	if rows != len(steps) || max != len(steps) {
		t.Fatalf("schema_migrations has %d rows up to %d, want %d", rows, max, len(steps))
	}

	again := openTest(t, dsn)
	if again.Epoch() != stores[0].Epoch() {
		t.Fatalf("reopened with epoch %q, was %q", again.Epoch(), stores[0].Epoch())
	}
	if got := logs.count("schema migrated"); got != len(steps) {
		t.Fatalf("reopening migrated again")
	}
}

// TestOpenRefuses checks Open's errors: a schema holding another tool's
// tables, a schema migrated by a newer Herald, a search_path naming no
// schema, and an unreachable server (EUnavailable, so a caller may retry).
func TestOpenRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup string // run in the fresh schema first
		dsn   func(dsn string) string
		want  func(err error) bool
	}{
		{
			name:  "another tool's schema_migrations",
			setup: "CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL)",
			want:  func(err error) bool { return errors.Is(err, ErrNotHerald) },
		},
		{
			name:  "an application's messages table",
			setup: "CREATE TABLE messages (id serial PRIMARY KEY, body text)",
			want:  func(err error) bool { return errors.Is(err, ErrNotHerald) },
		},
		{
			name: "a newer schema",
			setup: `CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
				INSERT INTO schema_migrations (version, name) VALUES (1, 'init'), (999, 'future')`,
			want: func(err error) bool { return errors.Is(err, ErrNotHerald) && strings.Contains(err.Error(), "newer") },
		},
		{
			name: "no such schema",
			dsn:  func(dsn string) string { return withParam(t, dsn, "search_path", "herald_test_missing_schema") },
			want: func(err error) bool { return strings.Contains(err.Error(), "CREATE SCHEMA") },
		},
		{
			name: "server unreachable",
			// Port 1 on loopback: nothing listens, the connection is refused.
			dsn:  func(string) string { return "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=5" },
			want: func(err error) bool { return herald.ErrorCodeOf(err) == herald.EUnavailable },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dsn := servicetest.Postgres(t)
			if tc.setup != "" {
				if _, err := admin(t, dsn).Exec(context.Background(), tc.setup); err != nil {
					t.Fatal(err)
				}
			}
			if tc.dsn != nil {
				dsn = tc.dsn(dsn)
			}
			s, err := Open(context.Background(), dsn, WithMaxConns(1))
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !tc.want(err) {
				t.Fatalf("Open: %v", err)
			}
			t.Logf("Open: %v", err)
		})
	}
}

// TestBadAppendFailsAlone makes one Append of a group commit fail in the
// database (a trigger refuses its payload): it fails alone, with an error
// that is not EUnavailable, and the Appends batched with it are stored.
func TestBadAppendFailsAlone(t *testing.T) {
	dsn := servicetest.Postgres(t)
	app := "herald_test_" + herald.NewEpoch()
	log, logs := newLog(t)
	// One committer: it waits in its first commit while the others queue.
	s, err := Open(context.Background(), withParam(t, dsn, "application_name", app), WithMaxConns(testConns), WithCommitters(1), WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	c, watch := admin(t, dsn), admin(t, dsn)
	if _, err := c.Exec(ctx, `CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.data = 'poison' THEN RAISE EXCEPTION 'poisoned payload'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse_poison BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_poison()`); err != nil {
		t.Fatal(err)
	}

	// Hold the committer in its first commit (the table lock blocks the
	// insert) while the others queue, so they make one batch.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE messages IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { first <- s.Append(ctx, []*herald.Message{storetest.Msg("u", "first")}) }()
	poll(t, "the first commit to wait for the lock", func() bool {
		var n int
		err := watch.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", app).Scan(&n)
		return err == nil && n == 1
	})
	payloads := []string{"a", "b", "poison", "c", "d"}
	results := make([]error, len(payloads))
	msgs := make([]*herald.Message, len(payloads))
	var wg sync.WaitGroup
	for i, p := range payloads {
		msgs[i] = storetest.Msg("u", p)
		wg.Go(func() { results[i] = s.Append(ctx, []*herald.Message{msgs[i], storetest.Msg("v", p)}) })
	}
	poll(t, "the Appends to queue", func() bool { return len(s.reqs) == len(payloads) })
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatalf("first Append: %v", err)
	}
	wg.Wait()

	var stored []string
	for i, p := range payloads {
		if p == "poison" {
			if results[i] == nil || herald.ErrorCodeOf(results[i]) == herald.EUnavailable || !strings.Contains(results[i].Error(), "poisoned") {
				t.Fatalf("poisoned Append: %v, want the trigger's error", results[i])
			}
			if msgs[i].Offset != 0 {
				t.Fatalf("poisoned Append: offset %d", msgs[i].Offset)
			}
			continue
		}
		if results[i] != nil {
			t.Fatalf("Append %q batched with a bad one: %v", p, results[i])
		}
		stored = append(stored, p)
	}
	if logs.count("retrying its Appends one by one") != 1 {
		t.Fatal("the batch was not split (did the Appends share a commit?)")
	}
	got := storetest.All(t, s, "u")
	if len(got) != 1+len(stored) {
		t.Fatalf("%d messages of u stored, want %d", len(got), 1+len(stored))
	}
	for i, m := range got {
		if m.Offset != uint64(i+1) {
			t.Fatalf("gap: [%d] has offset %d", i, m.Offset)
		}
		if i > 0 && !slices.Contains(stored, string(m.Data)) {
			t.Fatalf("%q stored", m.Data)
		}
	}
	if v := storetest.All(t, s, "v"); len(v) != len(stored) {
		t.Fatalf("%d messages of v stored, want %d: an Append was stored in part", len(v), len(stored))
	}
}

// TestUnstorableText: ids PostgreSQL text cannot hold are refused up front
// as the client's error, and reads of such a user find nothing.
func TestUnstorableText(t *testing.T) {
	s := openTest(t, servicetest.Postgres(t))
	ctx := context.Background()
	for _, m := range []*herald.Message{
		{User: "nul\x00user"},
		{User: "bad\xffutf8"},
		{User: "u", ID: "nul\x00id"},
	} {
		err := s.Append(ctx, []*herald.Message{storetest.Msg("u", "ok"), m})
		if herald.ErrorCodeOf(err) != herald.EInvalidRequest {
			t.Fatalf("Append(%q, %q): %v, want %s", m.User, m.ID, err, herald.EInvalidRequest)
		}
	}
	storetest.CheckStream(t, s, "u", nil)
	if got, err := s.Since(ctx, "nul\x00user", 0, 0); err != nil || len(got) != 0 {
		t.Fatalf("Since: %v %v", got, err)
	}
	if f, l, err := s.Bounds(ctx, "bad\xffutf8"); err != nil || f != 0 || l != 0 {
		t.Fatalf("Bounds: %d %d %v", f, l, err)
	}
	storetest.MustAppend(t, s, &herald.Message{User: "u", ID: "x"})
	if changed, err := s.Mark(ctx, "u", herald.MarkRead, []string{"nul\x00id", "x"}, false); err != nil || !slices.Equal(changed, []string{"x"}) {
		t.Fatalf("Mark: %v %v", changed, err)
	}
}

// TestTrimAcrossNodes runs retention on two nodes while three append
// batches spanning several users: the trim steps and the Appends lock the
// same stream rows in one order, so neither fails (a deadlock would surface
// as an error after a retry or three), and the streams come out trimmed
// from the front and gap-free.
func TestTrimAcrossNodes(t *testing.T) {
	dsn := servicetest.Postgres(t)
	log, logs := newLog(t)
	stores := []*Store{openTest(t, dsn, WithLogger(log)), openTest(t, dsn, WithLogger(log)), openTest(t, dsn, WithLogger(log))}
	const keep, rounds = 5, 60
	users := []herald.UserID{"a", "b", "c", "d"}
	ctx := context.Background()
	stop := make(chan struct{})
	var trims sync.WaitGroup
	for _, s := range stores[:2] {
		trims.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Trim(ctx, keep, time.Time{}); err != nil {
					t.Errorf("Trim: %v", err)
					return
				}
			}
		})
	}
	var appends sync.WaitGroup
	for n, s := range stores {
		appends.Go(func() {
			for i := range rounds {
				// Users in a different order per node and round: the
				// Store sorts them before it locks.
				var batch []*herald.Message
				for k := range users {
					u := users[(n+i+k)%len(users)]
					batch = append(batch, storetest.Msg(u, fmt.Sprint(n, "-", i)))
				}
				if err := s.Append(ctx, batch); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		})
	}
	appends.Wait()
	close(stop)
	trims.Wait()
	if t.Failed() {
		return
	}
	if n := logs.count("lost a race"); n > 0 {
		t.Fatalf("%d transactions deadlocked or lost a race", n)
	}
	storetest.Trim(t, stores[2], keep, time.Time{})
	const last = 3 * rounds
	for _, u := range users {
		if f, l, err := stores[0].Bounds(ctx, u); err != nil || f != last-keep+1 || l != last {
			t.Fatalf("%q: bounds %d, %d (%v), want %d, %d", u, f, l, err, last-keep+1, last)
		}
		got := storetest.All(t, stores[1], u)
		if len(got) != keep {
			t.Fatalf("%q: %d messages retained, want %d", u, len(got), keep)
		}
		for i, m := range got {
			if m.Offset != last-keep+1+uint64(i) {
				t.Fatalf("%q: [%d] has offset %d", u, i, m.Offset)
			}
		}
	}
}
