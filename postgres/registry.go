package postgres

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/herald-gw/herald"
)

// Registry is a herald.Registry in the Store's database: the tables
// registry_nodes (one lease per node) and registry_conns (one row per
// connection), see migrations/0002_registry.sql. It shares the Store's
// pool, so it costs no connections of its own, and fails like the Store:
// an unreachable server is an EUnavailable error, a closed Store ErrClosed.
//
// # Leases on the database's clock
//
// A lease's expiry is written and compared with the server's now(), never
// a node's clock: nodes whose clocks disagree still agree on which leases
// are live. Readers join registry_conns to registry_nodes and keep only
// rows whose node's expires_at is still ahead, so a dead node's
// connections stop being listed TTL after its last heartbeat whether or
// not its rows are gone yet.
//
// # Writes before the first Heartbeat
//
// Sync and Reset for a node that has no lease row create one that is
// already expired (expires_at = now()): the write succeeds, but its
// entries are not listed until the node's Heartbeat — which then finds no
// live lease, reports fresh, and drops them, so the node's Reset after it
// is what gets listed. A node therefore Heartbeats first and Resets when
// told fresh; writing before that is harmless, not an error.
//
// # Sweep
//
// Every Heartbeat also deletes, in a statement of its own, what leases
// lapsed more than a TTL ago left behind: at most sweepConns connection
// rows and sweepNodes node rows per call (a node row goes once its
// connections are gone), so one Heartbeat never deletes an unbounded
// number of rows, and a dead node with many connections is cleared over
// several heartbeats of the live ones. A failed sweep is logged and
// retried by the next Heartbeat; readers never depend on it.
type Registry struct {
	s   *Store
	ttl time.Duration
}

var _ herald.Registry = (*Registry)(nil)

// Registry returns the cluster connection registry in the Store's database,
// whose leases last ttl (herald.DefaultRegistryTTL if ttl <= 0). Nodes
// should share one ttl, but nothing breaks if they do not: each lease runs
// for its own node's ttl, and the sweep waits the sweeping node's ttl past
// a lapse, when readers already ignore the rows. It uses the Store's pool
// and works until the Store is closed.
func (s *Store) Registry(ttl time.Duration) *Registry {
	if ttl <= 0 {
		ttl = herald.DefaultRegistryTTL
	}
	return &Registry{s: s, ttl: ttl}
}

// Sweep bounds: rows one Heartbeat's sweep deletes at most.
const (
	sweepConns = 5000
	sweepNodes = 100
)

// heartbeatSQL renews the lease of $1 for $2 microseconds and reports
// whether it was fresh: no row, or one already expired. All parts of a
// statement see one snapshot, so old reads the lease as it was before the
// upsert. When fresh, the node's rows are deleted in the same statement:
// they may be stale (a sweep may have removed some of them already), and
// the node's Reset is about to replace them anyway.
const heartbeatSQL = `WITH old AS (
	SELECT expires_at > now() AS live FROM registry_nodes WHERE node = $1
), lease AS (
	INSERT INTO registry_nodes (node, expires_at) VALUES ($1, now() + $2 * interval '1 microsecond')
	ON CONFLICT (node) DO UPDATE SET expires_at = excluded.expires_at
), dropped AS (
	DELETE FROM registry_conns WHERE node = $1 AND NOT COALESCE((SELECT live FROM old), false)
)
SELECT NOT COALESCE((SELECT live FROM old), false)`

