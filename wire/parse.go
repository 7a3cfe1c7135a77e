package wire

import (
	"encoding/binary"
	"fmt"
)

// Header is a parsed frame header.
type Header struct {
	Fin    bool
	Op     byte
	Masked bool
	Mask   [4]byte
	Length int // payload length
	Size   int // header length in bytes
}

// ProtocolError is a frame that breaks RFC 6455 or Herald's limits; Code is
// the close code to answer with.
type ProtocolError struct {
	Code   uint16
	Reason string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("websocket close %d: %s", e.Code, e.Reason)
}

// ParseHeader parses a client frame header at the start of b. It returns
// ok=false when b is too short to hold the header. A client frame must be
// masked, must not use extension bits (Herald negotiates none), and control
// frames must be final and at most 125 bytes; a data frame longer than
// maxPayload (a negative limit counts as 0) is refused with CloseTooBig before
// its payload is read.
//
// Errors depend only on the bytes of the header, never on how much of the
// payload is present, so a caller that parses again as more bytes arrive
// gets the same answer whichever way the input was split.
func ParseHeader(b []byte, maxPayload int) (h Header, ok bool, err error) {
	if len(b) < 2 {
		return h, false, nil
	}
	h.Fin = b[0]&0x80 != 0
	if b[0]&0x70 != 0 {
		return h, false, &ProtocolError{CloseProtocolError, "reserved bits set"}
	}
	h.Op = b[0] & 0x0F
	h.Masked = b[1]&0x80 != 0
	size := 2
	switch b[1] & 0x7F {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if h.Masked {
		size += 4
	}
	if len(b) < size {
		return h, false, nil
	}
	// Decode into a uint64 and compare before converting: a 64-bit length
	// can exceed any int, and converting first would turn it negative.
	var n uint64
	switch b[1] & 0x7F {
	case 126:
		n = uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		n = binary.BigEndian.Uint64(b[2:10])
		if n>>63 != 0 {
			// RFC 6455 §5.2: the most significant bit must be 0.
			return h, false, &ProtocolError{CloseProtocolError, "frame length out of range"}
		}
	default:
		n = uint64(b[1] & 0x7F)
	}
	switch h.Op {
	case OpContinuation, OpText, OpBinary:
		if n > uint64(max(maxPayload, 0)) {
			return h, false, &ProtocolError{CloseTooBig, "frame too large"}
		}
	case OpClose, OpPing, OpPong:
		if !h.Fin || n > 125 {
			return h, false, &ProtocolError{CloseProtocolError, "bad control frame"}
		}
	default:
		return h, false, &ProtocolError{CloseProtocolError, "unknown opcode"}
	}
	if !h.Masked {
		return h, false, &ProtocolError{CloseProtocolError, "client frame not masked"}
	}
	copy(h.Mask[:], b[size-4:size])
	h.Length, h.Size = int(n), size
	return h, true, nil
}

// Unmask XORs p in place with mask, starting at mask position 0.
func Unmask(p []byte, mask [4]byte) {
	for i := range p {
		p[i] ^= mask[i&3]
	}
}
