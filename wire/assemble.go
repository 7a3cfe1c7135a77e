package wire

import (
	"encoding/binary"
	"unicode/utf8"
)

// DefaultMaxMessage is the largest client message an Assembler with a zero
// MaxMessage accepts: 32 KiB. Herald's clients send acks, pings, resumes and
// token refreshes, all well under a kilobyte; the limit bounds what a client
// can make the server buffer for it.
const DefaultMaxMessage = 32 << 10

// maxHeaderSize is the longest client frame header: 2 bytes, an 8-byte
// extended length and a 4-byte mask key.
const maxHeaderSize = 14

// Handler receives what an Assembler finds in a client's byte stream. A
// payload it is handed is only valid during the call: it points into the
// caller's read buffer or into the Assembler's, both reused afterwards.
// An error a method returns stops the Assembler and is returned by Feed.
type Handler interface {
	// Message is called with each complete data message: op is OpText or
	// OpBinary, whatever opcode its continuation frames carried, and a
	// text message has already been checked to be UTF-8.
	Message(op byte, p []byte) error
	// Ping is called with the payload of a ping, which the caller answers
	// with a pong carrying the same bytes (RFC 6455 §5.5.2).
	Ping(p []byte) error
	// Pong is called with the payload of a pong.
	Pong(p []byte) error
	// Close is called with the close code and reason of the client's close
	// frame, already validated (RFC 6455 §5.5.1, §7.4). code is
	// CloseNoStatus when the frame carried no payload. The Assembler
	// ignores everything after a close frame: the client must send nothing
	// more (§5.5.1), and what it does send could not be answered anyway.
	Close(code uint16, reason string) error
}

// Assembler turns the bytes a client sends on a WebSocket into complete
// messages and control frames, whatever way the transport cut them up. It
// is the receiving half of RFC 6455 framing for a server, independent of how
// the bytes are read: a goroutine per connection, an epoll loop or a test
// all feed it the same way.
//
// It enforces what a server must check: masking, reserved bits, opcodes,
// control frame limits (ParseHeader), the order of fragments, the size of a
// reassembled message, UTF-8 in text messages and the contents of close
// frames. Any violation is returned from Feed as a *ProtocolError whose Code
// is the close code to answer with.
//
// The zero value is ready to use. An Assembler is meant to be embedded in a
// per-connection struct, so an idle one — no frame or message in progress,
// the state of nearly every connection nearly all the time — holds no
// buffer: it is a pointer and a few small fields. A buffer is allocated only
// when a read ends in the middle of a frame or a message is fragmented, and
// is dropped as soon as the frame or message is complete.
//
// An Assembler is not safe for concurrent use; one reader feeds it at a
// time.
type Assembler struct {
	// MaxMessage is the largest data message accepted, in bytes, summed over
	// its fragments; a longer one is refused with CloseTooBig as soon as a
	// frame header announces it, before its payload is buffered. Zero (or
	// less) means DefaultMaxMessage. Set it before the first Feed.
	MaxMessage int
	st         *asmState // nil while idle
	// MaxFrame, when positive, also bounds each data frame's payload, as
	// API Gateway does (32 KB) in front of its 128 KB messages: a longer
	// frame is refused with CloseTooBig when its header arrives. An int32
	// beside stopped, so that it shares stopped's word: an Assembler lives
	// in every connection.
	MaxFrame int32
	stopped  bool // after an error or a close frame: ignore all input
}

// asmState is what an Assembler holds between Feed calls while something is
// incomplete.
type asmState struct {
	// frame holds the bytes received so far of a frame that did not arrive
	// whole, still masked. Its capacity is the whole frame once the header
	// is known, so it grows once.
	frame []byte
	// msg holds the unmasked payload of the fragments received so far of a
	// fragmented message, and msgOp its opcode; msgOp is 0 when no message
	// is in progress (0 is the continuation opcode, never a message's).
	msg   []byte
	msgOp byte
}

// Stopped reports whether the Assembler has stopped: Feed returned an error
// (its own or a Handler's) or handed a close frame to Handler.Close. From
// then on Feed ignores its input and returns nil, so that a caller can keep
// reading — and discarding — until the client closes its side, as RFC 6455
// §7.1.1 asks, without special cases.
func (a *Assembler) Stopped() bool { return a.stopped }

