package sqlite

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/storetest"
)

func openTest(t testing.TB, path string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// onAppender runs fn on the appender goroutine, which owns the cache of
// last offsets.
func (s *Store) onAppender(ctx context.Context, fn func() error) error {
	return s.submit(&request{ctx: ctx, op: fn, onAppender: true})
}

func TestBehaviour(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
	}{
		{"default", nil},
		// One message per transaction: group commit must not be what keeps
		// offsets dense.
		{"maxbatch=1", []Option{WithMaxBatch(1)}},
		// Reads from the tail alone: nothing is applied unless an op
		// (Mark, Trim) asks for it.
		{"unapplied", []Option{withApply(time.Hour, 1<<30)}},
		// The applier at work all the time, so reads race it.
		{"applying", []Option{withApply(time.Millisecond, 1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) herald.Store {
				return openTest(t, filepath.Join(t.TempDir(), "herald.db"), tc.opts...)
			})
		})
	}
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	epoch := s.Epoch()
	if len(epoch) != 16 {
		t.Fatalf("epoch %q is not 16 hex characters", epoch)
	}
	storetest.MustAppend(t, s, storetest.Msg("a", "a1"), storetest.Msg("b", "b1"), storetest.Msg("a", "a2"))
	storetest.MustAppend(t, s, storetest.Msg("a", "a3"))
	first := storetest.All(t, s, "a")
	storetest.Mark(t, s, "a", herald.MarkRead, []string{first[0].ID}, false)
	storetest.Mark(t, s, "a", herald.MarkSeen, []string{first[1].ID}, false)
	storetest.Mark(t, s, "b", herald.MarkArchived, nil, true)
	wantFlags := map[herald.UserID]map[string]string{"a": storetest.FlagsOf(t, s, "a"), "b": storetest.FlagsOf(t, s, "b")}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for round := range 2 {
		s = openTest(t, path)
		if s.Epoch() != epoch {
			t.Fatalf("reopen %d: epoch %q, want %q", round, s.Epoch(), epoch)
		}
		if round == 0 {
			storetest.CheckStream(t, s, "a", []string{"a1", "a2", "a3"})
			storetest.CheckStream(t, s, "b", []string{"b1"})
			// Inbox state survives.
			for u, want := range wantFlags {
				if got := storetest.FlagsOf(t, s, u); !maps.Equal(got, want) {
					t.Fatalf("flags of %q after reopen: %v, want %v", u, got, want)
				}
			}
			for u, want := range map[herald.UserID]herald.InboxCounts{"a": {Unread: 2, Unseen: 1}, "b": {}} {
				if c, err := s.Counts(context.Background(), u); err != nil || c != want {
					t.Fatalf("Counts(%q) after reopen: %+v, %v; want %+v", u, c, err, want)
				}
			}
			a, b := storetest.Msg("a", "a4"), storetest.Msg("b", "b2")
			storetest.MustAppend(t, s, a, b)
			if a.Offset != 4 || b.Offset != 2 {
				t.Fatalf("after reopen offsets %d %d, want 4 2", a.Offset, b.Offset)
			}
		} else {
			storetest.CheckStream(t, s, "a", []string{"a1", "a2", "a3", "a4"})
			storetest.CheckStream(t, s, "b", []string{"b1", "b2"})
		}
		var version int
		var mode string
		if err := s.db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
			t.Fatal(err)
		}
		if err := s.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if version != len(migrations()) || mode != "wal" {
			t.Fatalf("user_version %d journal_mode %q, want %d wal", version, mode, len(migrations()))
		}
		checkPragmas(t, s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// checkPragmas verifies the per-connection settings the DSN asks for reached
// both the writer's connection and the readers' pool.
func checkPragmas(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	for name, q := range map[string]interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}{"writer": s.wconn, "pool": s.db} {
		var syncMode, busy int
		if err := q.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil {
			t.Fatal(err)
		}
		if err := q.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
			t.Fatal(err)
		}
		if syncMode != 1 || busy != int(defaultBusyTimeout.Milliseconds()) {
			t.Errorf("%s connection: synchronous=%d busy_timeout=%d, want 1 (NORMAL) and %d", name, syncMode, busy, defaultBusyTimeout.Milliseconds())
		}
	}
}

