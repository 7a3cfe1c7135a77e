package cluster

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/hub"
)

// The methods below answer for the whole cluster. What this node holds is
// read from its hub, which is exact and current; only the other nodes'
// connections come from the registry.

func (n *Node) localHub() *hub.Hub {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.hub
}

// UserConns lists user's connections on every node, oldest first, each
// with its Node: this node's from its hub, the others' from the registry.
func (n *Node) UserConns(ctx context.Context, user herald.UserID) ([]herald.ConnInfo, error) {
	var out []herald.ConnInfo
	if h := n.localHub(); h != nil {
		for _, c := range h.UserConns(user) {
			info := c.Info()
			info.Node = n.cfg.Node
			out = append(out, info)
		}
	}
	all, err := n.cfg.Registry.UserConns(ctx, user)
	if err != nil {
		return out, fmt.Errorf("connection registry: %w", err)
	}
	for _, info := range all {
		if info.Node != n.cfg.Node {
			out = append(out, info)
		}
	}
	slices.SortStableFunc(out, func(a, b herald.ConnInfo) int {
		return cmp.Or(a.ConnectedAt.Compare(b.ConnectedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// CountElsewhere returns how many connections each of users holds on the
// other nodes; users with none are absent.
//
// Every reply to a notify asks this. It is answered from the replica of
// the other nodes' counts when that is complete (counts.go), else from
// the registry, where concurrent calls share one query (package
// coalesce), at the price of waiting for the query in flight.
func (n *Node) CountElsewhere(ctx context.Context, users []herald.UserID) (map[herald.UserID]int, error) {
	if m, ok := n.replicaCounts(users); ok {
		return m, nil
	}
	return n.counts.Lookup(ctx, users...)
}

// countRegistry is the registry's count of users on the other nodes: one
// query for the Batcher's waiting calls.
func (n *Node) countRegistry(users []herald.UserID) (map[herald.UserID]int, error) {
	// Bounded, and detached from any one caller: the callers wait with
	// their own contexts.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	all, err := n.cfg.Registry.Count(ctx, users, n.cfg.Node)
	if err != nil {
		return nil, fmt.Errorf("connection registry: %w", err)
	}
	return all, nil
}

// TotalElsewhere returns how many connections the other nodes hold.
func (n *Node) TotalElsewhere(ctx context.Context) (int, error) {
	if t, ok := n.replicaTotal(); ok {
		return t, nil
	}
	t, err := n.cfg.Registry.Total(ctx, n.cfg.Node)
	if err != nil {
		return 0, fmt.Errorf("connection registry: %w", err)
	}
	return t, nil
}

// Conn finds a connection another node holds. One this node would hold is
// not looked up (the hub is the truth for those): it is an ENotFound
// *herald.Error, as is one the registry does not list.
func (n *Node) Conn(ctx context.Context, id herald.ConnID) (herald.ConnInfo, error) {
	info, err := n.cfg.Registry.Conn(ctx, id)
	if err != nil {
		if herald.ErrorCodeOf(err) == herald.ENotFound {
			return herald.ConnInfo{}, err
		}
		return herald.ConnInfo{}, fmt.Errorf("connection registry: %w", err)
	}
	if info.Node == n.cfg.Node {
		// Listed for this node but not in its hub: closed a moment ago,
		// and the registry has not heard yet.
		return herald.ConnInfo{}, herald.Errorf(herald.ENotFound, "connection %q is gone", id)
	}
	return info, nil
}

// Post sends data to connection id on the node that holds it, as POST
// /@connections/{id} does; the broker carries it, so the reply means the
// bus took it, not that the socket did.
func (n *Node) Post(ctx context.Context, id herald.ConnID, data []byte) error {
	return n.cfg.Broker.Control(ctx, herald.Control{Kind: herald.ControlPostToConn, Conn: id, Data: data})
}

// Disconnect closes connection id, on the node that holds it, with code
// and reason.
func (n *Node) Disconnect(ctx context.Context, id herald.ConnID, code uint16, reason string) error {
	return n.cfg.Broker.Control(ctx, herald.Control{Kind: herald.ControlDisconnectConn, Conn: id, Code: code, Reason: reason})
}

// Ack hands user's ack of offset on connection id to the node that holds
// it, as POST /v1/ack does when the ack reaches another node than the
// stream (an SSE client behind a load balancer without sticky sessions).
// The holder counts it only for its own user and an offset it sent; the
// registry is asked first so that an unknown connection, or another
// user's, is an ENotFound here rather than a silent no-op there.
func (n *Node) Ack(ctx context.Context, user herald.UserID, id herald.ConnID, offset uint64) error {
	info, err := n.Conn(ctx, id)
	if err != nil {
		return err
	}
	if info.User != user {
		// Reported as missing, not forbidden: ids are not to be probed.
		return herald.Errorf(herald.ENotFound, "no open connection %q of this user", id)
	}
	return n.cfg.Broker.Control(ctx, herald.Control{Kind: herald.ControlAckConn, User: user, Conn: id, Data: strconv.AppendUint(nil, offset, 10)})
}
