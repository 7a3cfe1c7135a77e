-- 0002: the cluster's connection registry (herald.Registry, see
-- registry.go). Never edit this file once released: add a new numbered file.

-- registry_nodes has one row per node that has heartbeated or written
-- entries: its lease. A node's entries count only while expires_at is in
-- the future by the database's clock (now()), so the nodes' own clocks do
-- not matter. Heartbeat sets expires_at to now() + TTL; Leave deletes the
-- row; a row expired for longer than a TTL is swept by other nodes'
-- heartbeats. The table holds one small row per node and is updated every
-- TTL/3 per node; expires_at is in no index, so the updates are HOT.
CREATE TABLE registry_nodes (
    node       text COLLATE "C" PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

-- registry_conns has one row per connection a node reported (Sync,
-- Reset). Readers join it to registry_nodes and keep only live leases, so
-- a dead node's rows are harmless until the sweep removes them; deleting a
-- node row removes its connections with it (ON DELETE CASCADE).
--
-- Ids are compared byte by byte (COLLATE "C"), as in 0001: they are
-- identifiers, and UserConns orders equal connected_at by conn_id in the
-- byte order Go uses. Nothing here is NULL: ConnInfo's fields are plain
-- Go values, and an empty string is stored as one.
CREATE TABLE registry_conns (
    conn_id        text COLLATE "C" PRIMARY KEY,
    node           text COLLATE "C" NOT NULL REFERENCES registry_nodes (node) ON DELETE CASCADE,
    user_id        text COLLATE "C" NOT NULL,
    protocol       text NOT NULL,
    connected_at   timestamptz NOT NULL,
    last_active_at timestamptz NOT NULL,
    source_ip      text NOT NULL,
    user_agent     text NOT NULL
);

-- UserConns and Count look connections up by user.
CREATE INDEX registry_conns_by_user ON registry_conns (user_id);

-- Reset, Leave, a fresh Heartbeat and the sweep take a node's rows; the
-- foreign key's cascade needs this too, or deleting a node row would scan
-- the whole table.
CREATE INDEX registry_conns_by_node ON registry_conns (node);
