package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/servicetest"
	"github.com/herald-gw/herald/storetest"
)

// Calls of Bounds that arrive while a query runs are answered together by
// one more query, each with its own user's bounds, and each query starts
// after the calls it answers.
func TestConcurrentBoundsShareAQuery(t *testing.T) {
	s := openTest(t, servicetest.Postgres(t))
	ctx := context.Background()
	const users = 12
	for u := range users { // user u<k> has k messages
		for range u {
			if err := s.Append(ctx, []*herald.Message{storetest.Msg(herald.UserID(fmt.Sprint("u", u)), "1")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	gate := make(chan struct{})
	var once sync.Once
	entered := make(chan struct{})
	s.beforeBounds = func() {
		once.Do(func() { close(entered); <-gate }) // the first query waits for the test
	}
	first := make(chan error, 1)
	go func() {
		_, last, err := s.Bounds(ctx, "u5")
		if err == nil && last != 5 {
			err = fmt.Errorf("u5: last %d, want 5", last)
		}
		first <- err
	}()
	<-entered
	const callers = 60
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Go(func() {
			u := i % (users + 3) // and three users without a stream
			f, l, err := s.Bounds(ctx, herald.UserID(fmt.Sprint("u", u)))
			wantF, wantL := uint64(min(u, 1)), uint64(u)
			switch {
			case u == 0:
				wantF, wantL = 1, 1 // appended below, after this call began and before its query
			case u >= users:
				wantF, wantL = 0, 0
			}
			if err != nil || f != wantF || l != wantL {
				errs <- fmt.Errorf("u%d: %d, %d, %v; want %d, %d", u, f, l, err, wantF, wantL)
			}
		})
	}
	poll(t, "every caller waits", func() bool { return s.bounds.Waiting() == callers })
	// Committed after the calls began: the query that answers them starts
	// later, so it sees this.
	if err := s.Append(ctx, []*herald.Message{storetest.Msg("u0", "x")}); err != nil {
		t.Fatal(err)
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := <-first; err != nil {
		t.Error(err)
	}
	if q := s.boundsQueries.Load(); q != 2 {
		t.Errorf("%d queries for %d calls, want 2", q, callers+1)
	}
	// A cancelled call returns at once, and the loop goes on for others.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.Bounds(cancelled, "u3"); err == nil {
		t.Error("Bounds with a cancelled context succeeded")
	}
	if f, l, err := s.Bounds(ctx, "u3"); err != nil || f != 1 || l != 3 {
		t.Fatalf("u3: %d, %d, %v", f, l, err)
	}
}