func TestNewFileNewEpoch(t *testing.T) {
	dir := t.TempDir()
	a := openTest(t, filepath.Join(dir, "a.db"))
	b := openTest(t, filepath.Join(dir, "b.db"))
	if a.Epoch() == b.Epoch() {
		t.Fatalf("two new stores share epoch %q", a.Epoch())
	}
}

func TestPathNeedingEscapes(t *testing.T) {
	// Characters that mean something in a URI must reach the file system
	// as they are.
	path := filepath.Join(t.TempDir(), "dir with space", "h%20e?r#ald.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	s := openTest(t, path)
	storetest.MustAppend(t, s, storetest.Msg("u", "x"))
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the given path: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()

	newer := filepath.Join(dir, "newer.db")
	s := openTest(t, newer)
	if _, err := s.db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	tests := []struct {
		name, path, want string
	}{
		{"schema from the future", newer, "newer than this build"},
		// Paths that are no database file: TestOpenPaths, with their messages.
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(context.Background(), tc.path)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestCloseFlushes closes the store while Appends are in flight: each must
// either succeed, and then be in the file, or fail with ErrClosed.
func TestCloseFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		stored  = map[string]uint64{}
		wg      sync.WaitGroup
		started = make(chan struct{}, 1)
	)
	for w := range 20 {
		wg.Go(func() {
			for j := 0; ; j++ {
				m := storetest.Msg("u", fmt.Sprintf("w%d-%d", w, j))
				err := s.Append(context.Background(), []*herald.Message{m})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				stored[string(m.Data)] = m.Offset
				mu.Unlock()
				select {
				case started <- struct{}{}:
				default:
				}
			}
		})
	}
	<-started // at least one Append went through; the rest are in flight
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	s = openTest(t, path)
	stream := storetest.All(t, s, "u")
	if len(stream) != len(stored) {
		t.Fatalf("%d messages in the file, %d Appends succeeded", len(stream), len(stored))
	}
	for i, m := range stream {
		if m.Offset != uint64(i+1) || stored[string(m.Data)] != m.Offset {
			t.Fatalf("[%d] offset %d data %q; Append reported %d", i, m.Offset, m.Data, stored[string(m.Data)])
		}
	}
	t.Logf("%d Appends succeeded before Close", len(stored))
}

// Crash durability: a child process appends and prints every offset it was
// given; the parent kills it with SIGKILL mid-stream and checks that the
// file holds every printed message. Several rounds on the same file also
// check that a store recovered from a crash continues its offsets.

const (
	crashEnvPath  = "HERALD_SQLITE_CRASH_TEST_DB"
	crashEnvRound = "HERALD_SQLITE_CRASH_TEST_ROUND"
	crashEnvApply = "HERALD_SQLITE_CRASH_TEST_APPLY"
	crashWorkers  = 4
	crashUser     = "crash"
)

// TestHelperProcess is the child side of TestCrashDurability; run directly
// it does nothing.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(crashEnvPath)
	if path == "" {
		t.Skip("helper process for TestCrashDurability")
	}
	round := os.Getenv(crashEnvRound)
	var opts []Option
	switch os.Getenv(crashEnvApply) {
	case "busy":
		// Killed while the applier commits, or between its commit and
		// the removal of the applied segments.
		opts = append(opts, withApply(time.Millisecond, 50))
	case "never":
		// Killed with everything in the log.
		opts = append(opts, withApply(time.Hour, 1<<30))
	}
	s, err := Open(context.Background(), path, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	deadline := time.Now().Add(time.Minute) // the parent should kill us long before
	var wg sync.WaitGroup
	for w := range crashWorkers {
		wg.Go(func() {
			for j := 0; time.Now().Before(deadline); j++ {
				// Alternate single messages and pairs, so both one-message
				// and multi-message Appends are in flight at the kill.
				batch := []*herald.Message{storetest.Msg(crashUser, fmt.Sprintf("r%s-w%d-%d-0", round, w, j))}
				if j%2 == 1 {
					batch = append(batch, storetest.Msg(crashUser, fmt.Sprintf("r%s-w%d-%d-1", round, w, j)))
				}
				if err := s.Append(context.Background(), batch); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				// Printed only after Append returned: every line is a
				// promise that the message is stored.
				mu.Lock()
				for _, m := range batch {
					fmt.Fprintf(out, "OFFSET %d %s\n", m.Offset, m.Data)
				}
				out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	os.Exit(3) // not killed in time
}

// crashChild runs one child on path, kills it with SIGKILL once it has
// printed killAfter offsets, and returns every offset it printed.
func crashChild(t *testing.T, path, apply string, round, killAfter int) map[uint64]string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), crashEnvPath+"="+path, crashEnvRound+"="+strconv.Itoa(round), crashEnvApply+"="+apply)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed { // a t.Fatal below: do not leave the child running
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	printed := map[uint64]string{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "OFFSET" {
			continue // test framework chatter
		}
		off, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			t.Fatalf("bad line %q", line)
		}
		if prev, dup := printed[off]; dup {
			t.Fatalf("offset %d printed for %q and %q", off, prev, f[2])
		}
		printed[off] = f[2]
		if len(printed) >= killAfter && !killed {
			// SIGKILL: no deferred function, no Close, no flush runs,
			// and Appends are in flight in the writer.
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
		// Keep reading: lines already in the pipe were printed before the
		// kill and are promises too.
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if !killed {
		killed = true // already exited
		t.Fatalf("child exited before printing %d offsets (%d printed): %v", killAfter, len(printed), err)
	}
	return printed
}

func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	for _, apply := range []string{"default", "busy", "never"} {
		t.Run(apply, func(t *testing.T) { testCrashDurability(t, apply) })
	}
}

// unappliedLog returns how many bytes of frames the log segments of path
// hold: after a kill, what the next Open must replay (and whatever was
// applied but not yet removed).
func unappliedLog(t *testing.T, path string) int64 {
	t.Helper()
	gens, err := segments(path)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, g := range gens {
		fi, err := os.Stat(segmentPath(path, g))
		if err != nil {
			t.Fatal(err)
		}
		n += max(0, fi.Size()-int64(len(segmentHeader("0123456789abcdef"))))
	}
	return n
}

func testCrashDurability(t *testing.T, apply string) {
	const rounds, killAfter = 3, 1500
	path := filepath.Join(t.TempDir(), "herald.db")
	printed := map[uint64]string{}
	for round := range rounds {
		got := crashChild(t, path, apply, round, killAfter)
		if n := unappliedLog(t, path); apply == "never" && n == 0 {
			t.Fatalf("round %d: no log left behind by the kill", round)
		} else {
			t.Logf("round %d: %d bytes of log frames left behind by the kill", round, n)
		}
		for off, data := range got {
			if prev, dup := printed[off]; dup {
				t.Fatalf("offset %d given out twice: %q, then after a crash %q", off, prev, data)
			}
			printed[off] = data
		}
	}

	s := openTest(t, path)
	stream := storetest.All(t, s, crashUser)
	seen := map[string]bool{}
	for i, m := range stream {
		if m.Offset != uint64(i+1) {
			t.Fatalf("gap or disorder: [%d] has offset %d", i, m.Offset)
		}
		if seen[string(m.Data)] {
			t.Fatalf("%q stored twice", m.Data)
		}
		seen[string(m.Data)] = true
	}
	for off, data := range printed {
		if off == 0 || off > uint64(len(stream)) {
			t.Fatalf("printed offset %d (%s) missing: only %d stored", off, data, len(stream))
		}
		if got := string(stream[off-1].Data); got != data {
			t.Fatalf("offset %d holds %q, child was told %q", off, got, data)
		}
	}
	// Rounds follow one another, and within a round each worker's messages
	// appear in the order it appended them.
	type worker struct{ round, w int }
	last := map[worker]int{}
	lastRound := 0
	for _, m := range stream {
		var r, w, j, k int
		if _, err := fmt.Sscanf(string(m.Data), "r%d-w%d-%d-%d", &r, &w, &j, &k); err != nil {
			t.Fatalf("unexpected payload %q", m.Data)
		}
		if r < lastRound {
			t.Fatalf("%q (round %d) stored after round %d", m.Data, r, lastRound)
		}
		lastRound = r
		key := worker{r, w}
		if prev, ok := last[key]; ok && j*2+k <= prev {
			t.Fatalf("%q stored after a later message of its worker", m.Data)
		}
		last[key] = j*2 + k
	}
	t.Logf("%d rounds: children printed %d offsets before SIGKILL; %d messages in the file", rounds, len(printed), len(stream))
}

// TestReopenAfterTrimming checks that last never goes back across a
// restart, also when retention deleted every message of a stream (then only
// the streams table remembers it) and when it deleted all but the newest.
func TestReopenAfterTrimming(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	storetest.Fill(t, s, "gone", 0, 3)
	storetest.Fill(t, s, "kept", 0, 3)
	storetest.Trim(t, s, 0, time.Now().Add(time.Minute)) // everything
	storetest.Fill(t, s, "kept", 3, 2)                   // kept: 4, 5
	storetest.Fill(t, s, "gone", 3, 1)                   // gone: 4
	storetest.Trim(t, s, 0, time.Now().Add(time.Minute))
	storetest.Fill(t, s, "kept", 5, 1) // kept: 6
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, path)
	storetest.CheckOffsets(t, s, "gone", 0, 4)
	storetest.CheckOffsets(t, s, "kept", 6, 6)
	storetest.Fill(t, s, "gone", 4, 1)
	storetest.Fill(t, s, "kept", 6, 1)
	storetest.CheckOffsets(t, s, "gone", 5, 5)
	storetest.CheckOffsets(t, s, "kept", 6, 7)
}

// outsideDB opens the database at path with the store's connection
// settings but none of its code: another writer, or a database made
// before the store opens it. The test's cleanup closes it.
func outsideDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	dsn, err := dsnFor(path, defaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestMigrateFromV1 opens a database written by the first schema (the
// clustered WITHOUT ROWID table) and checks that its history, epoch and
// offsets carry over and the inbox starts out unread.
func TestMigrateFromV1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.db")
	db := outsideDB(t, path)
	ts := time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)
	setup := []string{
		"PRAGMA journal_mode = WAL",
		migrations()[0],
		"PRAGMA user_version = 1",
		"INSERT INTO meta (key, value) VALUES ('epoch', '0123456789abcdef')",
		// a: 1..3; b: 1..2; c: its messages were deleted by hand.
		`INSERT INTO streams (user, last_offset) VALUES ('a', 3), ('b', 2), ('c', 7)`,
		fmt.Sprintf(`INSERT INTO messages (user, "offset", id, ts, data) VALUES
			('a', 1, 'a1', %[1]d, 'a-1'), ('a', 2, 'a2', %[1]d, 'a-2'), ('a', 3, 'a3', %[1]d, 'a-3'),
			('b', 1, 'b1', %[1]d, 'b-1'), ('b', 2, 'b2', %[1]d, 'b-2')`, ts.UnixNano()),
	}
	for _, q := range setup {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := openTest(t, path)
	if s.Epoch() != "0123456789abcdef" {
		t.Fatalf("epoch %q, want the v1 one", s.Epoch())
	}
	var version int
	if err := s.db.QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != len(migrations()) {
		t.Fatalf("user_version %d (%v), want %d", version, err, len(migrations()))
	}
	storetest.CheckOffsets(t, s, "a", 1, 3)
	storetest.CheckOffsets(t, s, "b", 1, 2)
	storetest.CheckOffsets(t, s, "c", 0, 7)
	got := storetest.All(t, s, "a")
	if got[0].ID != "a1" || !got[0].Time.Equal(ts) {
		t.Fatalf("migrated message: ID %q Time %v", got[0].ID, got[0].Time)
	}
	if c, err := s.Counts(context.Background(), "a"); err != nil || c != (herald.InboxCounts{Unread: 3, Unseen: 3}) {
		t.Fatalf("Counts after migration: %+v, %v", c, err)
	}
	storetest.Fill(t, s, "a", 3, 1)
	storetest.Fill(t, s, "c", 7, 1)
	storetest.CheckOffsets(t, s, "a", 1, 4)
	storetest.CheckOffsets(t, s, "c", 8, 8)
	if changed := storetest.Mark(t, s, "b", herald.MarkRead, []string{"b2"}, false); !slices.Equal(changed, []string{"b2"}) {
		t.Fatalf("Mark after migration: %q", changed)
	}
}

// TestExternalWriter changes a stream behind the writer's back, through a
// connection of its own, as an operator's repair with the sqlite3 shell
// would (Open's lock keeps other Herald processes out, not such tools): the
// writer must notice the commit rather than hand out offsets from its
// stale cache. It must also not pay for the check while nobody commits:
// with the applier idle, Appends read PRAGMA data_version only after a
// commit changed the WAL index header.
func TestExternalWriter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []Option
		idle  bool // the applier never commits during the test
		shell bool // the sqlite3 shell commits, from another process
	}{
		{"default", nil, false, false},
		{"unapplied", []Option{withApply(time.Hour, 1<<30)}, true, false},
		{"applying", []Option{withApply(time.Millisecond, 1)}, false, false},
		{"shell", []Option{withApply(time.Hour, 1<<30)}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.shell {
				if _, err := exec.LookPath("sqlite3"); err != nil {
					t.Skip("sqlite3 shell not installed")
				}
			}
			path := filepath.Join(t.TempDir(), "herald.db")
			s := openTest(t, path, tc.opts...)
			storetest.Fill(t, s, "u", 0, 3) // the writer now caches u's last offset, 3
			reads := func() int {
				var n int
				if err := s.onAppender(context.Background(), func() error { n = s.versionReads; return nil }); err != nil {
					t.Fatal(err)
				}
				return n
			}
			if tc.idle {
				before := reads()
				storetest.Fill(t, s, "v", 0, 20)
				if n := reads() - before; n != 0 {
					t.Fatalf("20 Appends with nobody committing read data_version %d times, want 0", n)
				}
			}
			// Offsets 4..10 were handed out by a store since restored, say.
			const repair = `INSERT INTO streams (user, last_offset) VALUES ('u', 10)
				ON CONFLICT (user) DO UPDATE SET last_offset = 10`
			if tc.shell {
				out, err := exec.Command("sqlite3", "-cmd", ".timeout 10000", path, repair+";").CombinedOutput()
				if err != nil {
					t.Fatalf("sqlite3: %v: %s", err, out)
				}
			} else if _, err := outsideDB(t, path).Exec(repair); err != nil {
				t.Fatal(err)
			}
			m := storetest.Msg("u", "u-11")
			storetest.MustAppend(t, s, m)
			if m.Offset != 11 {
				t.Fatalf("Append after an external commit: offset %d, want 11", m.Offset)
			}
		})
	}
}