// sweepSQL deletes up to $2 connections and $3 leases whose lease lapsed
// more than $1 microseconds ago. It starts from registry_nodes (a row per
// node) and reaches connections through the node index, so a sweep with
// nothing to do reads a handful of rows whatever the table's size. Rows
// another sweep holds are skipped (SKIP LOCKED), so two nodes sweeping at
// once neither wait for nor deadlock with each other. A lease goes only
// once none of its connections is left (seen from this statement's
// snapshot, so a lease goes one sweep after its last connections); the
// outer condition on expires_at is checked again on the newest row
// version, so a lease renewed meanwhile stays.
const sweepSQL = `WITH conns AS (
	DELETE FROM registry_conns WHERE ctid = ANY(ARRAY(
		SELECT ctid FROM registry_conns
		WHERE node = ANY(ARRAY(SELECT node FROM registry_nodes WHERE expires_at < now() - $1 * interval '1 microsecond'))
		LIMIT $2 FOR UPDATE SKIP LOCKED))
	RETURNING 1
), nodes AS (
	DELETE FROM registry_nodes WHERE ctid = ANY(ARRAY(
		SELECT n.ctid FROM registry_nodes n
		WHERE n.expires_at < now() - $1 * interval '1 microsecond'
		AND NOT EXISTS (SELECT 1 FROM registry_conns c WHERE c.node = n.node)
		LIMIT $3 FOR UPDATE SKIP LOCKED))
	AND expires_at < now() - $1 * interval '1 microsecond'
	RETURNING 1
)
SELECT (SELECT count(*) FROM conns), (SELECT count(*) FROM nodes)`

// Heartbeat renews node's lease for the Registry's TTL and reports whether
// it was fresh (see herald.Registry); a fresh lease's old entries are
// deleted with it. Then it sweeps (see Registry).
//
// A Heartbeat retried after a lost connection cannot tell whether the lost
// attempt ran: if it did, it renewed the lease and dropped the entries,
// and the retry would find the lease live. So a Heartbeat that needed more
// than one attempt reports fresh, and the node Resets: a needless Reset
// costs a write, a missed one would leave the node's entries gone.
func (r *Registry) Heartbeat(ctx context.Context, node string) (fresh bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := checkNode(node); err != nil {
		return false, err
	}
	attempts := 0
	err = r.s.retried(ctx, "registry heartbeat", func(ctx context.Context) error {
		attempts++
		return r.s.pool.QueryRow(ctx, heartbeatSQL, node, r.ttl.Microseconds()).Scan(&fresh)
	})
	if err != nil {
		return false, err
	}
	r.sweep(ctx)
	return fresh || attempts > 1, nil
}

// sweep runs sweepSQL once, logging what it removed or why it failed.
func (r *Registry) sweep(ctx context.Context) {
	var conns, nodes int64
	err := r.s.pool.QueryRow(ctx, sweepSQL, r.ttl.Microseconds(), sweepConns, sweepNodes).Scan(&conns, &nodes)
	switch {
	case err != nil && ctx.Err() == nil:
		r.s.log.Warn("postgres: registry sweep failed; the next heartbeat tries again", "err", err)
	case conns > 0 || nodes > 0:
		r.s.log.Info("postgres: registry swept what lapsed leases left", "conns", conns, "nodes", nodes)
	}
}

// ensureNodeSQL creates node $1's lease row, expired, if it has none: the
// foreign key of registry_conns needs it, and it lists nothing until a
// Heartbeat. An existing row is left alone (DO NOTHING neither writes nor
// locks it).
const ensureNodeSQL = `INSERT INTO registry_nodes (node, expires_at) VALUES ($1, now()) ON CONFLICT (node) DO NOTHING`

// upsertSQL writes the connections of node $1 given as arrays, one element
// per connection. A connection id already registered is updated (moved to
// $1 if another node had it): a Sync repeated after a lost answer, or a
// Reset of what is already there, must not fail.
const upsertSQL = `INSERT INTO registry_conns (conn_id, node, user_id, protocol, connected_at, last_active_at, source_ip, user_agent)
	SELECT id, $1, u, p, ca, la, ip, ua
	FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::text[], $8::text[]) AS t(id, u, p, ca, la, ip, ua)
	ON CONFLICT (conn_id) DO UPDATE SET node = excluded.node, user_id = excluded.user_id, protocol = excluded.protocol,
		connected_at = excluded.connected_at, last_active_at = excluded.last_active_at,
		source_ip = excluded.source_ip, user_agent = excluded.user_agent`

