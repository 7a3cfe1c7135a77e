package stream

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/herald-gw/herald"
)

// History returns up to limit stored messages of user after since.
func (s *Service) History(ctx context.Context, user herald.UserID, since uint64, limit int) ([]herald.Message, error) {
	msgs, err := s.store.Since(ctx, user, since, limit)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return msgs, nil
}

// Inbox lists the user's inbox.
func (s *Service) Inbox(ctx context.Context, q herald.InboxQuery) ([]herald.InboxItem, error) {
	items, err := s.store.Inbox(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("inbox: %w", err)
	}
	return items, nil
}

// Counts returns the user's unread and unseen counts.
func (s *Service) Counts(ctx context.Context, user herald.UserID) (herald.InboxCounts, error) {
	c, err := s.store.Counts(ctx, user)
	if err != nil {
		return c, fmt.Errorf("inbox counts: %w", err)
	}
	return c, nil
}

// countsPush is the herald.v1 message every inbox change sends to all of a
// user's connections, so marking read in one tab clears the badge in the
// others.
type countsPush struct {
	Type string `json:"type"` // "counts"
	herald.InboxCounts
	Mark string   `json:"mark,omitempty"` // seen, read or archived
	IDs  []string `json:"ids,omitempty"`  // the messages whose state changed
}

// Mark changes the state of the user's messages and, when anything
// changed, pushes the new counts and the changed ids to every herald.v1
// connection of the user.
func (s *Service) Mark(ctx context.Context, user herald.UserID, mark herald.Mark, ids []string, all bool) ([]string, herald.InboxCounts, error) {
	changed, err := s.store.Mark(ctx, user, mark, ids, all)
	if err != nil {
		return nil, herald.InboxCounts{}, fmt.Errorf("inbox mark: %w", err)
	}
	counts, err := s.Counts(ctx, user)
	if err != nil {
		return nil, counts, err
	}
	if len(changed) > 0 {
		b, _ := json.Marshal(countsPush{Type: "counts", InboxCounts: counts, Mark: mark.String(), IDs: changed})
		s.push(ctx, user, "counts", b)
	}
	return changed, counts, nil
}

// Epoch is the Store's history epoch.
func (s *Service) Epoch() string { return s.store.Epoch() }
