package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/herald-gw/herald"
)

// After NewEpoch the file keeps its messages and offsets, under a new
// epoch; it refuses a file a running store holds.
func TestNewEpoch(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "h.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, []*herald.Message{{User: "u", Data: []byte(`1`)}, {User: "u", Data: []byte(`2`)}}); err != nil {
		t.Fatal(err)
	}
	before := s.Epoch()
	if _, _, err := NewEpoch(ctx, path); !errors.Is(err, ErrLocked) {
		t.Fatalf("NewEpoch on a file in use: %v", err)
	}
	s.Close()

	old, epoch, err := NewEpoch(ctx, path)
	if err != nil || old != before || epoch == before || epoch == "" {
		t.Fatalf("NewEpoch: %q → %q, %v (was %q)", old, epoch, err, before)
	}
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Epoch() != epoch {
		t.Fatalf("reopened with epoch %q, want %q", s.Epoch(), epoch)
	}
	msgs, err := s.Since(ctx, "u", 0, 10)
	if err != nil || len(msgs) != 2 || msgs[1].Offset != 2 || msgs[1].Epoch != epoch {
		t.Fatalf("history after a new epoch: %+v, %v", msgs, err)
	}
}
