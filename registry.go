package herald

import (
	"context"
	"time"
)

// Registry is the cluster's directory of live connections: which node holds
// which connection of which user. Each node's hub knows its own connections
// exactly; the Registry is how a node answers for the others — listing a
// user's connections, finding the node of a connection id for
// /@connections, counting a user's connections cluster-wide.
//
// # Leases, not goodbyes
//
// A node that dies says nothing, so its entries must go by themselves. Each
// node holds a lease it renews with Heartbeat; entries count only while
// their node's lease is live, and a lease lapses TTL after its last renewal
// (the TTL is the implementation's, fixed when it is opened). Readers
// therefore never list a dead node's connections more than TTL after it
// stopped renewing, whatever became of its rows; the implementation removes
// the rows themselves later (a sweep), which readers do not wait for.
//
// # Eventually exact
//
// A node tells the Registry of its connections in batches (Sync), so a
// connection opened a moment ago may not be listed yet elsewhere, and one
// just closed may still be. A node reads its own connections from its hub,
// never from here. When a node's writes failed (the registry was down) or
// its lease lapsed (it could not renew in time), it replaces all its
// entries at once with Reset, so the Registry converges on what the node
// really holds.
//
// Implementations (memory, postgres) pass the suite in package
// registrytest. All methods are safe for concurrent use.
type Registry interface {
	// Heartbeat renews node's lease. fresh reports that the Registry held
	// no live lease for node before this call, or cannot tell that it did
	// (a retried write) — the node is new, or its lease lapsed and its
	// entries may be gone — so the node must Reset its entries; until it
	// does, what was listed for it is not trustworthy.
	Heartbeat(ctx context.Context, node string) (fresh bool, err error)
	// Sync records that conns opened and ids closed on node, in that
	// order: an id in both (opened and closed since the last Sync) ends up
	// absent. Entries carry their own Node, which Sync sets to node. Sync
	// and Reset before the node's first Heartbeat succeed but list
	// nothing: that Heartbeat reports fresh and drops what they wrote.
	Sync(ctx context.Context, node string, opened []ConnInfo, closed []ConnID) error
	// Reset replaces every entry of node with conns, setting their Node.
	Reset(ctx context.Context, node string, conns []ConnInfo) error
	// Leave ends node's lease and removes its entries at once: a clean
	// shutdown, after which readers no longer list them.
	Leave(ctx context.Context, node string) error
	// Conn returns the live connection id, with its Node set. A
	// connection that is not registered, or whose node's lease lapsed, is
	// an ENotFound *Error.
	Conn(ctx context.Context, id ConnID) (ConnInfo, error)
	// UserConns lists user's live connections on every node, oldest
	// first, each with its Node.
	UserConns(ctx context.Context, user UserID) ([]ConnInfo, error)
	// Count returns how many live connections each of users holds on
	// nodes other than except ("" counts every node). Users without any
	// are absent from the map.
	Count(ctx context.Context, users []UserID, except string) (map[UserID]int, error)
	// Total returns how many live connections nodes other than except
	// hold ("" counts every node): what a broadcast reaches beyond a node.
	Total(ctx context.Context, except string) (int, error)
	// Nodes lists the nodes holding a live lease, sorted: the cluster's
	// members as far as the registry knows. A node learns from it which
	// others it must have heard from before it trusts its own replica of
	// their counts (package cluster).
	Nodes(ctx context.Context) ([]string, error)
}

// DefaultRegistryTTL is how long a node's lease lasts without a heartbeat
// unless configured otherwise: nodes renew it every third of it, so one
// lost heartbeat is survived and a dead node's connections stop being
// listed within this time.
const DefaultRegistryTTL = 15 * time.Second
