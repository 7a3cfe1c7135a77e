// Package herald holds Herald's domain: the types every other package speaks
// (users, connections, messages), the interfaces that let one node become a
// cluster or change its storage engine (Store), and the error codes the HTTP
// API reports. It imports only the standard library, so any package may
// import it and none of its dependencies leak into the core.
package herald

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// UserID identifies a user of the application Herald serves. It is the
// token's "sub" claim. Numeric ids such as the original system's 42 are just
// strings ("42").
type UserID string

// ConnID identifies one WebSocket connection. It is URL-safe so it can sit in
// the path of the API Gateway management API (/@connections/{id}).
type ConnID string

// Protocol is the wire format a connection negotiated.
type Protocol uint8

const (
	// ProtocolRaw delivers each notification as one text frame whose bytes
	// are exactly the payload the server sent; it is what a plain
	// `new WebSocket(url + "?token=" + token)` gets.
	ProtocolRaw Protocol = iota
	// ProtocolV1 ("herald.v1") wraps each notification in a JSON envelope
	// and carries control messages (ping, reset, counts, ...).
	ProtocolV1
)

// SubprotocolV1 is the WebSocket subprotocol that selects ProtocolV1.
const SubprotocolV1 = "herald.v1"

// SubprotocolTokenPrefix carries a token in Sec-WebSocket-Protocol, for
// browsers that cannot set headers and do not want the token in the URL.
const SubprotocolTokenPrefix = "herald.token."

func (p Protocol) String() string {
	if p == ProtocolV1 {
		return SubprotocolV1
	}
	return "raw"
}

// ConnInfo describes a connection as the server APIs report it.
type ConnInfo struct {
	ID           ConnID    `json:"id"`
	User         UserID    `json:"user_id"`
	Protocol     string    `json:"protocol"`
	ConnectedAt  time.Time `json:"connected_at"`
	LastActiveAt time.Time `json:"last_active_at"`
	SourceIP     string    `json:"source_ip"`
	UserAgent    string    `json:"user_agent"`
	// Node is the cluster node holding the connection (HERALD_NODE_ID).
	// Set in cluster listings; empty on a single node.
	Node string `json:"node,omitempty"`
}

// Message is one notification to one user. Data holds the payload bytes as
// the API server sent them: raw connections receive exactly these bytes.
type Message struct {
	ID     string    // unique, assigned by Herald
	User   UserID    // the stream it belongs to
	Offset uint64    // position in the user's stream, assigned by the Store (0 = not stored)
	Epoch  string    // the Store's history epoch, assigned with Offset
	Time   time.Time // when Herald accepted it
	Data   []byte    // payload bytes
}

// Store persists each user's ordered message stream and the inbox state of
// every message in it. Implementations live in their own packages (sqlite,
// memory, postgres) so the core stays free of drivers, and share one
// behaviour test suite.
//
// # Streams and offsets
//
// Every user has one stream. Append gives each message the next Offset of
// its user's stream: 1, 2, 3, ... with no gaps, in commit order. Offsets
// are never reused: retention (Trim) deletes messages from the front of a
// stream, but the next Append still continues after the newest offset ever
// assigned. So a client that remembers the last offset it saw can resume
// with Since and miss nothing, and can tell from Bounds when what it missed
// has been trimmed away (first > its offset + 1) and it must refetch.
//
// # Inbox
//
// Each retained message also has three flags a user changes with Mark:
// seen (it was shown, e.g. in a dropdown), read (it was opened) and
// archived (it left the inbox). They only grow: read implies seen, archived
// implies read and seen, and nothing clears them. Inbox lists messages with
// their flags, Counts gives the badge numbers.
type Store interface {
	// Append stores msgs durably and returns after they are committed, so
	// a caller may acknowledge them. It assigns each message the next
	// Offset of its user's stream, in slice order, and the Store's Epoch,
	// and fills in ID (NewMessageID) and Time (now) when they are empty. A
	// message is stored with no inbox flags set (unseen, unread). Append
	// is atomic: on error no message was stored and every Offset is 0. If
	// ctx ends first Append may return ctx.Err(), but only when nothing was
	// stored.
	//
	// Append promises nothing about delivery order: two Appends racing
	// for one user may return in either order. Sessions order by offset
	// (and fetch what they lack from the Store), so a Store over the
	// network needs no commit callbacks to keep streams ordered.
	Append(ctx context.Context, msgs []*Message) error
	// Since returns up to limit retained messages of user with Offset >
	// since, in offset order: a replay for a client resuming after since.
	// A limit <= 0 or above the Store's maximum (1,000 for the stores in
	// this module) means that maximum.
	Since(ctx context.Context, user UserID, since uint64, limit int) ([]Message, error)
	// Bounds reports the user's stream: first is the oldest retained
	// offset (0 when nothing is retained) and last the newest offset ever
	// assigned (0 for a user never written to). Retention trims from the
	// front, so the retained messages are exactly first..last; last never
	// goes back, not even when every message has been trimmed.
	Bounds(ctx context.Context, user UserID) (first, last uint64, err error)
	// Trim applies retention and returns how many messages it deleted. Per
	// user it keeps at most keep newest messages (keep <= 0: no count
	// limit) and drops the messages whose Time is before before (zero: no
	// age limit), together with any older offsets of the same user, so a
	// stream is only ever trimmed from the front. Trim does not change any
	// stream's last offset. It may commit in several steps so that Appends
	// are not held up; a Trim that fails part way leaves what it already
	// deleted deleted, which is harmless since retention only ever
	// deletes what a later Trim would delete too.
	Trim(ctx context.Context, keep int, before time.Time) (int, error)
	// Inbox lists the user's retained messages with their flags, newest
	// first, filtered by q.Status and paged by q.Before and q.Limit.
	Inbox(ctx context.Context, q InboxQuery) ([]InboxItem, error)
	// Mark sets mark on the user's messages with the given ids, or on all
	// the user's retained messages when all is true (ids are then
	// ignored). It returns the ids of the messages whose flags changed, so
	// a caller can tell the user's other tabs; a message that already had
	// the flag is not listed, and unknown ids (or another user's) are
	// ignored. Marking read also sets seen; archiving also sets read and
	// seen. The order of changed is unspecified. A mark other than the
	// three is an EInvalidRequest error, as is an unknown q.Status for
	// Inbox.
	Mark(ctx context.Context, user UserID, mark Mark, ids []string, all bool) (changed []string, err error)
	// Counts returns the user's unread and unseen counts over the
	// retained messages that are not archived: the numbers for a badge.
	Counts(ctx context.Context, user UserID) (InboxCounts, error)
	// Epoch identifies the history held by the Store. It changes only when
	// history was lost (a new or memory-only store), telling resuming
	// clients their offsets no longer mean anything.
	Epoch() string
	// Close flushes pending writes and releases the Store. Later calls
	// fail with an EUnavailable error.
	Close() error
}

