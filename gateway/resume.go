package gateway

import (
	"context"
	"encoding/json"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/wire"
)

// History is what resuming needs from the Store.
type History interface {
	Since(ctx context.Context, user herald.UserID, since uint64, limit int) ([]herald.Message, error)
	Bounds(ctx context.Context, user herald.UserID) (first, last uint64, err error)
	Epoch() string
}

// replayPage is how many stored messages one history read returns.
const replayPage = 500

// replayTimeout bounds one replay: reading history and writing it out.
const replayTimeout = time.Minute

// startReplay parks live stored messages and replays history after since
// in a goroutine of its own (it may wait on the socket).
func (c *conn) startReplay(since uint64, epoch string) {
	c.mu.Lock()
	if c.replay != nil || c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	c.replay = &replayState{drained: make(chan struct{}, 1)}
	c.mu.Unlock()
	go c.runReplay(since, epoch)
}

// replay sends the user's stored messages after since, in order, then the
// live ones that arrived meanwhile, and goes live — with no gap and no
// duplicate at the switch-over. It relies on the connection being in the
// hub before history is read: every message committed after that point
// reaches Send (and is parked), every one committed before is in history,
// and one that is both is dropped by its offset.
//
// When since cannot be honoured — another epoch (the store lost its
// history), an offset from the future, or history already trimmed past
// since — a herald.v1 client first gets {"type":"reset","epoch","offset"}
// so it knows to refetch its inbox; then it continues live from offset.
func (c *conn) runReplay(since uint64, epoch string) {
	ctx, cancel := context.WithTimeout(context.Background(), replayTimeout)
	defer cancel()
	h := c.g.history
	first, last, err := h.Bounds(ctx, c.user)
	if err != nil {
		c.g.log.Error("replay: read stream bounds", "conn", c.id, "user", c.user, "err", err)
		c.Close(wire.CloseInternal, "history unavailable")
		return
	}
	reset := epoch != "" && epoch != h.Epoch() || since > last || since < last && (first == 0 || first > since+1)
	if reset {
		c.mu.Lock()
		if c.lastOffset < last {
			c.lastOffset = last
		}
		c.mu.Unlock()
		if c.proto == herald.ProtocolV1 {
			b, _ := json.Marshal(struct {
				Type   string `json:"type"`
				Epoch  string `json:"epoch"`
				Offset uint64 `json:"offset"`
			}{"reset", h.Epoch(), last})
			c.sendReplayed(ctx, wire.Frame(wire.OpText, b), 0)
		}
	}
	for cur := since; !reset && cur < last; {
		msgs, err := h.Since(ctx, c.user, cur, replayPage)
		if err != nil {
			c.g.log.Error("replay: read history", "conn", c.id, "user", c.user, "err", err)
			c.Close(wire.CloseInternal, "history unavailable")
			return
		}
		for i := range msgs {
			m := &msgs[i]
			if m.Offset > last {
				break // newer ones are parked
			}
			if !c.sendReplayed(ctx, wire.MessageFrame(m, c.proto), m.Offset) {
				return
			}
			cur = m.Offset
		}
		if len(msgs) < replayPage {
			break
		}
	}

	// Go live: queue what was parked (minus anything replay already sent).
	c.mu.Lock()
	defer c.mu.Unlock()
	parked := c.replay.parked
	c.replay = nil
	for _, p := range parked {
		if c.state != stateOpen {
			return
		}
		if p.offset > c.lastOffset {
			c.queueLocked(p.frame, p.offset)
		}
	}
}

// sendReplayed queues a replayed frame, waiting for the writer when the
// queue is half full: a replay may be far larger than the queue, and it
// is the one sender that can afford to wait.
func (c *conn) sendReplayed(ctx context.Context, frame []byte, offset uint64) bool {
	for {
		c.mu.Lock()
		if c.state != stateOpen {
			c.mu.Unlock()
			return false
		}
		if offset != 0 && offset <= c.lastOffset {
			c.mu.Unlock()
			return true
		}
		if len(c.queue) < c.g.cfg.MaxQueueFrames/2 && c.qbytes+len(frame) <= c.g.cfg.MaxQueueBytes/2 || len(c.queue) == 0 {
			ok := c.queueLocked(frame, offset)
			c.mu.Unlock()
			return ok
		}
		drained := c.replay.drained
		c.mu.Unlock()
		select {
		case <-drained:
		case <-ctx.Done():
			c.Close(wire.CloseSlowConsumer, "replay too slow")
			return false
		}
	}
}
