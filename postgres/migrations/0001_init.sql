-- 0001: the initial schema. Never edit this file once released: databases in
-- the field have run it. Add a new numbered file instead.

-- meta holds store-wide values; today only the history epoch, which Open
-- creates once (random, 16 hex characters) and every node then reads.
CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- streams has one row per user ever written to. last_offset is the newest
-- offset ever assigned: Append allocates offsets by adding to it in the
-- transaction that inserts the messages, so the row lock orders the writers
-- of one user across every node, and a rolled-back Append gives its offsets
-- back. trimmed_upto is the newest offset retention has deleted (0: none),
-- written in the same transaction as the delete, so the retained messages
-- are exactly trimmed_upto+1 .. last_offset and Bounds is one row lookup.
CREATE TABLE streams (
    user_id      text COLLATE "C" PRIMARY KEY,
    last_offset  bigint NOT NULL,
    trimmed_upto bigint NOT NULL DEFAULT 0,
    CHECK (0 <= trimmed_upto AND trimmed_upto <= last_offset)
) WITH (fillfactor = 70);
-- Every Append updates its users' rows here. last_offset is in no index, so
-- the update can be HOT (a new row version on the same page, no index
-- entry) as long as the page has room: the free 30% keeps it so between
-- vacuums.

-- messages holds every retained message. The primary key (user_id, offset)
-- serves Since, Inbox, Counts, Mark of all and the retention deletes: each is
-- a range of one user's entries. ts is the message time in Unix nanoseconds
-- (timestamptz keeps only microseconds, and a message's Time must come back
-- exactly). flags are the inbox bits: 1 seen, 2 read, 4 archived.
--
-- Ids and user ids are compared byte by byte (COLLATE "C"): they are
-- identifiers, never sorted for people, and a linguistic collation (the
-- database default may be en_US.UTF-8) costs a library call per comparison
-- on every index descent. It is also the order in which Append locks
-- stream rows, the byte order Go sorts strings in.
CREATE TABLE messages (
    user_id  text COLLATE "C" NOT NULL,
    "offset" bigint   NOT NULL,
    id       text COLLATE "C" NOT NULL,
    ts       bigint   NOT NULL,
    flags    smallint NOT NULL DEFAULT 0,
    data     bytea,
    PRIMARY KEY (user_id, "offset")
);

-- Mark by id. Ids Herald makes start with the time (herald.NewMessageID),
-- so, like ts below, they land at the right edge of the index: a batch of
-- inserts dirties a page or two of it, not one page per message as an
-- index led by user_id would.
CREATE INDEX messages_by_id ON messages (id);

-- Age retention reads the expired range; ts grows, so inserts land at the
-- right edge of this index.
CREATE INDEX messages_by_ts ON messages (ts);