// Feed parses p, after whatever incomplete frame the previous call kept,
// and calls h for each complete control frame and data message, in order.
// It returns a *ProtocolError for a violation of RFC 6455 or of MaxMessage,
// or the first error h returns; either stops the Assembler.
//
// p is borrowed: Feed unmasks payloads in place in p (so p's contents
// change) and copies only the tail of a frame that p does not complete. The
// caller may reuse p as soon as Feed returns.
//
// Feeding a stream in any number of pieces, cut anywhere, makes the same
// calls to h and returns the same error as feeding it in one piece.
func (a *Assembler) Feed(p []byte, h Handler) error {
	if a.stopped {
		return nil
	}
	if err := a.feed(p, h); err != nil {
		a.stop()
		return err
	}
	return nil
}

func (a *Assembler) stop() {
	a.stopped = true
	a.st = nil
}

func (a *Assembler) maxMessage() int {
	if a.MaxMessage <= 0 {
		return DefaultMaxMessage
	}
	return a.MaxMessage
}

func (a *Assembler) feed(p []byte, h Handler) error {
	limit := a.maxMessage()
	if a.st != nil && len(a.st.frame) > 0 {
		n, err := a.completeFrame(p, limit, h)
		if err != nil || n < 0 || a.stopped {
			return err
		}
		p = p[n:]
	}
	// The common case: whole frames straight from the caller's buffer, with
	// nothing copied and nothing allocated.
	for len(p) > 0 {
		hd, ok, err := ParseHeader(p, limit)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if err := a.checkSequence(hd, limit); err != nil {
			return err
		}
		end := hd.Size + hd.Length
		if len(p) < end {
			a.keep(p, end)
			return nil
		}
		payload := p[hd.Size:end]
		Unmask(payload, hd.Mask)
		p = p[end:]
		if err := a.frame(hd, payload, h); err != nil || a.stopped {
			return err
		}
	}
	if len(p) > 0 {
		a.keep(p, maxHeaderSize) // an incomplete header
	}
	return nil
}

// keep copies b, the start of a frame of size bytes that p did not
// complete, into the state.
func (a *Assembler) keep(b []byte, size int) {
	if a.st == nil {
		a.st = &asmState{}
	}
	a.st.frame = appendUpTo(nil, b, size)
}

// appendUpTo appends b to buf, a frame of size bytes in the making. The
// buffer grows with what has arrived, doubling up to size, rather than to
// what the header announced: a client that announces a large frame and
// sends a few bytes of it must not make the server allocate the rest.
func appendUpTo(buf, b []byte, size int) []byte {
	if n := len(buf) + len(b); n > cap(buf) {
		c := min(max(2*cap(buf), 2*n, 256), max(size, n))
		buf = append(make([]byte, 0, c), buf...)
	}
	return append(buf, b...)
}

// completeFrame adds bytes from p to the kept partial frame. It takes only
// what that frame lacks and returns how many bytes of p it used, or -1 when
// p was used up without completing the frame. A completed frame is handled
// and its buffer dropped.
func (a *Assembler) completeFrame(p []byte, limit int, h Handler) (int, error) {
	st := a.st
	used := 0
	for {
		hd, ok, err := ParseHeader(st.frame, limit)
		if err != nil {
			return 0, err
		}
		if !ok {
			// The header is incomplete. Take up to a longest header's worth;
			// what turns out to belong to the next frame is given back
			// below.
			n := min(maxHeaderSize-len(st.frame), len(p)-used)
			if n == 0 {
				return -1, nil
			}
			st.frame = append(st.frame, p[used:used+n]...)
			used += n
			continue
		}
		if err := a.checkSequence(hd, limit); err != nil {
			return 0, err
		}
		end := hd.Size + hd.Length
		if over := len(st.frame) - end; over > 0 {
			used -= over
			st.frame = st.frame[:end]
		}
		if len(st.frame) < end {
			n := min(end-len(st.frame), len(p)-used)
			st.frame = appendUpTo(st.frame, p[used:used+n], end)
			used += n
			if len(st.frame) < end {
				return -1, nil
			}
		}
		payload := st.frame[hd.Size:end]
		Unmask(payload, hd.Mask)
		// Drop the buffer before handling: the payload slice keeps it alive
		// for the call, and the state may be freed by it.
		st.frame = nil
		if st.msgOp == 0 {
			a.st = nil
		}
		return used, a.frame(hd, payload, h)
	}
}

