package health

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/sqlite"
	"github.com/herald-gw/herald/sqlite/sqlitetest"
	"github.com/herald-gw/herald/storetest"
)

// TestSQLiteCorruption is the incident this package exists for, with real
// parts: a SQLite file with damaged pages in the middle, opened without the
// start-up check (as when the check timed out on a large file). The node
// must stop reporting ready as soon as a read hits the damage, and log it
// once however many reads do.
func TestSQLiteCorruption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.db")
	ctx := context.Background()
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	const users = 40
	for u := range users {
		batch := make([]*herald.Message, 100)
		for i := range batch {
			batch[i] = storetest.Msg(herald.UserID(fmt.Sprintf("user-%03d", u)), fmt.Sprintf(`{"n":%d,"text":"notification %d"}`, i, i))
		}
		storetest.MustAppend(t, st, batch...)
	}
	if err := st.Close(); err != nil { // checkpoints the WAL into the file
		t.Fatal(err)
	}
	sqlitetest.CorruptPages(t, path, 4)

	st, err = sqlite.Open(ctx, path, sqlite.WithCheckTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	log := &records{}
	s := New(st, Options{Logger: slog.New(log)})
	defer s.Close()
	var failed int
	for range 3 {
		for u := range users {
			if _, err := s.Since(ctx, herald.UserID(fmt.Sprintf("user-%03d", u)), 0, 0); err != nil {
				failed++
				if ready := s.Ready(); ready == nil || !strings.Contains(ready.Error(), "malformed") {
					t.Fatalf("read failed with %v; Ready() = %v", err, ready)
				}
			}
		}
	}
	if failed == 0 {
		t.Fatal("no read hit the damaged pages")
	}
	got := log.take()
	if len(got) != 1 || !strings.Contains(got[0], "message store failing") || !strings.Contains(got[0], "malformed") {
		t.Errorf("%d failed reads logged %q", failed, got)
	}
	t.Logf("%d failed reads, logged %q", failed, got)
}
