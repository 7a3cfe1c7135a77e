package session

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"

	"golang.org/x/time/rate"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/wire"
)

// clientMessage is a herald.v1 message from a client. One struct covers
// every type; unused fields stay zero. Unknown fields are ignored, so
// newer clients can talk to older servers.
type clientMessage struct {
	Type   string  `json:"type"`
	Offset *uint64 `json:"offset"` // ack
	Since  *uint64 `json:"since"`  // resume
	Epoch  string  `json:"epoch"`  // resume
	Token  string  `json:"token"`  // refresh
}

// HandleMessage handles one complete data message from the client. Raw
// connections may send anything (the original API had no client
// messages); herald.v1 clients speak JSON objects with a "type". The
// returned *wire.ProtocolError, if any, says how to close the connection.
//
// Every message counts against the client's rate limit (Config.MessageRate)
// — raw ones too, which are ignored but still read and reassembled —
// except a herald.v1 ack that moves the acknowledged offset forward: those
// are bounded by the messages sent to the connection, so a client that
// acks each message it gets is never closed for it, however many it gets.
// Past the limit the error closes the connection with 4030. Like the rest
// of the reading side, HandleMessage is called by one reader at a time.
func (s *Session) HandleMessage(p []byte) error { return s.HandleData(p, false) }

// HandleData is HandleMessage told whether the message came in binary
// frames. A routed raw session's messages go to its route set (see
// Routes), which gets the binary flag: API Gateway hands binary messages
// to integrations base64-encoded.
func (s *Session) HandleData(p []byte, binary bool) error {
	if s.format != wire.FormatV1 {
		if err := s.charge(); err != nil {
			return err
		}
		if s.routed {
			s.m.cfg.Routes.Message(s, p, binary)
		}
		return nil
	}
	var m clientMessage
	if t := bytes.TrimLeft(p, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return &wire.ProtocolError{Code: wire.CloseUnsupported, Reason: "herald.v1 messages are JSON objects"}
	}
	if err := json.Unmarshal(p, &m); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) || te.Field == "" {
			return &wire.ProtocolError{Code: wire.CloseUnsupported, Reason: "herald.v1 messages are JSON objects"}
		}
		if err := s.charge(); err != nil {
			return err
		}
		// A JSON object with a field of the wrong type is a message not
		// understood, not a broken connection: say which field.
		s.spoke = true
		s.sendError(badFieldCode(m.Type), "field "+te.Field+" has the wrong type: want "+te.Type.String())
		return nil
	}
	if m.Type != "ack" || m.Offset == nil || !s.ackAdvances(*m.Offset) {
		if err := s.charge(); err != nil {
			return err
		}
	}
	first := !s.spoke
	s.spoke = true
	switch m.Type {
	case "ping":
		s.control("pong", []byte(`{"type":"pong"}`))
	case "pong":
	case "ack":
		if m.Offset == nil {
			s.sendError("bad_ack", "ack carries the offset it acknowledges")
			return nil
		}
		if err := s.Ack(*m.Offset); err != nil {
			s.sendError("bad_ack", herald.ErrorMessageOf(err))
		}
	case "resume":
		switch {
		case !first || m.Since == nil:
			s.sendError("bad_resume", "resume must be the first message and carry since")
		case s.resumes:
			s.sendError("bad_resume", "this connection already resumes from the since in its URL")
		default:
			s.startResume(Resume{Since: *m.Since, Epoch: m.Epoch})
		}
	case "refresh":
		s.refresh(m.Token)
	default:
		s.sendError("unknown_type", "unknown message type")
	}
	return nil
}

// CountPing counts a WebSocket ping from the client against its message
// rate limit, as HandleMessage counts a message: each ping costs a pong.
// A non-nil error is the *wire.ProtocolError to close the connection with
// (4030). Called by the connection's one reader.
func (s *Session) CountPing() error { return s.charge() }

// charge takes one message from the client's allowance; past it, the
// error closes the connection with 4030. It runs on the reader, so the
// limiter needs no other guard than its own, and it reads the manager's
// clock, so tests step time instead of waiting for it.
func (s *Session) charge() error {
	cfg := &s.m.cfg
	if cfg.MessageRate < 0 {
		return nil
	}
	if s.lim == nil {
		s.lim = rate.NewLimiter(rate.Limit(cfg.MessageRate), cfg.MessageBurst)
	}
	if s.lim.AllowN(cfg.Clock.Now(), 1) {
		return nil
	}
	return &wire.ProtocolError{Code: wire.CloseRateLimited, Reason: "message rate exceeded"}
}

// ackAdvances reports whether an ack of offset would move the
// acknowledged offset forward: beyond what was acked, within what was sent.
func (s *Session) ackAdvances(offset uint64) bool {
	if offset <= s.acked.Load() {
		return false
	}
	s.mu.Lock()
	sent := s.lastOffset
	s.mu.Unlock()
	return offset <= sent
}

// badFieldCode is the error code for a message of type typ with a field of
// the wrong type: the code that type's other mistakes get.
func badFieldCode(typ string) string {
	switch typ {
	case "ack":
		return "bad_ack"
	case "resume":
		return "bad_resume"
	case "refresh":
		return "invalid_token"
	}
	return "unknown_type"
}

// Ack records that the client has processed everything up to offset and
// wakes API calls waiting for it (POST …/messages?wait=ack). An offset
// beyond the highest this session has sent is refused with an
// EInvalidRequest error and not counted: a client cannot confirm what it
// was never given.
func (s *Session) Ack(offset uint64) error {
	s.mu.Lock()
	sent := s.lastOffset
	s.mu.Unlock()
	if offset > sent {
		return herald.Errorf(herald.EInvalidRequest, "offset %d was not sent to this connection (last sent: %d)", offset, sent)
	}
	for {
		cur := s.acked.Load()
		if offset <= cur {
			return nil
		}
		if s.acked.CompareAndSwap(cur, offset) {
			break
		}
	}
	s.m.hub.NotifyAck(s.user, offset)
	return nil
}

// sendError tells a herald.v1 client its message was not understood; the
// connection stays open.
func (s *Session) sendError(code, msg string) {
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}{"error", code, msg})
	s.control("error", b)
}

// refresh extends the session's life with a newer token of the same user,
// so a long-lived tab is not closed with 4001 when its first token expires.
func (s *Session) refresh(tok string) {
	claims, err := s.m.tokens.Verify(tok)
	switch {
	case err != nil:
		s.sendError("invalid_token", herald.ErrorMessageOf(err))
		return
	case claims.User != s.user:
		s.sendError("invalid_token", "token is for another user")
		return
	}
	s.mu.Lock()
	if s.state == stateOpen {
		s.armExpiryLocked(claims.Expires)
	}
	s.mu.Unlock()
	b, _ := json.Marshal(struct { // a string and a time always marshal
		Type    string    `json:"type"`
		Expires time.Time `json:"expires"`
	}{"refreshed", claims.Expires.UTC()})
	s.control("refreshed", b)
}
