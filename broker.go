package herald

import (
	"context"
	"fmt"
)

// Broker carries what one node publishes to every other node of a cluster.
//
// A cluster is several Herald nodes sharing one Store, each holding its own
// hub of WebSocket connections. The node that accepts a notification
// commits it to the Store, delivers it to its own hub directly and hands it
// to its Broker, which delivers it to the hub of every other node, where
// the user's other connections may be. Each Broker value is one node's
// handle on the bus: a node never receives its own publications back,
// because it has already delivered them itself and a second copy would
// only cost a lookup and a dropped duplicate.
//
// # Best effort, at most once
//
// A broker may drop or reorder messages: a node restarts, a network
// partitions, a subscriber falls behind. It never duplicates one. That is
// safe because every stored message has an offset: a connection ignores
// offsets it has already seen and a session that notices a gap (or
// reconnects) fills it from the Store. The Store is the source of truth;
// the broker only has to be fast. On a reliable bus (one process, a healthy
// network) nothing is lost, and the messages of one user published by one
// node arrive in publish order, so the common case needs no refetch.
//
// Implementations live in their own packages (memory, and later Redis and
// NATS) and pass the behaviour suite in package brokertest. All methods are
// safe for concurrent use.
type Broker interface {
	// Publish sends committed messages (Offset and Epoch set) to the other
	// nodes. The messages of one user arrive in slice order, and after
	// those of an earlier Publish of the same node, when that Publish
	// returned before this one started. Publish must not block for long:
	// it runs on the API's publish path, so a network broker queues and
	// returns.
	//
	// Publish does not keep msgs or their Data: the caller may reuse them
	// once it returns. An empty msgs sends nothing. Publish returning nil
	// means the bus accepted the messages, not that any node received
	// them. A nil message, one without User, Offset or Epoch is an error
	// (see CheckCommitted) and nothing is sent. When ctx is already done,
	// Publish returns an error wrapping ctx.Err() and sends nothing.
	Publish(ctx context.Context, msgs []*Message) error
	// Broadcast sends m to every connection on the other nodes. m is not
	// stored and belongs to no user, so it normally has no User, Offset or
	// Epoch; the broker carries the fields as they are. A nil m is an
	// error. Broadcasts are not ordered with respect to Publish or to each
	// other. Like Publish, Broadcast does not keep m.
	Broadcast(ctx context.Context, m *Message) error
	// Control sends a command about a user or a connection to the other
	// nodes; the nodes that hold the connections carry it out, the
	// others ignore it. Control does not keep c.Data. A Control that CheckControl rejects is an error
	// and nothing is sent. Controls are not ordered with respect to
	// Publish.
	Control(ctx context.Context, c Control) error
	// Subscribe starts delivering what other nodes publish to h and returns
	// once the subscription is in place, so that a Publish made after it
	// returns is seen. ctx bounds only that setup, not the subscription.
	//
	// stop ends the subscription. It is idempotent, and once it returns h
	// is not called again: stop waits for calls already running, so a node
	// can tear down what h uses (its hub, a test's t) right after it. For
	// the same reason stop must not be called from inside h. A handler may
	// be subscribed again later; what was published meanwhile is missed
	// (the Store has it).
	Subscribe(ctx context.Context, h BrokerHandler) (stop func(), err error)
	// Close stops every subscription of this node (waiting like stop, so
	// not from inside a handler) and releases the broker. Later calls of
	// Publish, Broadcast, Control and Subscribe fail with an EUnavailable
	// *Error; Close itself is idempotent.
	Close() error
}

