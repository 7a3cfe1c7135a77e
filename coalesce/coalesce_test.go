package coalesce

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestSharedCalls: lookups that arrive while a call runs wait for the next
// one, which fetches the union of their keys once each, and every lookup
// gets its own keys' values only.
func TestSharedCalls(t *testing.T) {
	var (
		mu    sync.Mutex
		calls [][]string
	)
	gate := make(chan struct{})
	b := New(func(keys []string) (map[string]int, error) {
		mu.Lock()
		first := len(calls) == 0
		calls = append(calls, slices.Sorted(slices.Values(keys)))
		mu.Unlock()
		if first {
			<-gate
		}
		out := make(map[string]int)
		for _, k := range keys {
			if k != "none" {
				out[k] = len(k)
			}
		}
		return out, nil
	})
	ctx := context.Background()
	firstDone := make(chan map[string]int)
	go func() {
		m, _ := b.Lookup(ctx, "a")
		firstDone <- m
	}()
	waitUntil(t, "the first call runs", func() bool { mu.Lock(); defer mu.Unlock(); return len(calls) == 1 })
	const callers = 30
	var wg sync.WaitGroup
	errs := make(chan string, callers)
	for i := range callers {
		wg.Go(func() {
			key := fmt.Sprint("k", i%5, "x")
			m, err := b.Lookup(ctx, key, "none", key)
			if want := map[string]int{key: len(key)}; err != nil || !maps.Equal(m, want) {
				errs <- fmt.Sprintf("caller %d: %v %v, want %v", i, m, err, want)
			}
		})
	}
	waitUntil(t, "every caller waits", func() bool { return b.Waiting() == callers })
	close(gate)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if m := <-firstDone; !maps.Equal(m, map[string]int{"a": 1}) {
		t.Errorf("the first lookup got %v", m)
	}
	mu.Lock()
	defer mu.Unlock()
	want := [][]string{{"a"}, {"k0x", "k1x", "k2x", "k3x", "k4x", "none"}}
	if !slices.EqualFunc(calls, want, slices.Equal) {
		t.Errorf("calls %q, want %q", calls, want)
	}
}

// TestErrorsAndCancel: a call's error reaches every lookup it answers; a
// lookup whose context ends returns at once, and the next lookup is
// answered all the same.
func TestErrorsAndCancel(t *testing.T) {
	boom := errors.New("boom")
	fail := true
	b := New(func(keys []string) (map[string]int, error) {
		if fail {
			return nil, boom
		}
		return map[string]int{"k": 1}, nil
	})
	if _, err := b.Lookup(context.Background(), "k"); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Lookup(cancelled, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err = %v", err)
	}
	fail = false
	if m, err := b.Lookup(context.Background(), "k"); err != nil || m["k"] != 1 {
		t.Fatalf("after: %v %v", m, err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}
