package wire

import (
	"strconv"

	"github.com/herald-gw/herald"
)

// Format is how one connection needs its messages encoded: the transport
// (WebSocket frames or Server-Sent Events) and, on WebSocket, the protocol
// (raw payloads or herald.v1 envelopes). A fan-out encodes a message once
// per Format and hands the same bytes to every connection of that Format.
type Format uint8

const (
	// FormatRaw is a WebSocket frame holding exactly the payload.
	FormatRaw Format = iota
	// FormatV1 is a WebSocket text frame holding the herald.v1 envelope.
	FormatV1
	// FormatSSE is a Server-Sent Events event whose data is the herald.v1
	// envelope and whose id is "<epoch>:<offset>".
	FormatSSE

	// NumFormats is the number of formats, for arrays indexed by Format.
	NumFormats = 3
)

func (f Format) String() string {
	switch f {
	case FormatRaw:
		return "raw"
	case FormatV1:
		return herald.SubprotocolV1
	case FormatSSE:
		return "sse"
	}
	return "Format(" + strconv.Itoa(int(f)) + ")"
}

// Controls reports whether connections of f receive control messages
// (counts, reset, reconnect, …). Raw WebSocket connections see payloads
// only: the original front end parses every frame as a notification.
func (f Format) Controls() bool { return f != FormatRaw }

// Encode returns the bytes that carry m to a connection of format f.
func Encode(f Format, m *herald.Message) []byte {
	switch f {
	case FormatSSE:
		return MessageEvent(m)
	case FormatV1:
		return MessageFrame(m, herald.ProtocolV1)
	default:
		return MessageFrame(m, herald.ProtocolRaw)
	}
}

// Control returns the bytes of a control message of type typ whose JSON
// body is body ({"type":typ,…}) for a connection of format f: a text frame
// on herald.v1, a named event on SSE, nothing (nil) on raw connections.
func Control(f Format, typ string, body []byte) []byte {
	switch f {
	case FormatV1:
		return Frame(OpText, body)
	case FormatSSE:
		return Event(typ, "", body)
	}
	return nil
}