// BrokerHandler receives what other nodes publish. A node subscribes one
// (its hub, through an adapter) with Broker.Subscribe.
//
// Calls may come from the broker's goroutines, or from the publisher's in
// an in-process broker, and several may run at once (two nodes publishing
// at the same time). They must not block for long: a slow handler delays
// every node's delivery on an in-process bus, and backs up the
// subscription on a network one. The hub's sends never block, so handing
// over to it is fine.
//
// What a handler is given is its own: the broker made the copy (or decoded
// it from the wire), so the handler may keep or modify it.
type BrokerHandler interface {
	// HandleMessages receives committed messages one node published: those
	// of one Publish, or some of them (a broker may split a batch, by user
	// for instance), never an empty slice. Each user's are in publish
	// order.
	HandleMessages(msgs []*Message)
	// HandleBroadcast receives a message for every connection.
	HandleBroadcast(m *Message)
	// HandleControl receives a command about a user or a connection.
	HandleControl(c Control)
}

// BrokerResync may be implemented by a BrokerHandler that wants to know
// when a subscription that was lost is back. What other nodes published
// meanwhile may have been missed — the broker is best effort — and a
// session only notices a missed message at the user's next one, which may
// never come; told of the resubscription, the node checks its
// connections against the Store at once. Brokers over a network call it
// after each restored subscription (never for the first one), from any
// goroutine; it must not block.
type BrokerResync interface {
	HandleResubscribed()
}

// ControlKind says what a Control asks of the nodes. The zero value is not a
// valid kind, so a Control whose Kind was forgotten cannot act on anything.
type ControlKind uint8

const (
	// ControlPush sends Data, a herald.v1 JSON control message such as
	// {"type":"counts",...}, to every herald.v1 connection of User: how a
	// mark made on one node updates the badge in the user's tabs on the
	// others.
	ControlPush ControlKind = iota + 1
	// ControlDisconnectUser closes every connection of User with Code and
	// Reason (a revoked token, a deleted account).
	ControlDisconnectUser
	// ControlPostToConn sends Data to connection Conn, as POST
	// /@connections/{id} does when the connection is on another node.
	ControlPostToConn
	// ControlDisconnectConn closes connection Conn with Code and Reason, as
	// DELETE /@connections/{id} does when the connection is on another
	// node.
	ControlDisconnectConn
	// ControlAckConn acknowledges, for connection Conn of User, everything
	// up to the offset in Data (ASCII decimal), as POST /v1/ack does when
	// an SSE client's ack reaches a node that does not hold its stream
	// (a load balancer without sticky sessions). The node holding Conn
	// counts it only if Conn is User's.
	ControlAckConn
	// ControlCounts carries, in Data, what a node tells the others about
	// the connections it holds — per-user changes, a full snapshot, a
	// heartbeat, a request for a snapshot — so that each node keeps a
	// replica of the others' per-user counts and a notify's reply counts
	// the cluster without asking the registry (package cluster owns the
	// format). It addresses neither a user nor a connection and reaches
	// every node; a node that does not know the kind ignores it.
	ControlCounts
	// ControlAckWait asks the nodes holding connections of User to report
	// when one of them acknowledges an offset: a `?wait=ack` notify on
	// another node. Data is the request (package stream owns the format:
	// a wait id, the offset, how long to watch).
	ControlAckWait
	// ControlAcked answers a ControlAckWait: Data names the wait and how
	// many connections acknowledged. It reaches every node; the one that
	// waits counts it.
	ControlAcked
)

func (k ControlKind) String() string {
	switch k {
	case ControlPush:
		return "push"
	case ControlDisconnectUser:
		return "disconnect_user"
	case ControlPostToConn:
		return "post_to_conn"
	case ControlDisconnectConn:
		return "disconnect_conn"
	case ControlAckConn:
		return "ack_conn"
	case ControlCounts:
		return "counts"
	case ControlAckWait:
		return "ack_wait"
	case ControlAcked:
		return "acked"
	}
	return fmt.Sprintf("ControlKind(%d)", uint8(k))
}

// Valid reports whether k is one of the defined kinds.
func (k ControlKind) Valid() bool { return k >= ControlPush && k <= ControlAcked }

// ByConn reports whether k addresses one connection (Conn) rather than
// every connection of a user (User).
func (k ControlKind) ByConn() bool {
	return k == ControlPostToConn || k == ControlDisconnectConn || k == ControlAckConn
}

