package nats

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/herald-gw/herald"
)

// The envelope is what one NATS message carries between nodes. It is a
// small binary format of its own rather than JSON because payloads are
// arbitrary bytes (JSON would base64 them), offsets go up to 2^64-1
// (beyond what JSON numbers keep exactly in most languages), and a node
// decodes every message of the cluster, so the format should cost little:
//
//	envelope  = version:1 kind:1 node:str body
//	messages  = user:str message+            (kindMessages: one user's, in order)
//	message   = id:str offset:uvarint epoch:str time data:bytes
//	broadcast = id:str user:str offset:uvarint epoch:str time data:bytes
//	control   = ckind:1 user:str conn:str code:uvarint reason:str data:bytes
//	str       = len:uvarint byte*len
//	bytes     = (len+1):uvarint byte*len     (0 for a nil slice, so nil and empty survive)
//	time      = sec:varint nsec:uvarint      (Unix seconds and nanoseconds, UTC)
//
// The node id comes first so that a receiver can tell its own publications
// without decoding the rest. It travels in the body rather than in a NATS
// header: headers are decoded into a map for every message received, while
// here it costs one comparison. A batch of messages carries its user once
// (all of an envelope's messages are one user's: the subject is the
// user's) and has no count: messages run to the end of the envelope, so
// a publisher can split a batch wherever the server's max_payload demands
// without going back to patch a length.
//
// Decoding is strict, because the bytes come from the network: an unknown
// version or kind, a length running past the end, a varint that
// overflows, nanoseconds out of range, trailing bytes, or content the
// Broker contract forbids (a message without offset or epoch, a control
// CheckControl rejects) are errors, and the receiver drops the envelope.

// envelopeVersion is the first byte of every envelope. A node drops
// envelopes of another version: during a rolling upgrade that changes the
// format, nodes of different versions miss each other's traffic and their
// sessions fill the gaps from the Store, as after any loss.
const envelopeVersion = 1

// kind says what an envelope carries.
type kind uint8

const (
	kindMessages  kind = 1 // committed messages of one user
	kindBroadcast kind = 2 // a message for every connection
	kindControl   kind = 3 // a command about a user or a connection
)

func (k kind) String() string {
	switch k {
	case kindMessages:
		return "messages"
	case kindBroadcast:
		return "broadcast"
	case kindControl:
		return "control"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// envelope is a decoded envelope: node and, by kind, msgs (one user's,
// at least one), msgs[0] alone (a broadcast) or control.
type envelope struct {
	node    string
	kind    kind
	msgs    []*herald.Message
	control herald.Control
}

// appendHeader appends the version, kind and node id that start every
// envelope.
func appendHeader(b []byte, k kind, node string) []byte {
	b = append(b, envelopeVersion, byte(k))
	return appendString(b, node)
}

// appendUser starts the body of a kindMessages envelope.
func appendUser(b []byte, u herald.UserID) []byte { return appendString(b, string(u)) }

// appendBatched appends one message of a kindMessages envelope (its user
// is the envelope's).
func appendBatched(b []byte, m *herald.Message) []byte {
	b = appendString(b, m.ID)
	b = binary.AppendUvarint(b, m.Offset)
	b = appendString(b, m.Epoch)
	b = appendTime(b, m.Time)
	return appendBytes(b, m.Data)
}

// appendBroadcast appends the body of a kindBroadcast envelope: every
// field, since a broadcast carries them as they are.
func appendBroadcast(b []byte, m *herald.Message) []byte {
	b = appendString(b, m.ID)
	b = appendString(b, string(m.User))
	b = binary.AppendUvarint(b, m.Offset)
	b = appendString(b, m.Epoch)
	b = appendTime(b, m.Time)
	return appendBytes(b, m.Data)
}

// appendControl appends the body of a kindControl envelope.
func appendControl(b []byte, c herald.Control) []byte {
	b = append(b, byte(c.Kind))
	b = appendString(b, string(c.User))
	b = appendString(b, string(c.Conn))
	b = binary.AppendUvarint(b, uint64(c.Code))
	b = appendString(b, c.Reason)
	return appendBytes(b, c.Data)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, p []byte) []byte {
	if p == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(p))+1)
	return append(b, p...)
}