// checkSequence checks a data frame's header against the message in
// progress. It runs as soon as the header is known, so a client cannot make
// the server buffer a frame that will be refused anyway.
func (a *Assembler) checkSequence(hd Header, limit int) error {
	inMessage := a.st != nil && a.st.msgOp != 0
	if a.MaxFrame > 0 && hd.Length > int(a.MaxFrame) && hd.Op < 0x8 {
		return &ProtocolError{CloseTooBig, "frame too large"}
	}
	switch hd.Op {
	case OpText, OpBinary:
		if inMessage {
			return &ProtocolError{CloseProtocolError, "new message inside a fragmented one"}
		}
	case OpContinuation:
		if !inMessage {
			return &ProtocolError{CloseProtocolError, "continuation without a message"}
		}
		if hd.Length > limit-len(a.st.msg) {
			return &ProtocolError{CloseTooBig, "message too large"}
		}
	}
	return nil
}

// frame handles one complete, unmasked frame whose header passed
// checkSequence.
func (a *Assembler) frame(hd Header, p []byte, h Handler) error {
	switch hd.Op {
	case OpPing:
		return h.Ping(p)
	case OpPong:
		return h.Pong(p)
	case OpClose:
		code, reason, err := parseClose(p)
		if err != nil {
			return err
		}
		a.stop()
		return h.Close(code, reason)
	case OpText, OpBinary:
		if hd.Fin {
			return message(hd.Op, p, h)
		}
		if a.st == nil {
			a.st = &asmState{}
		}
		a.st.msgOp = hd.Op
		a.st.msg = append([]byte(nil), p...)
		return nil
	default: // OpContinuation; checkSequence made sure a message is in progress
		st := a.st
		st.msg = append(st.msg, p...)
		if !hd.Fin {
			return nil
		}
		msg, op := st.msg, st.msgOp
		st.msg, st.msgOp = nil, 0
		if len(st.frame) == 0 {
			a.st = nil
		}
		return message(op, msg, h)
	}
}

func message(op byte, p []byte, h Handler) error {
	if op == OpText && !utf8.Valid(p) {
		return &ProtocolError{CloseInvalidPayload, "text frame is not UTF-8"}
	}
	return h.Message(op, p)
}

// parseClose validates the payload of a client's close frame (RFC 6455
// §5.5.1, §7.4): empty, or a 2-byte code allowed on the wire followed by a
// UTF-8 reason.
func parseClose(p []byte) (code uint16, reason string, err error) {
	switch {
	case len(p) == 0:
		return CloseNoStatus, "", nil
	case len(p) == 1:
		return 0, "", &ProtocolError{CloseProtocolError, "close frame payload of 1 byte"}
	}
	code = binary.BigEndian.Uint16(p)
	if !ValidCloseCode(code) {
		return 0, "", &ProtocolError{CloseProtocolError, "close code not allowed"}
	}
	if !utf8.Valid(p[2:]) {
		return 0, "", &ProtocolError{CloseInvalidPayload, "close reason is not UTF-8"}
	}
	return code, string(p[2:]), nil
}

// ValidCloseCode reports whether code may appear in a close frame on the
// wire (RFC 6455 §7.4): the codes the RFC and the IANA registry define
// for use, 1000–1003 and 1007–1014, and the ranges for libraries and
// applications, 3000–4999. The rest is refused: below 1000 is unused; 1004
// is reserved; 1005, 1006 and 1015 stand for "no code", "no close frame" and
// "TLS failure" and exist only for APIs to report; 1016–2999 are reserved
// for future revisions; 5000 and up are undefined.
func ValidCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003,
		code >= 1007 && code <= 1014,
		code >= 3000 && code <= 4999:
		return true
	}
	return false
}