// ByUser reports whether k addresses every connection of a user (User):
// a broker with BrokerInterest carries such a control to the nodes
// watching the user only. Every other kind reaches every node.
func (k ControlKind) ByUser() bool {
	return k == ControlPush || k == ControlDisconnectUser || k == ControlAckWait
}

// Control is a command one node sends the others about connections it does
// not hold. Which fields matter depends on Kind; the others are carried but
// ignored.
type Control struct {
	Kind ControlKind
	// User is the user whose connections ControlPush and
	// ControlDisconnectUser address, and the user ControlAckConn acks for.
	User UserID
	// Conn is the connection ControlPostToConn and ControlDisconnectConn
	// address. Connection ids are unique across the cluster, so exactly
	// one node acts on it.
	Conn ConnID
	// Code and Reason are the WebSocket close code and reason of the
	// disconnect kinds.
	Code   uint16
	Reason string
	// Data is the payload of ControlPush and ControlPostToConn, and the
	// offset of ControlAckConn.
	Data []byte
}

// CheckControl reports why a broker cannot send c: an invalid Kind, or no
// User (or Conn) for a kind that addresses one. Brokers call it before
// sending anything, so a command that could never act is caught where it
// was made rather than silently ignored on every other node.
func CheckControl(c Control) error {
	switch {
	case !c.Kind.Valid():
		return fmt.Errorf("control: kind %v is not valid", c.Kind)
	case c.Kind.ByConn() && c.Conn == "":
		return fmt.Errorf("control %v has no connection", c.Kind)
	case c.Kind == ControlAckConn && c.User == "":
		// The holder checks the ack is the connection's user's own.
		return fmt.Errorf("control %v has no user", c.Kind)
	case c.Kind.ByUser() && c.User == "":
		return fmt.Errorf("control %v has no user", c.Kind)
	}
	return nil
}

// CheckCommitted reports the first message a broker must not publish: a nil
// one, one without a user, or one that was not committed (no Offset or
// Epoch). Only committed messages may travel between nodes, because the
// receiving sessions rely on the offset to drop duplicates and detect gaps.
// Brokers call it before sending anything, so a Publish is all or nothing.
func CheckCommitted(msgs []*Message) error {
	if err := CheckMessages(msgs); err != nil {
		return err
	}
	for i, m := range msgs {
		if m.Offset == 0 || m.Epoch == "" {
			return fmt.Errorf("message %d is not committed (Offset %d, Epoch %q)", i, m.Offset, m.Epoch)
		}
	}
	return nil
}

// BrokerInterest may be implemented by a Broker that carries a user's
// messages only to the nodes that hold a connection of that user, rather
// than to every node: with N nodes, a notification then costs one
// delivery on the bus instead of N-1, and a node spends nothing on users
// it does not hold.
//
// The node calls Watch for every connection that opens and Unwatch for
// every one that closes (the broker counts them per user), so the calls of
// different connections need no ordering among themselves. Publish and the
// user Controls (ControlPush, ControlDisconnectUser, ControlAckWait) of a user reach the
// nodes watching that user; Broadcast and the other Controls (about a
// connection, a node's counts) still reach every node. A broker without BrokerInterest delivers everything
// everywhere, which is also correct.
type BrokerInterest interface {
	// Watch adds one connection of user on this node. When it returns nil
	// the subscription is in place: a Publish of user that another node
	// starts afterwards reaches this node's handler, so a session that
	// reads its stream's end after Watch misses nothing. For a user this
	// node already watches it returns at once, without a network round
	// trip. An error (the bus is down) leaves the count incremented: the
	// broker subscribes when it reconnects and then calls
	// HandleResubscribed, which makes the sessions catch up from the
	// Store.
	Watch(ctx context.Context, user UserID) error
	// Unwatch removes one connection of user; when none is left the
	// broker may stop receiving the user's messages (at once or later).
	// It never blocks on the network.
	Unwatch(user UserID)
}
