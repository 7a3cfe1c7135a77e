package redis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/herald-gw/herald"
)

// The wire format of what nodes publish to each other: one envelope per
// Redis PUBLISH, in a compact binary form. JSON would cost a third more for
// every binary payload (base64) and a parse per field; the envelope is read
// by Herald nodes only, so it needs no self-description, just a version
// byte so that a later format can be told apart during a rolling upgrade
// (a node drops what it cannot read, and the sessions fill the gap from
// the Store).
//
//	envelope  = version:u8 kind:u8 node:str body
//	body      = messages | broadcast | control
//	messages  = user:str count:uvarint { id:str offset:uvarint epoch:str time data }   (kind 1)
//	broadcast = id:str user:str offset:uvarint epoch:str time data                     (kind 2)
//	control   = ckind:u8 user:str conn:str code:uvarint reason:str data                (kind 3)
//	str       = len:uvarint bytes
//	time      = unix-seconds:varint nanoseconds:uvarint (< 1e9)
//	data      = 0:uvarint (nil) | len+1:uvarint bytes
//
// A messages envelope holds messages of one user only (the user is written
// once), because it travels on that user's channel. The node id is the
// publisher's, so a node recognises and drops its own publications.
// Times keep the instant to the nanosecond and come back in UTC; data keeps
// nil apart from empty, as the in-process bus does.

// wireVersion is the first byte of every envelope.
const wireVersion = 1

// kind is what an envelope carries.
type kind uint8

const (
	kindMessages  kind = 1
	kindBroadcast kind = 2
	kindControl   kind = 3
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

// envelope is one decoded publication.
type envelope struct {
	node      string
	kind      kind
	msgs      []*herald.Message // kindMessages: one user's, in publish order
	broadcast *herald.Message   // kindBroadcast
	control   herald.Control    // kindControl
}

// encodeMessages appends the envelope of msgs, all of one user, to dst.
func encodeMessages(dst []byte, node string, user herald.UserID, msgs []*herald.Message) []byte {
	dst = appendHeader(dst, kindMessages, node)
	dst = appendString(dst, string(user))
	dst = binary.AppendUvarint(dst, uint64(len(msgs)))
	for _, m := range msgs {
		dst = appendString(dst, m.ID)
		dst = binary.AppendUvarint(dst, m.Offset)
		dst = appendString(dst, m.Epoch)
		dst = appendTime(dst, m.Time)
		dst = appendData(dst, m.Data)
	}
	return dst
}

// encodeBroadcast appends the envelope of a broadcast to dst.
func encodeBroadcast(dst []byte, node string, m *herald.Message) []byte {
	dst = appendHeader(dst, kindBroadcast, node)
	dst = appendString(dst, m.ID)
	dst = appendString(dst, string(m.User))
	dst = binary.AppendUvarint(dst, m.Offset)
	dst = appendString(dst, m.Epoch)
	dst = appendTime(dst, m.Time)
	return appendData(dst, m.Data)
}

// encodeControl appends the envelope of a control to dst.
func encodeControl(dst []byte, node string, c herald.Control) []byte {
	dst = appendHeader(dst, kindControl, node)
	dst = append(dst, byte(c.Kind))
	dst = appendString(dst, string(c.User))
	dst = appendString(dst, string(c.Conn))
	dst = binary.AppendUvarint(dst, uint64(c.Code))
	dst = appendString(dst, c.Reason)
	return appendData(dst, c.Data)
}

func appendHeader(dst []byte, k kind, node string) []byte {
	dst = append(dst, wireVersion, byte(k))
	return appendString(dst, node)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = binary.AppendVarint(dst, t.Unix())
	return binary.AppendUvarint(dst, uint64(t.Nanosecond()))
}

func appendData(dst, p []byte) []byte {
	if p == nil {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(p))+1)
	return append(dst, p...)
}

// errTruncated is what decoding reports for an envelope that ends early.
var errTruncated = errors.New("truncated")

// decoder reads an envelope. Its first error sticks: later reads return
// zero values, so decode checks once at the end of each part rather than
// after every field.
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
		d.fail(errTruncated)
		return 0
	}
	b := d.p[0]
	d.p = d.p[1:]
	return b
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.fail(errors.New("bad uvarint"))
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.p)
	if n <= 0 {
		d.fail(errors.New("bad varint"))
		return 0
	}
	d.p = d.p[n:]
	return v
}

