// Package wire defines how Herald's bytes look on a WebSocket: server frames
// built once and written to many connections, the herald.v1 JSON envelope,
// and a parser for the masked frames clients send.
//
// Server-to-client frames are never masked (RFC 6455 §5.1), so one frame's
// bytes are valid on every connection: a fan-out encodes a message once per
// wire format and hands the same slice to thousands of sockets.
package wire

import (
	"encoding/binary"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herald-gw/herald"
)

// Opcodes of RFC 6455 §5.2.
const (
	OpContinuation byte = 0x0
	OpText         byte = 0x1
	OpBinary       byte = 0x2
	OpClose        byte = 0x8
	OpPing         byte = 0x9
	OpPong         byte = 0xA
)

// Close codes Herald sends. Each is part of the public contract
// (docs/api.md).
const (
	CloseNormal          uint16 = 1000
	CloseGoingAway       uint16 = 1001
	CloseProtocolError   uint16 = 1002
	CloseUnsupported     uint16 = 1003
	CloseInvalidPayload  uint16 = 1007
	ClosePolicyViolation uint16 = 1008
	CloseTooBig          uint16 = 1009
	CloseInternal        uint16 = 1011
	CloseServiceRestart  uint16 = 1012
	CloseTokenExpired    uint16 = 4001 // the token expired and no refresh arrived
	CloseDisconnected    uint16 = 4003 // the server API or management API closed the connection
	CloseSlowConsumer    uint16 = 4008 // the send queue overflowed; resume to catch up
	CloseTooManyConns    uint16 = 4029 // the user opened more connections than allowed; this, the oldest, was closed
	CloseRateLimited     uint16 = 4030 // the client sent messages faster than its rate limit allows
)

// CloseNoStatus (1005) is the code Handler.Close reports for a close frame
// that carried no payload (RFC 6455 §7.1.5). It is never sent on the wire:
// CloseFrame turns it into CloseNormal.
const CloseNoStatus uint16 = 1005

// AppendFrameHeader appends a final, unmasked frame header for a payload of
// n bytes with opcode op.
func AppendFrameHeader(dst []byte, op byte, n int) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case n < 126:
		dst = append(dst, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return dst
}

// Frame returns a complete unmasked frame with opcode op around payload.
func Frame(op byte, payload []byte) []byte {
	b := make([]byte, 0, 10+len(payload))
	b = AppendFrameHeader(b, op, len(payload))
	return append(b, payload...)
}

// DataFrame returns the frame a raw connection receives for payload: text
// when the bytes are UTF-8 (JSON always is), binary otherwise, because a
// browser drops a text frame that is not valid UTF-8 and closes the socket.
func DataFrame(payload []byte) []byte {
	op := OpText
	if !utf8.Valid(payload) {
		op = OpBinary
	}
	return Frame(op, payload)
}

// CloseFrame returns a close frame carrying code and reason.
//
// A code that may not appear on the wire (see ValidCloseCode) becomes
// CloseNormal. The case that matters is echoing a client's close, which RFC
// 6455 §5.5.1 suggests: a client's empty close frame is reported as
// CloseNoStatus (1005), a code that exists for APIs only, and a peer that
// received it would fail the connection instead of closing it cleanly.
// 1000 says the same thing — a normal close with nothing to add — in a form
// every peer accepts.
//
// The reason is cut to fit the 125-byte control frame limit (123 bytes after
// the code), at a UTF-8 character boundary, and invalid UTF-8 in it is
// replaced with U+FFFD: a peer must fail the connection on a reason that is
// not UTF-8 (§8.1).
func CloseFrame(code uint16, reason string) []byte {
	if !ValidCloseCode(code) {
		code = CloseNormal
	}
	if !utf8.ValidString(reason) {
		reason = strings.ToValidUTF8(reason, "\uFFFD")
	}
	if len(reason) > 123 {
		n := 123
		for n > 0 && !utf8.RuneStart(reason[n]) {
			n--
		}
		reason = reason[:n]
	}
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, code)
	p = append(p, reason...)
	return Frame(OpClose, p)
}

// AppendEnvelope appends the herald.v1 envelope of m:
//
//	{"type":"message","id":"…","offset":17,"epoch":"…","ts":"RFC3339","data":<payload>}
//
// offset and epoch are left out when m was not stored (Offset 0), as for a
// post to one connection through the management API. The payload is embedded
// as-is when it is valid JSON, else as a JSON string.
func AppendEnvelope(dst []byte, m *herald.Message) []byte {
	dst = append(dst, `{"type":"message","id":`...)
	dst = strconv.AppendQuote(dst, m.ID)
	if m.Offset > 0 {
		dst = append(dst, `,"offset":`...)
		dst = strconv.AppendUint(dst, m.Offset, 10)
		dst = append(dst, `,"epoch":`...)
		dst = strconv.AppendQuote(dst, m.Epoch)
	}
	if !m.Time.IsZero() {
		dst = append(dst, `,"ts":"`...)
		dst = m.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"data":`...)
	dst = append(dst, herald.EnvelopeData(m.Data)...)
	return append(dst, '}')
}

// MessageFrame returns the frame that carries m in protocol p.
func MessageFrame(m *herald.Message, p herald.Protocol) []byte {
	if p == herald.ProtocolRaw {
		return DataFrame(m.Data)
	}
	// Encode the envelope after room for the longest header, then write
	// the header right before it: one allocation per message.
	const room = 10
	b := AppendEnvelope(make([]byte, room, room+192+len(m.Data)), m)
	n := len(b) - room
	var hdr [room]byte
	h := AppendFrameHeader(hdr[:0], OpText, n)
	start := room - len(h)
	copy(b[start:], h)
	return b[start:]
}

// PingFrame returns a protocol ping frame. Build it once and share it.
func PingFrame() []byte { return Frame(OpPing, nil) }

// AppPingFrame returns the herald.v1 application ping, which browsers can
// see (they answer protocol pings themselves and never show them to code).
func AppPingFrame() []byte { return Frame(OpText, []byte(`{"type":"ping"}`)) }
