package wire

import (
	"encoding/json"
	"strconv"

	"github.com/herald-gw/herald"
)

// Server-Sent Events (https://html.spec.whatwg.org/multipage/server-sent-events.html)
// are lines of "field: value" ending in a blank line. Herald's events:
//
//	id: 3f9c0d1e2a4b5c6d:17
//	data: {"type":"message","id":"…","offset":17,…}
//
//	event: counts
//	data: {"type":"counts","unread":2,"unseen":0}
//
//	: ping
//
// A stored message's id is "<epoch>:<offset>", so the browser's automatic
// reconnect sends it back as Last-Event-ID and resumes where it stopped.

// SSEPing returns the heartbeat: a comment line, which EventSource ignores
// but which keeps proxies from timing the stream out and tells Herald
// whether the socket still takes writes. Build it once and share it.
func SSEPing() []byte { return []byte(": ping\n\n") }

// SSERetry returns the "retry:" field that sets how many milliseconds a
// browser waits before it reconnects a dropped stream.
func SSERetry(ms int) []byte {
	b := strconv.AppendInt([]byte("retry: "), int64(ms), 10)
	return append(b, '\n', '\n')
}

// CloseEvent returns the event that ends a stream: it tells the client the
// close code and reason, which EventSource itself never sees (it only sees
// the end of the response, and reconnects).
func CloseEvent(code uint16, reason string) []byte {
	b, _ := json.Marshal(struct { // an int and a string always marshal
		Type   string `json:"type"`
		Code   uint16 `json:"code"`
		Reason string `json:"reason"`
	}{"close", code, reason})
	return Event("close", "", b)
}

// MessageEvent returns the event that carries m on SSE: its id (for stored
// messages) and its herald.v1 envelope as data.
func MessageEvent(m *herald.Message) []byte {
	env := AppendEnvelope(make([]byte, 0, 192+len(m.Data)), m)
	id := ""
	if m.Offset > 0 {
		id = EventID(m.Epoch, m.Offset)
	}
	return Event("", id, env)
}

// EventID is the SSE id of a stored message: "<epoch>:<offset>".
func EventID(epoch string, offset uint64) string {
	return epoch + ":" + strconv.FormatUint(offset, 10)
}

// Event returns one SSE event: an "event:" line when name is not empty (an
// event without one is a "message" event), an "id:" line when id is not
// empty, and data split into one "data:" line per line of it, since a
// data field cannot hold a line break (the browser joins the lines with
// "\n" again).
func Event(name, id string, data []byte) []byte {
	b := make([]byte, 0, len(name)+len(id)+len(data)+24)
	if name != "" {
		b = append(b, "event: "...)
		b = append(b, name...)
		b = append(b, '\n')
	}
	if id != "" {
		b = append(b, "id: "...)
		b = append(b, id...)
		b = append(b, '\n')
	}
	for {
		b = append(b, "data: "...)
		i := indexLineEnd(data)
		if i < 0 {
			b = append(b, data...)
			b = append(b, '\n')
			break
		}
		b = append(b, data[:i]...)
		b = append(b, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(b, '\n')
}

// indexLineEnd returns the index of the first CR or LF in p, or -1: SSE
// treats CRLF, LF and CR alike as the end of a line.
func indexLineEnd(p []byte) int {
	for i, c := range p {
		if c == '\n' || c == '\r' {
			return i
		}
	}
	return -1
}