// InboxStatus selects which messages Inbox lists. The zero value is
// InboxAll, the inbox as a user sees it.
type InboxStatus uint8

const (
	// InboxAll lists the messages that are not archived, read or not.
	InboxAll InboxStatus = iota
	// InboxUnread lists the messages that are neither read nor archived.
	InboxUnread
	// InboxArchived lists only the archived messages.
	InboxArchived
)

func (s InboxStatus) String() string {
	switch s {
	case InboxAll:
		return "all"
	case InboxUnread:
		return "unread"
	case InboxArchived:
		return "archived"
	}
	return fmt.Sprintf("InboxStatus(%d)", uint8(s))
}

// Inbox page sizes: an InboxQuery.Limit <= 0 means DefaultInboxLimit, one
// above MaxInboxLimit means MaxInboxLimit.
const (
	DefaultInboxLimit = 50
	MaxInboxLimit     = 200
)

// InboxQuery asks for one page of a user's inbox.
type InboxQuery struct {
	User   UserID
	Status InboxStatus
	// Before pages backwards: only messages with Offset < Before are
	// listed; 0 starts from the newest. For the next (older) page pass the
	// Offset of the last item of this one.
	Before uint64
	// Limit is the page size: <= 0 means DefaultInboxLimit, and it is
	// capped at MaxInboxLimit.
	Limit int
}

// PageSize returns q.Limit brought into range as described on Limit.
func (q InboxQuery) PageSize() int {
	switch {
	case q.Limit <= 0:
		return DefaultInboxLimit
	case q.Limit > MaxInboxLimit:
		return MaxInboxLimit
	}
	return q.Limit
}

// InboxItem is a message as the inbox lists it: with its flags.
type InboxItem struct {
	Message
	Seen, Read, Archived bool
}

// Mark is a flag Store.Mark sets on messages. The zero value is not a
// valid Mark, so a forgotten field cannot mark anything.
type Mark uint8

const (
	// MarkSeen records that the user has seen the message (in a list or a
	// badge dropdown) without necessarily opening it; it clears it from
	// the unseen count.
	MarkSeen Mark = iota + 1
	// MarkRead records that the user has read the message; it implies
	// MarkSeen and clears it from both counts.
	MarkRead
	// MarkArchived takes the message out of the inbox; it implies MarkRead
	// and MarkSeen.
	MarkArchived
)

func (m Mark) String() string {
	switch m {
	case MarkSeen:
		return "seen"
	case MarkRead:
		return "read"
	case MarkArchived:
		return "archived"
	}
	return fmt.Sprintf("Mark(%d)", uint8(m))
}

// Valid reports whether m is one of the defined marks.
func (m Mark) Valid() bool { return m >= MarkSeen && m <= MarkArchived }

// InboxCounts are a user's badge numbers over retained messages that are
// not archived.
type InboxCounts struct {
	Unread int `json:"unread"`
	Unseen int `json:"unseen"`
}

// NewEpoch returns a new random store epoch: 16 hex characters. 64 random
// bits make it vanishingly unlikely that a recreated store reuses an epoch a
// client still remembers.
func NewEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported systems
	return hex.EncodeToString(b[:])
}

// CheckMessages reports the first message a Store cannot append: a nil one
// or one without a user. Stores call it before writing anything, so an
// Append is all or nothing.
func CheckMessages(msgs []*Message) error {
	for i, m := range msgs {
		if m == nil {
			return fmt.Errorf("message %d is nil", i)
		}
		if m.User == "" {
			return fmt.Errorf("message %d has no user", i)
		}
	}
	return nil
}

// EnvelopeData returns the payload as it is embedded in a herald.v1 envelope:
// the payload itself when it is valid JSON, otherwise a JSON string holding
// it, so an envelope is always valid JSON whatever the API server sent.
func EnvelopeData(payload []byte) json.RawMessage {
	if json.Valid(payload) {
		return payload
	}
	b, _ := json.Marshal(string(payload)) // a string always marshals
	return b
}

// NewConnID returns a new connection id: 12 random bytes, base64url, so 16
// URL-safe characters that fit the path of /@connections/{id} as they are.
func NewConnID() ConnID {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported systems
	return ConnID(base64.RawURLEncoding.EncodeToString(b[:]))
}

// NewMessageID returns a message id that sorts by time: 6 bytes of
// milliseconds and 8 random bytes, hex. Time-ordered ids keep inbox pages
// stable and make logs readable.
func NewMessageID(t time.Time) string {
	var b [14]byte
	ms := uint64(t.UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails on supported systems
	return hex.EncodeToString(b[:])
}
