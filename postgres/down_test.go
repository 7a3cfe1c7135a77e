package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/servicetest"
	"github.com/herald-gw/herald/storetest"
)

// ledger records what Appends reported, to compare with what was stored:
// every acknowledged message must be stored at the offset it was given,
// and no message of a failed Append may be stored.
type ledger struct {
	mu     sync.Mutex
	acked  map[string]uint64 // payload → offset
	failed map[string]error
}

func newLedger() *ledger {
	return &ledger{acked: map[string]uint64{}, failed: map[string]error{}}
}

func (l *ledger) record(batch []*herald.Message, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range batch {
		if err != nil {
			l.failed[string(m.Data)] = err
		} else {
			l.acked[string(m.Data)] = m.Offset
		}
	}
}

func (l *ledger) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// check compares the streams of users with the ledger: gap-free, every
// acknowledged message at its offset, nothing of a failed Append.
func (l *ledger) check(t *testing.T, s *Store, users ...herald.UserID) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	stored := 0
	for _, u := range users {
		for i, m := range storetest.All(t, s, u) {
			d := string(m.Data)
			if m.Offset != uint64(i+1) {
				t.Fatalf("%q: gap, [%d] has offset %d", u, i, m.Offset)
			}
			if err, ok := l.failed[d]; ok {
				t.Fatalf("%q stored at %d although its Append failed: %v", d, m.Offset, err)
			}
			if off, ok := l.acked[d]; !ok || off != m.Offset {
				t.Fatalf("%q stored at %d, acknowledged at %d (%v)", d, m.Offset, off, ok)
			}
			stored++
		}
	}
	if stored != len(l.acked) {
		t.Fatalf("%d messages stored, %d acknowledged", stored, len(l.acked))
	}
	for d, err := range l.failed {
		if herald.ErrorCodeOf(err) != herald.EUnavailable {
			t.Fatalf("Append of %q failed with %v, want an %s error", d, err, herald.EUnavailable)
		}
	}
	t.Logf("%d messages acknowledged and stored, %d refused", len(l.acked), len(l.failed))
}

// TestDatabaseDown has the server drop the Store's connections
// (pg_terminate_backend, as a restart or failover does) again and again
// while Appends of three messages and reads run: the Store recovers by itself, any
// Append that fails fails with EUnavailable and stores nothing, and every
// acknowledged message is stored, whole batches only.
func TestDatabaseDown(t *testing.T) {
	dsn := servicetest.Postgres(t)
	app := "herald_test_" + herald.NewEpoch()
	s := openTest(t, withParam(t, dsn, "application_name", app))
	killer := admin(t, dsn)
	ctx := context.Background()

	l := newLedger()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				batch := []*herald.Message{
					storetest.Msg("u", fmt.Sprintf("w%d-%d-a", w, i)),
					storetest.Msg("v", fmt.Sprintf("w%d-%d-b", w, i)),
					storetest.Msg("u", fmt.Sprintf("w%d-%d-c", w, i)),
				}
				l.record(batch, s.Append(ctx, batch))
			}
		})
	}
	// Reads run too: they retry on a fresh connection the same way, and
	// may only fail with EUnavailable.
	var readErrs []error
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := s.Since(ctx, "u", 0, 10)
			if err == nil {
				_, _, err = s.Bounds(ctx, "v")
			}
			if err != nil {
				readErrs = append(readErrs, err)
			}
		}
	})
	killed := 0
	for round := range 5 {
		want := (round + 1) * 60
		poll(t, "Appends to go on", func() bool { return l.ackedCount() >= want })
		var n int
		if err := killer.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		killed += n
	}
	// And it goes on after the last round.
	want := l.ackedCount() + 60
	poll(t, "Appends to go on after the last kill", func() bool { return l.ackedCount() >= want })
	close(stop)
	wg.Wait()
	t.Logf("%d connections terminated; %d reads failed", killed, len(readErrs))
	for _, err := range readErrs {
		if herald.ErrorCodeOf(err) != herald.EUnavailable {
			t.Fatalf("a read failed with %v, want an %s error", err, herald.EUnavailable)
		}
	}
	l.check(t, s, "u", "v")
	if err := s.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}

