// Package herald holds Herald's domain: the types every other package speaks
// (users, connections, messages), the interfaces that let one node become a
// cluster or change its storage engine (Store), and the error codes the HTTP
// API reports. It imports only the standard library, so any package may
// import it and none of its dependencies leak into the core.
package herald

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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

// Store persists each user's ordered message stream. Implementations live in
// their own packages (sqlite, memory, postgres) so the core stays free of
// drivers.
type Store interface {
	// Append stores msgs durably, assigning each the next Offset of its
	// user's stream (and the Store's Epoch), in slice order. It returns only
	// after the messages are committed, so a caller may acknowledge them.
	Append(ctx context.Context, msgs []*Message) error
	// Since returns up to limit messages of user with Offset > since, in
	// offset order.
	Since(ctx context.Context, user UserID, since uint64, limit int) ([]Message, error)
	// Epoch identifies the history held by the Store. It changes only when
	// history was lost (a new or memory-only store), telling resuming
	// clients their offsets no longer mean anything.
	Epoch() string
	// Close flushes pending writes and releases the Store.
	Close() error
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
