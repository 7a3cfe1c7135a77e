package sqlite

import (
	"context"
	"fmt"

	"github.com/herald-gw/herald"
)

// NewEpoch gives the database file at path a new history epoch and returns
// the old and the new one. Run it after restoring a backup or salvaging a
// damaged file: history was lost, and without a new epoch the offsets
// handed out after the backup was taken would be handed out again, so
// clients that saw them would skip the new messages as already seen. With
// a new epoch every resuming client gets a reset and refetches.
//
// It opens the file as Herald does — the lock (so Herald must not be
// running on it), the integrity check, the schema — and closes it again.
func NewEpoch(ctx context.Context, path string, opts ...Option) (old, epoch string, err error) {
	s, err := Open(ctx, path, opts...)
	if err != nil {
		return "", "", err
	}
	defer func() {
		if cerr := s.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("sqlite: close %s: %w", path, cerr)
		}
	}()
	old, epoch = s.epoch, herald.NewEpoch()
	if _, err := s.db.ExecContext(ctx, "UPDATE meta SET value = ? WHERE key = 'epoch'", epoch); err != nil {
		return "", "", fmt.Errorf("sqlite: new epoch for %s: %w", path, err)
	}
	return old, epoch, nil
}