// bytes returns the next n bytes, aliasing the input.
func (d *decoder) bytes(n uint64) []byte {
	if n > uint64(len(d.p)) {
		d.fail(errTruncated)
		return nil
	}
	b := d.p[:n:n]
	d.p = d.p[n:]
	return b
}

func (d *decoder) string() string { return string(d.bytes(d.uvarint())) }

func (d *decoder) time() time.Time {
	sec := d.varint()
	ns := d.uvarint()
	if ns >= 1e9 {
		d.fail(fmt.Errorf("nanoseconds %d out of range", ns))
		return time.Time{}
	}
	return time.Unix(sec, int64(ns)).UTC()
}

// data returns a payload aliasing the input, capped at its own length so
// that a receiver appending to it cannot overwrite what follows.
func (d *decoder) data() []byte {
	n := d.uvarint()
	if n == 0 || d.err != nil {
		return nil
	}
	return d.bytes(n - 1)
}

// decode reads one envelope from p. The messages' payloads alias p (one
// buffer for the whole envelope, as the in-process bus makes its copies),
// so the caller hands decode a slice of its own. p comes from the network:
// decode rejects anything malformed with an error and never panics, and
// allocates no more than p's length justifies.
func decode(p []byte) (envelope, error) {
	d := &decoder{p: p}
	var e envelope
	if v := d.byte(); d.err == nil && v != wireVersion {
		return e, fmt.Errorf("envelope version %d, want %d", v, wireVersion)
	}
	e.kind = kind(d.byte())
	e.node = d.string()
	if d.err != nil {
		return e, fmt.Errorf("envelope header: %w", d.err)
	}
	switch e.kind {
	case kindMessages:
		user := herald.UserID(d.string())
		n := d.uvarint()
		// Each message takes at least 6 bytes (three empty strings'
		// lengths, offset, two for the time, data): a count beyond what
		// is left is a lie, and must not size an allocation.
		const minMessage = 6
		if d.err == nil && n > uint64(len(d.p))/minMessage {
			d.fail(fmt.Errorf("%d messages in %d bytes", n, len(d.p)))
		}
		if d.err == nil && n == 0 {
			d.fail(errors.New("no messages"))
		}
		if d.err != nil {
			return e, fmt.Errorf("messages envelope: %w", d.err)
		}
		vals := make([]herald.Message, n)
		e.msgs = make([]*herald.Message, n)
		for i := range vals {
			m := &vals[i]
			m.User = user
			m.ID = d.string()
			m.Offset = d.uvarint()
			m.Epoch = d.string()
			if i > 0 && m.Epoch == vals[i-1].Epoch {
				m.Epoch = vals[i-1].Epoch // share one string: a batch has one epoch
			}
			m.Time = d.time()
			m.Data = d.data()
			e.msgs[i] = m
		}
	case kindBroadcast:
		m := &herald.Message{}
		m.ID = d.string()
		m.User = herald.UserID(d.string())
		m.Offset = d.uvarint()
		m.Epoch = d.string()
		m.Time = d.time()
		m.Data = d.data()
		e.broadcast = m
	case kindControl:
		c := &e.control
		c.Kind = herald.ControlKind(d.byte())
		c.User = herald.UserID(d.string())
		c.Conn = herald.ConnID(d.string())
		code := d.uvarint()
		if d.err == nil && code > math.MaxUint16 {
			d.fail(fmt.Errorf("close code %d out of range", code))
		}
		c.Code = uint16(code)
		c.Reason = d.string()
		c.Data = d.data()
	default:
		return e, fmt.Errorf("unknown envelope kind %d", uint8(e.kind))
	}
	if d.err != nil {
		return e, fmt.Errorf("%v envelope: %w", e.kind, d.err)
	}
	if len(d.p) > 0 {
		return e, fmt.Errorf("%v envelope: %d bytes left over", e.kind, len(d.p))
	}
	// What no Herald node would publish is rejected here too, so a
	// handler never sees an uncommitted message or a control that cannot
	// act.
	switch e.kind {
	case kindMessages:
		if err := herald.CheckCommitted(e.msgs); err != nil {
			return e, fmt.Errorf("messages envelope: %w", err)
		}
	case kindControl:
		if err := herald.CheckControl(e.control); err != nil {
			return e, fmt.Errorf("control envelope: %w", err)
		}
	}
	return e, nil
}
