package redis

import (
	"context"
	"errors"
	"fmt"

	"github.com/herald-gw/herald"
)

// publication is one PUBLISH: an envelope and its channel.
type publication struct {
	channel string
	payload []byte
}

// item is what one call of Publish, Broadcast or Control queues: its
// publications go out together, in order.
type item struct {
	pubs []publication
	size int64 // bytes of the payloads, counted in Broker.queued
}

// Pipelines are cut at this many commands or bytes, so that one Exec
// does not hold a very long reply or buffer.
const (
	maxPipelineCommands = 512
	maxPipelineBytes    = 1 << 20
)

// check returns the error an operation named op must fail with before
// sending anything: the broker closed, or ctx done.
func (b *Broker) check(ctx context.Context, op string) error {
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return fmt.Errorf("redis: %s: %w", op, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis: %s: %w", op, err)
	}
	return nil
}

// Publish queues one envelope per user of msgs, each holding that user's
// messages in slice order, on the user's channel, and returns: it does not
// wait for Redis. It fails with ErrQueueFull rather than wait when Redis
// is not keeping up.
func (b *Broker) Publish(ctx context.Context, msgs []*herald.Message) error {
	if err := b.check(ctx, "publish"); err != nil {
		return err
	}
	if err := herald.CheckCommitted(msgs); err != nil {
		return fmt.Errorf("redis: publish: %w", err)
	}
	if len(msgs) == 0 {
		return nil
	}
	var it item
	if oneUser(msgs) {
		it.add(b.userChannel(msgs[0].User), encodeMessages(nil, b.node, msgs[0].User, msgs))
	} else {
		// Group by user, users in the order of their first message. A
		// user's messages keep their order; how they interleave with
		// other users' does not matter to anyone.
		var order []herald.UserID
		byUser := make(map[herald.UserID][]*herald.Message)
		for _, m := range msgs {
			if _, ok := byUser[m.User]; !ok {
				order = append(order, m.User)
			}
			byUser[m.User] = append(byUser[m.User], m)
		}
		it.pubs = make([]publication, 0, len(order))
		for _, u := range order {
			it.add(b.userChannel(u), encodeMessages(nil, b.node, u, byUser[u]))
		}
	}
	return b.enqueue("publish", it)
}

// Broadcast queues m for every connection on the other nodes.
func (b *Broker) Broadcast(ctx context.Context, m *herald.Message) error {
	if err := b.check(ctx, "broadcast"); err != nil {
		return err
	}
	if m == nil {
		return errors.New("redis: broadcast: nil message")
	}
	var it item
	it.add(b.broadcastCh, encodeBroadcast(nil, b.node, m))
	return b.enqueue("broadcast", it)
}

// Control queues c for the other nodes: on the user's channel for a
// control about a user, so that it reaches the nodes watching the user, on
// the control channel that every node subscribes to for any other (one
// about a connection, a node's counts).
func (b *Broker) Control(ctx context.Context, c herald.Control) error {
	if err := b.check(ctx, "control"); err != nil {
		return err
	}
	if err := herald.CheckControl(c); err != nil {
		return fmt.Errorf("redis: control: %w", err)
	}
	ch := b.controlCh
	if c.Kind.ByUser() {
		ch = b.userChannel(c.User)
	}
	var it item
	it.add(ch, encodeControl(nil, b.node, c))
	return b.enqueue("control", it)
}

func (it *item) add(channel string, payload []byte) {
	it.pubs = append(it.pubs, publication{channel, payload})
	it.size += int64(len(payload))
}

func oneUser(msgs []*herald.Message) bool {
	for _, m := range msgs[1:] {
		if m.User != msgs[0].User {
			return false
		}
	}
	return true
}

// enqueue hands it to the writer without waiting: when the queue is full
// (in calls or in bytes) it fails with ErrQueueFull.
func (b *Broker) enqueue(op string, it item) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed { // closed since check: the queue is closed too
		return fmt.Errorf("redis: %s: %w", op, ErrClosed)
	}
	// One item may always wait, however large, so that a payload bigger
	// than QueueBytes is not refused forever.
	if q := b.queued.Add(it.size); q > b.queueBytes && q != it.size {
		b.queued.Add(-it.size)
		return fmt.Errorf("redis: %s: %w (%d bytes waiting)", op, ErrQueueFull, q-it.size)
	}
	select {
	case b.queue <- it:
		return nil
	default:
		b.queued.Add(-it.size)
		return fmt.Errorf("redis: %s: %w (%d calls waiting)", op, ErrQueueFull, len(b.queue))
	}
}

// write is the writer goroutine: it sends what is queued as pipelines of
// PUBLISH commands, one at a time, so that Redis runs them in queue order.
// It ends when Close has closed the queue and it has sent (or, past
// flushTimeout, dropped) what was left.
func (b *Broker) write() {
	defer close(b.writerDone)
	pipe := b.client.Pipeline()
	for first := range b.queue {
		n, size := 0, int64(0)
		add := func(it item) {
			for _, p := range it.pubs {
				pipe.Publish(b.wctx, p.channel, p.payload)
			}
			n += len(it.pubs)
			size += it.size
		}
		add(first)
		// Take whatever else is waiting, without waiting for more: the
		// pipeline grows with the load and a lone message leaves at once.
	more:
		for n < maxPipelineCommands && size < maxPipelineBytes {
			select {
			case it, ok := <-b.queue:
				if !ok {
					break more
				}
				add(it)
			default:
				break more
			}
		}
		_, err := pipe.Exec(b.wctx)
		b.queued.Add(-size)
		if err != nil {
			b.dropped.Add(uint64(n))
		}
		b.wrote(err)
	}
}

// wrote records whether publishing works (a pipeline or the health
// check's ping reached Redis) and logs when that changes.
func (b *Broker) wrote(err error) {
	if !b.state.wrote(err) {
		return
	}
	if err != nil {
		b.log.Warn("redis: publishing failed; publications are dropped until Redis answers (sessions fetch them from the store)", "err", err)
		return
	}
	b.log.Info("redis: publishing works again", "dropped", b.dropped.Swap(0))
}