// closeSQL removes ids $2 of node $1; another node's entry of the same id
// stays.
const closeSQL = `DELETE FROM registry_conns WHERE conn_id = ANY($2::text[]) AND node = $1`

// resetChunk is how many connections one upsert statement of a Reset
// carries: the statements share one transaction, so the chunks only bound
// the size of one statement's arrays.
const resetChunk = 10000

// Sync records conns opened and ids closed on node, in one transaction:
// one upsert of the opened, then one delete of the closed. Both are sent
// sorted by id, so concurrent Syncs lock their rows in one order.
//
// Ids and user ids must be text PostgreSQL can hold (valid UTF-8 without
// NUL bytes), as every id made by herald.NewConnID and every user id that
// passed herald.CheckUserID is; otherwise Sync is an EInvalidRequest error
// and writes nothing. Protocol, SourceIP and UserAgent are free text from
// the client: bytes that are not valid UTF-8 become U+FFFD and NUL bytes
// are dropped, so one odd User-Agent cannot fail a whole batch.
func (r *Registry) Sync(ctx context.Context, node string, opened []herald.ConnInfo, closed []herald.ConnID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkNode(node); err != nil {
		return err
	}
	rows, err := newConnArrays(opened)
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(closed))
	for _, id := range closed {
		if validText(string(id)) { // others cannot be stored, so there is nothing to remove
			ids = append(ids, string(id))
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(rows.id) == 0 && len(ids) == 0 {
		return r.s.checkOpen()
	}
	return r.write(ctx, "registry sync", func() *pgx.Batch {
		b := &pgx.Batch{}
		if len(rows.id) > 0 {
			b.Queue(ensureNodeSQL, node)
			rows.queue(b, node, 0, len(rows.id))
		}
		if len(ids) > 0 {
			b.Queue(closeSQL, node, ids)
		}
		return b
	})
}

// Reset replaces node's entries with conns in one transaction: readers see
// either the old entries or the new ones. The new ones go in chunks of
// resetChunk rows, all in that transaction. Text is checked and cleaned as
// for Sync.
func (r *Registry) Reset(ctx context.Context, node string, conns []herald.ConnInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkNode(node); err != nil {
		return err
	}
	rows, err := newConnArrays(conns)
	if err != nil {
		return err
	}
	return r.write(ctx, "registry reset", func() *pgx.Batch {
		b := &pgx.Batch{}
		b.Queue(ensureNodeSQL, node)
		b.Queue("DELETE FROM registry_conns WHERE node = $1", node)
		for i := 0; i < len(rows.id); i += resetChunk {
			rows.queue(b, node, i, min(i+resetChunk, len(rows.id)))
		}
		return b
	})
}

// Leave deletes node's lease and, through the foreign key's cascade, its
// entries, in one statement. A node that comes back is fresh.
func (r *Registry) Leave(ctx context.Context, node string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkNode(node); err != nil {
		return err
	}
	return r.s.retried(ctx, "registry leave", func(ctx context.Context) error {
		_, err := r.s.pool.Exec(ctx, "DELETE FROM registry_nodes WHERE node = $1", node)
		return err
	})
}

// write sends the statements of batch in one round trip and one implicit
// transaction (pgx sends a batch with a single Sync message, so the server
// runs it as one transaction): all of them take effect or none. The work
// is idempotent, so it is retried like a read. A foreign key violation
// means a sweep deleted the node's expired lease row between ensureNodeSQL
// and the insert (a node that has not heartbeated for two TTLs yet
// writes): the next attempt creates the row again, so it is retried too,
// at most twice.
func (r *Registry) write(ctx context.Context, op string, batch func() *pgx.Batch) error {
	var err error
	for range 3 {
		err = r.s.retried(ctx, op, func(ctx context.Context) error {
			return r.s.pool.SendBatch(ctx, batch()).Close()
		})
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "23503" { // foreign_key_violation
			return err
		}
	}
	return err
}

// connSQL is the start of every read: connections of live leases only.
const connSQL = `SELECT c.conn_id, c.node, c.user_id, c.protocol, c.connected_at, c.last_active_at, c.source_ip, c.user_agent
	FROM registry_conns c JOIN registry_nodes n ON n.node = c.node AND n.expires_at > now()`

// Conn returns the live connection id with its Node, or an ENotFound error.
func (r *Registry) Conn(ctx context.Context, id herald.ConnID) (herald.ConnInfo, error) {
	if err := ctx.Err(); err != nil {
		return herald.ConnInfo{}, err
	}
	notFound := herald.Errorf(herald.ENotFound, "no live connection %q in the registry", id)
	if !validText(string(id)) {
		if err := r.s.checkOpen(); err != nil {
			return herald.ConnInfo{}, err
		}
		return herald.ConnInfo{}, notFound
	}
	var out []herald.ConnInfo
	err := r.s.retried(ctx, "registry conn", func(ctx context.Context) error {
		var err error
		out, err = r.query(ctx, connSQL+" WHERE c.conn_id = $1", string(id))
		return err
	})
	if err != nil {
		return herald.ConnInfo{}, err
	}
	if len(out) == 0 {
		return herald.ConnInfo{}, notFound
	}
	return out[0], nil
}

// UserConns lists user's live connections on every node, oldest first
// (by ConnectedAt to the microsecond, then by id).
func (r *Registry) UserConns(ctx context.Context, user herald.UserID) ([]herald.ConnInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !validText(string(user)) {
		return nil, r.s.checkOpen()
	}
	var out []herald.ConnInfo
	err := r.s.retried(ctx, "registry user conns", func(ctx context.Context) error {
		var err error
		out, err = r.query(ctx, connSQL+" WHERE c.user_id = $1 ORDER BY c.connected_at, c.conn_id", string(user))
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// countSQL counts the live connections of users $1 on nodes other than $2
// in one query: the user index finds their rows, the join keeps the live
// leases' (registry_nodes holds a row per node, so it is cheap).
const countSQL = `SELECT c.user_id, count(*)
	FROM registry_conns c JOIN registry_nodes n ON n.node = c.node AND n.expires_at > now()
	WHERE c.user_id = ANY($1::text[]) AND c.node <> $2
	GROUP BY c.user_id`

const totalSQL = `SELECT count(*)
	FROM registry_conns c JOIN registry_nodes n ON n.node = c.node AND n.expires_at > now()
	WHERE c.node <> $1`

const nodesSQL = `SELECT node FROM registry_nodes WHERE expires_at > now() ORDER BY node`

// Nodes lists the nodes holding a live lease, sorted.
func (r *Registry) Nodes(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []string
	err := r.s.retried(ctx, "registry nodes", func(ctx context.Context) error {
		out = out[:0]
		rows, err := r.s.pool.Query(ctx, nodesSQL)
		if err != nil {
			return err
		}
		var node string
		_, err = pgx.ForEachRow(rows, []any{&node}, func() error {
			out = append(out, node)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Total returns how many live connections nodes other than except hold
// ("" counts every node).
func (r *Registry) Total(ctx context.Context, except string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if !validText(except) {
		except = "" // no node has this name, so it excludes nothing
	}
	var n int64
	err := r.s.retried(ctx, "registry total", func(ctx context.Context) error {
		return r.s.pool.QueryRow(ctx, totalSQL, except).Scan(&n)
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

// Count returns how many live connections each of users holds on nodes
// other than except ("" counts every node); users without any are absent.
func (r *Registry) Count(ctx context.Context, users []herald.UserID, except string) (map[herald.UserID]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	want := make([]string, 0, len(users))
	for _, u := range users {
		if validText(string(u)) { // others cannot have connections
			want = append(want, string(u))
		}
	}
	slices.Sort(want)
	want = slices.Compact(want)
	out := make(map[herald.UserID]int)
	if len(want) == 0 {
		return out, r.s.checkOpen()
	}
	if !validText(except) {
		except = "" // no node has this name, so it excludes nothing
	}
	err := r.s.retried(ctx, "registry count", func(ctx context.Context) error {
		clear(out)
		rows, err := r.s.pool.Query(ctx, countSQL, want, except)
		if err != nil {
			return err
		}
		var (
			user string
			n    int64
		)
		_, err = pgx.ForEachRow(rows, []any{&user, &n}, func() error {
			out[herald.UserID(user)] = int(n)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// query runs a read of connSQL's columns.
func (r *Registry) query(ctx context.Context, sql string, args ...any) ([]herald.ConnInfo, error) {
	rows, err := r.s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	var (
		out                       []herald.ConnInfo
		id, node, user            string
		proto, ip, ua             string
		connectedAt, lastActiveAt time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &node, &user, &proto, &connectedAt, &lastActiveAt, &ip, &ua}, func() error {
		out = append(out, herald.ConnInfo{
			ID: herald.ConnID(id), User: herald.UserID(user), Protocol: proto,
			ConnectedAt: connectedAt, LastActiveAt: lastActiveAt,
			SourceIP: ip, UserAgent: ua, Node: node,
		})
		return nil
	})
	return out, err
}

// checkNode refuses a node name the tables cannot hold, or "": Count
// reads "" as "no node excluded", so no node may be called that.
func checkNode(node string) error {
	if node == "" || !validText(node) {
		return herald.Errorf(herald.EInvalidRequest, "registry node name %q is empty, not UTF-8 or holds a NUL byte", node)
	}
	return nil
}

// cleanText makes client-supplied text storable: invalid UTF-8 becomes
// U+FFFD and NUL bytes go.
func cleanText(s string) string {
	if validText(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// connArrays are the columns of connections to write, one element per
// connection, deduplicated by id (the last one given wins, as if written
// one after the other) and sorted by id, the order their rows are locked
// in.
type connArrays struct {
	id, user, proto, ip, ua []string
	connectedAt, lastActive []time.Time
}

func newConnArrays(conns []herald.ConnInfo) (*connArrays, error) {
	sorted := make([]herald.ConnInfo, 0, len(conns))
	for i, c := range conns {
		if !validText(string(c.ID)) || !validText(string(c.User)) || c.ID == "" {
			return nil, herald.Errorf(herald.EInvalidRequest, "connection %d: its id or user id is empty, not UTF-8 or holds a NUL byte", i)
		}
		sorted = append(sorted, c)
	}
	// A stable sort keeps duplicates in the order given; the last of each
	// run is kept.
	slices.SortStableFunc(sorted, func(a, b herald.ConnInfo) int { return cmp.Compare(a.ID, b.ID) })
	a := &connArrays{}
	for i, c := range sorted {
		if i+1 < len(sorted) && sorted[i+1].ID == c.ID {
			continue
		}
		last := c.LastActiveAt
		if last.IsZero() {
			// Nothing better is known: the connection was last active
			// when it opened.
			last = c.ConnectedAt
		}
		a.id = append(a.id, string(c.ID))
		a.user = append(a.user, string(c.User))
		a.proto = append(a.proto, cleanText(c.Protocol))
		a.connectedAt = append(a.connectedAt, c.ConnectedAt)
		a.lastActive = append(a.lastActive, last)
		a.ip = append(a.ip, cleanText(c.SourceIP))
		a.ua = append(a.ua, cleanText(c.UserAgent))
	}
	return a, nil
}

// queue adds the upsert of rows [from, to) of node to b.
func (a *connArrays) queue(b *pgx.Batch, node string, from, to int) {
	b.Queue(upsertSQL, node, a.id[from:to], a.user[from:to], a.proto[from:to],
		a.connectedAt[from:to], a.lastActive[from:to], a.ip[from:to], a.ua[from:to])
}
