// Package stream is the delivery path between the API and the hub: it gives
// each message an id, appends it to its user's stream in the Store (so it
// has an offset and survives reconnects and restarts), and only then hands
// it to the hub for the connections that are open right now.
package stream

import (
	"context"
	"fmt"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/hub"
)

// Service publishes messages. It is safe for concurrent use.
type Service struct {
	store herald.Store
	hub   *hub.Hub
	now   func() time.Time
}

// New returns a Service over store and h.
func New(store herald.Store, h *hub.Hub) *Service {
	return &Service{store: store, hub: h, now: time.Now}
}

// Publish stores msgs (one durable batch) and queues each to its user's
// open connections. When it returns without error every message has an ID
// and Offset and is committed; the results say where each went live.
//
// Delivery happens inside the Store's commit callback, which runs in
// commit order: two Publish calls racing for one user deliver in offset
// order, and a message is never sent before it is durable — so a client
// that resumes from any offset it saw cannot miss what came before.
func (s *Service) Publish(ctx context.Context, msgs []*herald.Message) ([]hub.Result, error) {
	now := s.now()
	for _, m := range msgs {
		if m.ID == "" {
			m.ID = herald.NewMessageID(now)
		}
		if m.Time.IsZero() {
			m.Time = now
		}
	}
	res := make([]hub.Result, len(msgs))
	deliver := func() {
		for i, m := range msgs {
			res[i] = s.hub.SendUser(m)
		}
	}
	if err := s.store.Append(ctx, msgs, deliver); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	return res, nil
}

// Broadcast queues data to every open connection on this node. Broadcasts
// are not stored: there is no per-user stream for "everyone".
func (s *Service) Broadcast(data []byte) (*herald.Message, int) {
	now := s.now()
	m := &herald.Message{ID: herald.NewMessageID(now), Time: now, Data: data}
	return m, s.hub.Broadcast(m)
}
