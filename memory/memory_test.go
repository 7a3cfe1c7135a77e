package memory

import (
	"context"
	"testing"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/storetest"
)

func TestBehaviour(t *testing.T) {
	storetest.Run(t, func(t *testing.T) herald.Store {
		s := New()
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// History does not survive the Store, so neither may the epoch: a client
// resuming with an offset from an earlier process must be told to reset.
func TestEpochPerInstance(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		s := New()
		e := s.Epoch()
		if len(e) != 16 {
			t.Fatalf("epoch %q is not 16 hex characters", e)
		}
		if seen[e] {
			t.Fatalf("epoch %q reused", e)
		}
		seen[e] = true
		storetest.MustAppend(t, s, storetest.Msg("u", "x"))
		if s.Epoch() != e {
			t.Fatal("epoch changed during the Store's life")
		}
	}
}

func TestSinceCancelledContext(t *testing.T) {
	s := New()
	storetest.MustAppend(t, s, storetest.Msg("u", "x"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Since(ctx, "u", 0, 0); err == nil {
		t.Fatal("Since with a cancelled context succeeded")
	}
}