// appendTime keeps the instant only: the location and the monotonic
// reading cannot travel, and brokertest compares times with Equal. The
// zero time encodes like any other instant and decodes to time.Time{}.
func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// Errors of decode. They say what was wrong with the bytes, never what the
// bytes were (they may hold a payload).
var (
	errShort    = errors.New("envelope ends early")
	errVarint   = errors.New("envelope has a malformed varint")
	errTrailing = errors.New("envelope has trailing bytes")
)

// decoder reads an envelope from p. Its first error sticks: later reads
// return zero values, so decode checks once at the end of each part.
type decoder struct {
	p   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.p = nil
}

func (d *decoder) byte() byte {
	if len(d.p) < 1 {
		d.fail(errShort)
		return 0
	}
	c := d.p[0]
	d.p = d.p[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		if n == 0 {
			d.fail(errShort)
		} else {
			d.fail(errVarint)
		}
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.p)
	if n <= 0 {
		if n == 0 {
			d.fail(errShort)
		} else {
			d.fail(errVarint)
		}
		return 0
	}
	d.p = d.p[n:]
	return v
}

// raw returns the next n bytes, without copying.
func (d *decoder) raw(n uint64) []byte {
	if n > uint64(len(d.p)) {
		d.fail(errShort)
		return nil
	}
	b := d.p[:n:n]
	d.p = d.p[n:]
	return b
}

func (d *decoder) string() string { return string(d.raw(d.uvarint())) }

// bytes returns a payload as a sub-slice of the input, its capacity capped
// at its length so that a receiver appending to one payload cannot
// overwrite the next.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n == 0 || d.err != nil {
		return nil
	}
	if b := d.raw(n - 1); d.err == nil {
		return b
	}
	return nil
}

func (d *decoder) time() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= uint64(time.Second) {
		d.fail(errors.New("envelope has a time with nanoseconds out of range"))
		return time.Time{}
	}
	// UTC, so that the zero instant decodes to time.Time{} exactly.
	return time.Unix(sec, int64(nsec)).UTC()
}

// decode parses an envelope. The payloads of the messages and the control
// share p's memory (each capped), so p must not be reused: a NATS message's
// Data is the receiver's own copy, which is what the handler then owns.
func decode(p []byte) (envelope, error) {
	d := decoder{p: p}
	var env envelope
	if v := d.byte(); d.err == nil && v != envelopeVersion {
		return env, fmt.Errorf("envelope version %d; this node speaks %d", v, envelopeVersion)
	}
	env.kind = kind(d.byte())
	env.node = d.string()
	if d.err != nil {
		return env, d.err
	}
	switch env.kind {
	case kindMessages:
		user := herald.UserID(d.string())
		if d.err == nil && user == "" {
			return env, errors.New("envelope of messages has no user")
		}
		for d.err == nil && len(d.p) > 0 {
			m := &herald.Message{User: user}
			m.ID = d.string()
			m.Offset = d.uvarint()
			m.Epoch = d.string()
			m.Time = d.time()
			m.Data = d.bytes()
			if d.err == nil && (m.Offset == 0 || m.Epoch == "") {
				return env, fmt.Errorf("envelope message %d is not committed", len(env.msgs))
			}
			env.msgs = append(env.msgs, m)
		}
		if d.err == nil && len(env.msgs) == 0 {
			return env, errors.New("envelope of messages has none")
		}
	case kindBroadcast:
		m := &herald.Message{}
		m.ID = d.string()
		m.User = herald.UserID(d.string())
		m.Offset = d.uvarint()
		m.Epoch = d.string()
		m.Time = d.time()
		m.Data = d.bytes()
		env.msgs = []*herald.Message{m}
	case kindControl:
		c := &env.control
		c.Kind = herald.ControlKind(d.byte())
		c.User = herald.UserID(d.string())
		c.Conn = herald.ConnID(d.string())
		code := d.uvarint()
		if d.err == nil && code > math.MaxUint16 {
			return env, fmt.Errorf("envelope control has close code %d", code)
		}
		c.Code = uint16(code)
		c.Reason = d.string()
		c.Data = d.bytes()
		if d.err == nil {
			if err := herald.CheckControl(*c); err != nil {
				return env, fmt.Errorf("envelope: %w", err)
			}
		}
	default:
		return env, fmt.Errorf("envelope kind %d is unknown", uint8(env.kind))
	}
	if d.err != nil {
		return env, d.err
	}
	if len(d.p) > 0 {
		return env, errTrailing
	}
	return env, nil
}
