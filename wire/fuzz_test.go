package wire

import (
	"encoding/binary"
	"strings"
	"testing"
)

// FuzzParseHeader feeds arbitrary bytes and limits to ParseHeader. It must
// never panic, and a header it reports complete must describe the bytes it
// was given: the parser is the first thing that touches untrusted input.
func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2}, 1024)
	f.Add([]byte{0x82, 0xFE, 0x01, 0x00, 0, 0, 0, 0}, 1024)
	f.Add([]byte{0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}, 1<<20)
	f.Add([]byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, 1<<20)
	f.Add([]byte{0x89, 0x80, 0, 0, 0, 0}, 0)
	f.Add([]byte{0x88, 0xFE, 0, 126, 0, 0, 0, 0}, 1024)
	f.Fuzz(func(t *testing.T, b []byte, maxPayload int) {
		h, ok, err := ParseHeader(b, maxPayload)
		if err != nil {
			if ok {
				t.Fatalf("ok with error %v", err)
			}
			if _, isPE := err.(*ProtocolError); !isPE {
				t.Fatalf("error %T is not a *ProtocolError", err)
			}
			return
		}
		if !ok {
			return
		}
		if !h.Masked || h.Fin != (b[0]&0x80 != 0) || h.Op != b[0]&0x0F {
			t.Fatalf("header %+v does not match first bytes % x", h, b[:2])
		}
		ext := 0
		switch b[1] & 0x7F {
		case 126:
			ext = 2
		case 127:
			ext = 8
		}
		if h.Size != 2+ext+4 || h.Size > len(b) {
			t.Fatalf("Size %d for % x", h.Size, b[:min(len(b), 14)])
		}
		var want uint64
		switch ext {
		case 0:
			want = uint64(b[1] & 0x7F)
		case 2:
			want = uint64(binary.BigEndian.Uint16(b[2:]))
		case 8:
			want = binary.BigEndian.Uint64(b[2:])
		}
		if h.Length < 0 || uint64(h.Length) != want {
			t.Fatalf("Length %d, header says %d", h.Length, want)
		}
		if h.Op < OpClose && h.Length > max(maxPayload, 0) {
			t.Fatalf("Length %d over the limit %d", h.Length, maxPayload)
		}
		if h.Op >= OpClose && h.Length > 125 {
			t.Fatalf("control frame of %d bytes accepted", h.Length)
		}
		if [4]byte(b[h.Size-4:h.Size]) != h.Mask {
			t.Fatalf("mask %x, bytes % x", h.Mask, b[h.Size-4:h.Size])
		}
		// The header alone parses the same: nothing after it matters.
		if h2, ok2, err2 := ParseHeader(b[:h.Size], maxPayload); h2 != h || !ok2 || err2 != nil {
			t.Fatalf("header alone: %+v %v %v, with payload %+v", h2, ok2, err2, h)
		}
	})
}

// FuzzAssembler checks the Assembler's central promise: a byte stream cut
// into pieces anywhere makes the same Handler calls, and ends in the same
// error, as the whole stream fed at once. Each byte of cuts is the length
// of the next piece (0 feeds an empty slice). The recorder also checks what
// every Handler relies on (UTF-8 text, sizes, valid close codes), and
// failOn makes a Handler call fail, so a handler's error is checked to stop
// the Assembler at the same point too.
func FuzzAssembler(f *testing.F) {
	text := func(s string) []byte { return masked(true, OpText, []byte(s)) }
	for _, seed := range []struct {
		in   []byte
		cuts []byte
		max  uint16
	}{
		{text(`{"type":"ack","offset":1}`), []byte{3}, 0},
		{frames(masked(false, OpText, []byte("he")), masked(true, OpPing, []byte("1")), masked(true, OpContinuation, []byte("llo"))), []byte{1, 7, 2}, 8},
		{frames(text("a"), masked(true, OpClose, closePayload(1000, "bye")), text("late")), []byte{5, 5}, 0},
		{masked(true, OpClose, closePayload(1005, "")), []byte{2}, 0},
		{masked(true, OpBinary, make([]byte, 300)), []byte{9, 200, 0, 50}, 0},
		{frames(masked(false, OpBinary, make([]byte, 10)), masked(true, OpContinuation, make([]byte, 10))), []byte{4}, 15},
		{frames(text("caf\xc3"), Frame(OpText, nil)), []byte{6}, 0},
	} {
		f.Add(seed.in, seed.cuts, seed.max, uint8(0))
	}
	f.Add(frames(text("a"), text("b"), text("c")), []byte{1, 1, 1, 1, 1, 1, 1, 1}, uint16(0), uint8(2))
	f.Fuzz(func(t *testing.T, in, cutLens []byte, maxMessage uint16, failOn uint8) {
		var cuts []int
		pos := 0
		for _, n := range cutLens {
			if pos += int(n); pos > len(in) {
				break
			}
			cuts = append(cuts, pos)
		}
		whole := feedPieces(t, in, int(maxMessage), int(failOn), nil)
		if split := feedPieces(t, in, int(maxMessage), int(failOn), cuts); !sameOutcome(whole, split) {
			t.Fatalf("cut at %v: %v\nwhole: %v", cuts, split, whole)
		}
	})
}

// FuzzCloseFrame checks that every close frame the server builds is one a
// conforming peer — our own Assembler here — accepts: a code allowed on the
// wire, a reason that is UTF-8 and fits, cut no more than it must be.
func FuzzCloseFrame(f *testing.F) {
	f.Add(uint16(4008), "send queue full")
	f.Add(CloseNoStatus, "")
	f.Add(uint16(1006), strings.Repeat("é", 70))
	f.Add(uint16(1000), strings.Repeat("a", 122)+"😀")
	f.Add(uint16(3000), "a\xffb\xc3")
	f.Fuzz(func(t *testing.T, code uint16, reason string) {
		fr := CloseFrame(code, reason)
		if len(fr) > 2+125 {
			t.Fatalf("%d-byte close frame", len(fr))
		}
		o := feedPieces(t, maskServerFrame(fr), 0, 0, nil)
		if o.Err != nil || len(o.Calls) != 1 || o.Calls[0].Kind != "close" {
			t.Fatalf("CloseFrame(%d, %q) refused: %v", code, reason, o)
		}
		got := o.Calls[0]
		want := code
		if !ValidCloseCode(code) {
			want = CloseNormal
		}
		if got.Code != want {
			t.Fatalf("code %d for %d, want %d", got.Code, code, want)
		}
		valid := strings.ToValidUTF8(reason, "\uFFFD")
		if !strings.HasPrefix(valid, got.Reason) || len(got.Reason) < min(len(valid), 123-3) {
			t.Fatalf("reason %q for %q", got.Reason, reason)
		}
	})
}
