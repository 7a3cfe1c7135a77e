package memory

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/herald-gw/herald"
)

// Registry is an in-process herald.Registry: the directory of the nodes of
// one process, for tests and for running several hubs in one program. Its
// leases run on the clock given to NewRegistry, so tests can let one lapse
// without waiting. It is safe for concurrent use.
type Registry struct {
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	nodes map[string]time.Time // node → lease expiry
	conns map[herald.ConnID]herald.ConnInfo
}

// NewRegistry returns an empty Registry whose leases last ttl on clock now
// (time.Now when nil).
func NewRegistry(ttl time.Duration, now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{ttl: ttl, now: now, nodes: make(map[string]time.Time), conns: make(map[herald.ConnID]herald.ConnInfo)}
}

var _ herald.Registry = (*Registry)(nil)

// liveLocked reports whether node holds a live lease.
func (r *Registry) liveLocked(node string, now time.Time) bool {
	exp, ok := r.nodes[node]
	return ok && now.Before(exp)
}

// dropLocked removes node's entries.
func (r *Registry) dropLocked(node string) {
	for id, c := range r.conns {
		if c.Node == node {
			delete(r.conns, id)
		}
	}
}

// Heartbeat implements herald.Registry.
func (r *Registry) Heartbeat(ctx context.Context, node string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	fresh := !r.liveLocked(node, now)
	if fresh {
		r.dropLocked(node)
	}
	r.nodes[node] = now.Add(r.ttl)
	// The sweep: a lease lapsed for longer than a TTL takes its entries
	// with it, as the PostgreSQL registry's does.
	for n, exp := range r.nodes {
		if now.Sub(exp) > r.ttl {
			delete(r.nodes, n)
			r.dropLocked(n)
		}
	}
	return fresh, nil
}

// Sync implements herald.Registry.
func (r *Registry) Sync(ctx context.Context, node string, opened []herald.ConnInfo, closed []herald.ConnID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.putLocked(node, opened)
	for _, id := range closed {
		if c, ok := r.conns[id]; ok && c.Node == node {
			delete(r.conns, id)
		}
	}
	return nil
}

func (r *Registry) putLocked(node string, conns []herald.ConnInfo) {
	if _, ok := r.nodes[node]; !ok {
		// Not live until its first Heartbeat, like the PostgreSQL one.
		r.nodes[node] = time.Time{}
	}
	for _, c := range conns {
		c.Node = node
		if c.LastActiveAt.IsZero() {
			c.LastActiveAt = c.ConnectedAt
		}
		r.conns[c.ID] = c
	}
}

// Reset implements herald.Registry.
func (r *Registry) Reset(ctx context.Context, node string, conns []herald.ConnInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropLocked(node)
	r.putLocked(node, conns)
	return nil
}

// Leave implements herald.Registry.
func (r *Registry) Leave(ctx context.Context, node string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.nodes, node)
	r.dropLocked(node)
	return nil
}

// Conn implements herald.Registry.
func (r *Registry) Conn(ctx context.Context, id herald.ConnID) (herald.ConnInfo, error) {
	if err := ctx.Err(); err != nil {
		return herald.ConnInfo{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.conns[id]
	if !ok || !r.liveLocked(c.Node, r.now()) {
		return herald.ConnInfo{}, herald.Errorf(herald.ENotFound, "no live connection %q in the registry", id)
	}
	return c, nil
}

// UserConns implements herald.Registry.
func (r *Registry) UserConns(ctx context.Context, user herald.UserID) ([]herald.ConnInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	var out []herald.ConnInfo
	for _, c := range r.conns {
		if c.User == user && r.liveLocked(c.Node, now) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b herald.ConnInfo) int {
		return cmp.Or(a.ConnectedAt.Compare(b.ConnectedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Total implements herald.Registry.
func (r *Registry) Total(ctx context.Context, except string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	n := 0
	for _, c := range r.conns {
		if c.Node != except && r.liveLocked(c.Node, now) {
			n++
		}
	}
	return n, nil
}

// Nodes implements herald.Registry.
func (r *Registry) Nodes(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	var out []string
	for node := range r.nodes {
		if r.liveLocked(node, now) {
			out = append(out, node)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Count implements herald.Registry.
func (r *Registry) Count(ctx context.Context, users []herald.UserID, except string) (map[herald.UserID]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	want := make(map[herald.UserID]bool, len(users))
	for _, u := range users {
		want[u] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	out := make(map[herald.UserID]int)
	for _, c := range r.conns {
		if want[c.User] && c.Node != except && r.liveLocked(c.Node, now) {
			out[c.User]++
		}
	}
	return out, nil
}