// TestServerUnreachable puts a proxy between the Store and the server and
// cuts it: Append, the reads and Ready fail with EUnavailable (so the API
// answers 503 and /readyz fails) and store nothing; once the proxy is back
// the same Store works again without being reopened, and says so in its log.
func TestServerUnreachable(t *testing.T) {
	dsn := servicetest.Postgres(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := servicetest.NewCutProxy(t, u.Host)
	u.Host = p.Addr()
	log, logs := newLog(t)
	s, err := Open(context.Background(), u.String(), WithMaxConns(testConns), WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	l := newLedger()
	appendOne := func(data string) error {
		batch := []*herald.Message{storetest.Msg("u", data), storetest.Msg("u", data+"+")}
		err := s.Append(ctx, batch)
		l.record(batch, err)
		return err
	}
	for i := range 3 {
		if err := appendOne(fmt.Sprint("before-", i)); err != nil {
			t.Fatal(err)
		}
	}

	p.Cut()
	for i := range 3 {
		err := appendOne(fmt.Sprint("during-", i))
		if herald.ErrorCodeOf(err) != herald.EUnavailable {
			t.Fatalf("Append while the server is unreachable: %v, want an %s error", err, herald.EUnavailable)
		}
	}
	if err := s.Ready(); herald.ErrorCodeOf(err) != herald.EUnavailable {
		t.Fatalf("Ready while the server is unreachable: %v", err)
	}
	if _, err := s.Since(ctx, "u", 0, 0); herald.ErrorCodeOf(err) != herald.EUnavailable {
		t.Fatalf("Since while the server is unreachable: %v", err)
	}
	if _, err := s.Mark(ctx, "u", herald.MarkRead, nil, true); herald.ErrorCodeOf(err) != herald.EUnavailable {
		t.Fatalf("Mark while the server is unreachable: %v", err)
	}
	if logs.count("server unreachable") != 1 {
		t.Fatalf("the outage was not logged once")
	}

	p.Restore()
	poll(t, "Ready after the server is back", func() bool { return s.Ready() == nil })
	for i := range 3 {
		if err := appendOne(fmt.Sprint("after-", i)); err != nil {
			t.Fatalf("Append after the server is back: %v", err)
		}
	}
	if logs.count("server reachable again") != 1 {
		t.Fatalf("the recovery was not logged once")
	}
	l.check(t, s, "u")
}

// TestResolve asks the server what became of transactions, as write does
// when a COMMIT's answer is lost: a committed one is reported committed, a
// rolled-back one not, with the COMMIT's error.
func TestResolve(t *testing.T) {
	dsn := servicetest.Postgres(t)
	s := openTest(t, dsn)
	c := admin(t, dsn)
	ctx := context.Background()
	lost := errors.New("connection lost during COMMIT")
	for _, commit := range []bool{true, false} {
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var xid string
		if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text").Scan(&xid); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		committed, err := s.resolve(xid, lost)
		if committed != commit || (err == nil) != commit || (err != nil && !errors.Is(err, lost)) {
			t.Fatalf("resolve of a transaction that committed=%v: %v, %v", commit, committed, err)
		}
	}
}

// A COMMIT whose answer is lost although the server committed: the Append
// succeeds with the offsets the messages were stored at, not zeros (a
// false acknowledgement the cluster's outage test caught once), and
// nothing is stored twice. The lost answer is injected after a real
// COMMIT: no server can be made to drop exactly that reply on demand.
func TestLostCommitAnswerKeepsOffsets(t *testing.T) {
	var lose sync.Mutex
	armed := true
	opt := func(c *config) {
		c.commitErr = func() error {
			lose.Lock()
			defer lose.Unlock()
			if armed {
				armed = false
				return &net.OpError{Op: "read", Net: "tcp", Err: io.ErrUnexpectedEOF}
			}
			return nil
		}
	}
	s := openTest(t, servicetest.Postgres(t), opt)
	ctx := context.Background()
	msgs := []*herald.Message{
		{ID: "a1", User: "a", Data: []byte(`1`)},
		{ID: "b1", User: "b", Data: []byte(`1`)},
		{ID: "a2", User: "a", Data: []byte(`2`)},
		{ID: "a3", User: "a", Data: []byte(`3`)},
	}
	if err := s.Append(ctx, msgs); err != nil {
		t.Fatalf("Append with a lost commit answer: %v", err)
	}
	for i, want := range []uint64{1, 1, 2, 3} {
		if msgs[i].Offset != want || msgs[i].Epoch == "" {
			t.Fatalf("message %s: offset %d epoch %q, want offset %d", msgs[i].ID, msgs[i].Offset, msgs[i].Epoch, want)
		}
	}
	next := []*herald.Message{{ID: "a4", User: "a", Data: []byte(`4`)}}
	if err := s.Append(ctx, next); err != nil || next[0].Offset != 4 {
		t.Fatalf("the next Append: offset %d, %v; want 4 (nothing stored twice)", next[0].Offset, err)
	}
	got, err := s.Since(ctx, "a", 0, 0)
	if err != nil || len(got) != 4 {
		t.Fatalf("stream a holds %d messages (%v), want 4", len(got), err)
	}
	if armed {
		t.Fatal("the commit answer was never lost: the test tested nothing")
	}
}
