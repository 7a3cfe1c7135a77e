package stream

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/herald-gw/herald"
)

// A `?wait=ack` notify waits for a client's acknowledgement. In a cluster
// the user's connections may be on other nodes, where the acks arrive, so
// the waiting node asks them (herald.ControlAckWait, on the user's channel:
// the nodes holding a connection of the user), and each that sees one of
// its connections acknowledge the offset answers (herald.ControlAcked,
// to every node; the waiter's random id picks it out).

// ackWaitMsg is the Data of a herald.ControlAckWait.
type ackWaitMsg struct {
	ID     string `json:"id"`
	Offset uint64 `json:"offset"`
	// MS is how long to watch, in milliseconds: the waiter's timeout.
	MS int64 `json:"ms"`
}

// ackedMsg is the Data of a herald.ControlAcked.
type ackedMsg struct {
	ID    string `json:"id"`
	Acked int    `json:"acked"`
}

// maxRemoteAckWait bounds how long a node watches for another node's
// waiter, whatever the request says (api.MaxAckWait is 30 s).
const maxRemoteAckWait = 30 * time.Second

// ackWaits are this node's waiters for other nodes' answers, by id.
type ackWaits struct {
	mu sync.Mutex
	m  map[string]chan int
}

func (a *ackWaits) add(id string) chan int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = make(map[string]chan int)
	}
	ch := make(chan int, 16)
	a.m[id] = ch
	return ch
}

func (a *ackWaits) remove(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.m, id)
}

// deliver hands another node's answer to its waiter, if it still waits.
func (a *ackWaits) deliver(id string, acked int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ch, ok := a.m[id]; ok {
		select {
		case ch <- acked:
		default: // more answers than it can use: it has one already
		}
	}
}

// WaitAck waits until a connection of user acknowledged offset, on this
// node or (in a cluster) another, or until ctx is done, and reports the
// user's connections and how many acknowledged it: this node's as
// hub.WaitAck counts them, plus what the other nodes reported before the
// reply. conns counts the whole cluster.
func (s *Service) WaitAck(ctx context.Context, user herald.UserID, offset uint64) (conns, acked int) {
	if s.cluster == nil {
		return s.hub.WaitAck(ctx, user, offset)
	}
	id := herald.NewEpoch() // 64 random bits name the wait across the cluster
	answers := s.acks.add(id)
	defer s.acks.remove(id)
	req := ackWaitMsg{ID: id, Offset: offset, MS: maxRemoteAckWait.Milliseconds()}
	if dl, ok := ctx.Deadline(); ok {
		req.MS = max(time.Until(dl).Milliseconds(), 1)
	}
	data, _ := json.Marshal(req)
	if err := s.broker.Control(context.WithoutCancel(ctx), herald.Control{Kind: herald.ControlAckWait, User: user, Data: data}); err != nil {
		s.log.Warn("broker control failed: acks on other nodes are not counted", "kind", herald.ControlAckWait, "err", err)
	}

	local, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	go func() {
		conns, acked = s.hub.WaitAck(local, user, offset)
		close(done)
	}()
	remote := 0
	select {
	case <-done:
	case n := <-answers:
		remote += n
		stop()
		<-done
	}
	for more := true; more; {
		select {
		case n := <-answers:
			remote += n
		default:
			more = false
		}
	}
	// The count of the other nodes' connections, as a reply without
	// waiting has it; bounded, since ctx may be over by now.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if m := s.elsewhere(cctx, []herald.UserID{user}); m != nil {
		conns += m[user]
	}
	return conns, acked + remote
}

// watchAcks carries out another node's ControlAckWait: if this node holds
// connections of the user, it watches them for the offset's ack and
// answers with how many acknowledged it. It returns at once; the watch
// runs on a goroutine of its own, bounded by the request's time.
func (s *Service) watchAcks(c herald.Control) {
	var req ackWaitMsg
	if json.Unmarshal(c.Data, &req) != nil || req.ID == "" || req.Offset == 0 || len(s.hub.UserConns(c.User)) == 0 {
		return
	}
	d := min(time.Duration(max(req.MS, 1))*time.Millisecond, maxRemoteAckWait)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		if _, acked := s.hub.WaitAck(ctx, c.User, req.Offset); acked > 0 {
			data, _ := json.Marshal(ackedMsg{ID: req.ID, Acked: acked})
			if err := s.broker.Control(context.Background(), herald.Control{Kind: herald.ControlAcked, Data: data}); err != nil {
				s.log.Warn("broker control failed", "kind", herald.ControlAcked, "err", err)
			}
		}
	}()
}

// acked takes another node's ControlAcked.
func (s *Service) acked(c herald.Control) {
	var m ackedMsg
	if json.Unmarshal(c.Data, &m) == nil && m.ID != "" && m.Acked > 0 {
		s.acks.deliver(m.ID, m.Acked)
	}
}