// TestOffsetCacheEviction fills the writer's cache of last offsets to its
// bound: evicted users are reloaded from the file with the right offset.
func TestOffsetCacheEviction(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "herald.db"))
	const users = 50
	for i := range users {
		storetest.Fill(t, s, herald.UserID(fmt.Sprint("u", i)), 0, 2)
	}
	// Fill the cache with made-up users, on the appender (it owns the map).
	err := s.onAppender(context.Background(), func() error {
		for i := 0; len(s.lastOf) < maxCachedUsers; i++ {
			s.cacheLast(herald.UserID(fmt.Sprint("fake", i)), 1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for round := range 10 {
		for i := range users {
			u := herald.UserID(fmt.Sprint("u", i))
			m := storetest.Msg(u, "x")
			storetest.MustAppend(t, s, m)
			if want := uint64(3 + round); m.Offset != want {
				t.Fatalf("%s round %d: offset %d, want %d", u, round, m.Offset, want)
			}
		}
	}
	var n int
	s.onAppender(context.Background(), func() error { n = len(s.lastOf); return nil })
	if n > maxCachedUsers {
		t.Fatalf("cache holds %d users, bound %d", n, maxCachedUsers)
	}
}

// TestQueryPlans guards the indexes: every per-user statement must be a
// search of an index, never a scan of messages or a sort, or a user with
// many messages (or a big file) would make it slow. Only the first Trim's
// scan of the whole stream index is allowed to scan.
func TestQueryPlans(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "herald.db"))
	defs := append((&writerStmts{}).defs(), (&readerStmts{}).defs()...)
	// Enough arguments for the largest statement, the multi-row INSERT;
	// the others ignore the rest.
	var args []any
	for range 1 << (insertSizes - 1) {
		args = append(args, "u", 1, 2, 3, 4)
	}
	for _, d := range defs {
		if !strings.Contains(d.query, "messages") {
			continue // BEGIN, COMMIT, PRAGMA, streams
		}
		rows, err := s.db.Query("EXPLAIN QUERY PLAN "+d.query, args...)
		if err != nil {
			t.Fatalf("%s: %v", d.query, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		fullScan := strings.Contains(p, "SCAN messages")
		allowed := strings.Contains(d.query, "GROUP BY user HAVING") && p == "SCAN messages USING COVERING INDEX messages_stream"
		if fullScan && !allowed || strings.Contains(p, "FOR ORDER BY") {
			t.Errorf("%s\n  plan: %s", d.query, p)
		}
	}
}
